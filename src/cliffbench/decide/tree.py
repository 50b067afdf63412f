"""Which engine for how many users: a decision tree whose thresholds are the measured cliffs.

Nothing here is typed in by hand, and nothing is interpolated into a verdict. Each level is judged
by `bench.metrics.repeats.pool_repeats`: its SLO percentiles over every submitted request of every repeat
(failures count as misses), decided by their interval. An engine's *cliff* is a bracket: the
highest measured level that meets the SLO before the first that does not ("between 4 and 8
users"), or "at least 16 users" when no measured level missed. The tree splits the user count at
those measured levels and, for each range, recommends the engine that meets the SLO at the top of
the range (the heaviest load in it) with the highest median throughput; adjacent ranges with the
same recommendation merge. A user count between two measured levels is judged at the next
measured level above it, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import Field

from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.bench.store.levels import Results
from cliffbench.config import Spec

__all__ = [
    "Cliff",
    "DecisionNode",
    "DecisionTree",
    "Leaf",
    "Recommendation",
    "UserProfile",
    "build_tree",
    "decision_tree",
    "engine_cliff_details",
    "fmt_g",
    "interpolate",
    "pooled_levels",
    "recommend",
    "recommend_for",
    "select_levels",
]

THROUGHPUT_METRIC = "output_tok_s"
_REQUIRED = ("engine", "concurrency")
_LONG = " (long documents)"


class UserProfile(Spec):
    """The deployment being decided for."""

    peak_users: int = Field(gt=0, description="concurrent users at peak")
    ttft_slo_s: float = Field(gt=0, allow_inf_nan=False, description="TTFT budget in seconds")
    tpot_slo_s: float = Field(gt=0, allow_inf_nan=False, description="TPOT budget in seconds")
    long_prompts: bool = Field(False, description="users send documents near the context limit")


@dataclass(frozen=True)
class Cliff:
    """Where an engine stops meeting the SLO: it meets it at every measured level up to
    `meets_up_to` (0: not even at the lowest), and `first_miss` is the next measured level (None
    when none missed: `at_least`). `first_miss_verdict` is 'misses' or 'uncertain' (the interval
    straddles the budget, or n was too small for one)."""

    engine: str
    meets_up_to: float
    first_miss: float | None
    first_miss_verdict: str = ""

    @property
    def at_least(self) -> bool:
        return self.first_miss is None

    @property
    def users(self) -> float:
        return self.meets_up_to

    def text(self) -> str:
        if self.at_least:
            return f"at least {_users(self.meets_up_to)} (no measured level missed)"
        assert self.first_miss is not None
        unsure = self.first_miss_verdict != "misses"
        because = "the interval straddles the budget, or n is too small for one"
        why = f" (not shown to meet it there: {because})"
        if self.meets_up_to <= 0:
            if unsure:
                return f"not shown to meet it even at its lowest measured level ({_users(self.first_miss)}): {because}"
            return f"below {_users(self.first_miss)}: misses at its lowest measured level"
        return f"between {self.meets_up_to:g} and {_users(self.first_miss)}" + (why if unsure else "")


@dataclass(frozen=True)
class Recommendation:
    engine: str | None
    verdict: str
    meets_slo: bool
    peak_users: int
    evidence: list[str] = field(default_factory=list)
    judged_at: float | None = None
    measured: bool = False


@dataclass(frozen=True)
class Leaf:
    engine: str | None
    verdict: str
    evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DecisionNode:
    question: str
    branches: list[tuple[str, DecisionNode | Leaf]]


@dataclass(frozen=True)
class DecisionTree:
    root: DecisionNode
    thresholds: dict[str, float]
    slo: dict[str, float]
    at_least: dict[str, bool] = field(default_factory=dict)
    cliffs: dict[str, Cliff] = field(default_factory=dict)
    slo_text: str = ""


def fmt_g(x: float) -> str:
    """Three significant digits, as the tree's verdicts print numbers."""
    return f"{x:.3g}"


def _users(n: float) -> str:
    return f"{n:g} user" if n == 1 else f"{n:g} users"


def pooled_levels(res: Results, judge: SloJudge) -> pd.DataFrame:
    """The study's levels, one row per engine x level set x load, judged by `judge`."""
    return pool_repeats(res.levels, res.requests, judge)


def select_levels(levels: pd.DataFrame, level_set: str | None = None, default: str = "chat") -> pd.DataFrame:
    """The closed-loop levels of one level set, failed ones included (they count as misses).

    ``level_set=None`` takes the frame's only level set, or ``default`` when it holds several."""
    missing = [c for c in _REQUIRED if c not in levels.columns]
    if missing:
        raise ValueError(f"levels lacks column(s): {', '.join(missing)}")
    out = levels
    if "level_set" in out.columns:
        sets = sorted(str(s) for s in out["level_set"].dropna().unique())
        chosen = level_set if level_set is not None else (sets[0] if len(sets) == 1 else default)
        out = out[out["level_set"] == chosen]
    return out[out["concurrency"].notna()]


def interpolate(levels: pd.DataFrame, engine: str, metric: str, users: float) -> float:
    """``metric`` of ``engine`` at ``users``, linear in log2(users) between its successful levels
    (medians over repeats); below the lowest: that level's value; above the highest: NaN. For
    estimates that say they interpolate (the matrix), never for a verdict."""
    if not users > 0:
        raise ValueError(f"users must be > 0, got {users}")
    lv = select_levels(levels)
    rows = lv[(lv["engine"] == engine) & (lv["status"] == "ok")] if "status" in lv else lv[lv["engine"] == engine]
    if rows.empty:
        known = ", ".join(sorted(str(e) for e in lv["engine"].unique())) or "none"
        raise ValueError(f"no successful levels for engine {engine!r}; engines: {known}")
    by_users = rows.groupby("concurrency")[metric].median().dropna().sort_index()
    if by_users.empty:
        return math.nan
    x = np.log2(by_users.index.to_numpy(dtype=np.float64))
    u = math.log2(users)
    if u > x[-1] + 1e-9:
        return math.nan
    return float(np.interp(u, x, by_users.to_numpy(dtype=np.float64)))


def _verdicts(lv: pd.DataFrame, engine: str) -> pd.Series:
    rows = lv[lv["engine"] == engine].sort_values("concurrency")
    return pd.Series(rows["slo_verdict"].to_numpy(), index=rows["concurrency"].to_numpy(dtype=np.float64))


def engine_cliff_details(levels: pd.DataFrame) -> dict[str, Cliff]:
    """Each engine's cliff bracket, from pooled levels of one level set (see `Cliff`)."""
    if "slo_verdict" not in levels:
        raise ValueError("levels lack slo_verdict: pool them with bench.metrics.repeats.pool_repeats and an SLO")
    out: dict[str, Cliff] = {}
    for engine in sorted(str(e) for e in levels["engine"].unique()):
        v = _verdicts(levels, engine)
        if v.empty:
            continue
        bad = [u for u, x in v.items() if x != "meets"]
        if not bad:
            out[engine] = Cliff(engine, float(v.index[-1]), None)
            continue
        first = float(str(bad[0]))
        below = [float(u) for u in v.index if u < first]
        out[engine] = Cliff(engine, below[-1] if below else 0.0, first, str(v[first]))
    return out


def _judged_at(users: list[float], n: int) -> tuple[float | None, bool, str]:
    if n in users:
        return float(n), True, ""
    if n < users[0]:
        return users[0], False, f"{_users(n)} is below the lowest measured level: judged at {_users(users[0])}"
    above = [u for u in users if u > n]
    if not above:
        return None, False, ""
    below = max(u for u in users if u < n)
    return (
        above[0],
        False,
        f"{_users(n)} lies between measured levels {below:g} and {above[0]:g}: judged at {above[0]:g}",
    )


def _evidence(row: pd.Series, judge: SloJudge, label: str) -> str:
    tok = f"{fmt_g(row[THROUGHPUT_METRIC])} tok/s"
    if row.get("repeats", 1) > 1 and not math.isnan(row.get(f"{THROUGHPUT_METRIC}_min", math.nan)):
        tok += f" (range {fmt_g(row[THROUGHPUT_METRIC + '_min'])}-{fmt_g(row[THROUGHPUT_METRIC + '_max'])})"
    parts = [tok]
    for m in judge.thresholds:
        pt, lo, hi = row.get(f"slo_{m}", math.nan), row.get(f"slo_{m}_lo", math.nan), row.get(f"slo_{m}_hi", math.nan)
        ci = (
            "n too small for an interval"
            if math.isnan(lo)
            else f"{100 * row[f'slo_{m}_level']:.0f}% CI {fmt_g(lo)}-{fmt_g(hi)}"
        )
        parts.append(f"{judge.label(m)} {fmt_g(pt)} s ({ci})")
    missed = int(row.get("n_missed_requests", 0) or 0)
    if missed:
        parts.append(f"{missed} of {int(row['n_submitted'])} requests failed")
    if int(row.get("failed_repeats", 0) or 0):
        parts.append(f"{int(row['failed_repeats'])} repeat(s) failed outright")
    return f"{label}: " + ", ".join(parts) + f" -> {row['slo_verdict']}"


def recommend(
    levels: pd.DataFrame, profile: UserProfile, judge: SloJudge, mixed_levels: pd.DataFrame | None = None
) -> Recommendation:
    """Among engines meeting the SLO at ``profile.peak_users`` (judged at the next measured level
    when it was not measured), the one with the highest median output tok/s. With
    ``profile.long_prompts`` and ``mixed_levels``, the mixed-length set is judged instead."""
    lv = select_levels(levels)
    n = profile.peak_users
    evidence: list[str] = []
    if profile.long_prompts and mixed_levels is not None and len(mixed_levels):
        lv = select_levels(mixed_levels, default="mixed")
        evidence.append("judged on the mixed-length set (long documents in the traffic)")
    elif profile.long_prompts:
        evidence.append("no mixed-length levels measured: judged on short prompts only")
    if lv.empty:
        raise ValueError("no levels to decide from")
    # each engine is judged at its own next measured level: a cliff search measures some engines
    # at loads the others never ran (monotone verdicts: meeting at 6 users implies meeting at 5)
    meeting: list[tuple[float, str, float, bool]] = []
    uncertain: list[str] = []
    top = max(float(u) for u in lv["concurrency"])
    for engine in sorted(str(e) for e in lv["engine"].unique()):
        mine = lv[lv["engine"] == engine]
        at, measured, how = _judged_at(sorted(float(u) for u in mine["concurrency"].unique()), n)
        if at is None:
            evidence.append(f"{engine}: {_users(n)} is above its highest measured level")
            continue
        row = mine[mine["concurrency"] == at].iloc[0]
        evidence.append(_evidence(row, judge, f"{engine} at {_users(at)}") + (f" ({how})" if how else ""))
        if row["slo_verdict"] == "meets":
            meeting.append((float(row[THROUGHPUT_METRIC]), engine, at, measured))
        elif row["slo_verdict"] == "uncertain":
            uncertain.append(engine)
    if not meeting and not uncertain and all("above its highest" in e for e in evidence if ":" in e):
        verdict = (
            f"{_users(n)} is above the highest measured level ({_users(top)}): unmeasured, "
            "extrapolate with the roofline"
        )
        return Recommendation(None, verdict, False, n, evidence)
    if meeting:
        # throughput is compared at the same load: engines judged at the load nearest the user's
        # come first (one measured only at 32 users does not win at 4 on its 32-user throughput)
        nearest = min(m[2] for m in meeting)
        tok_s, best, at, measured = max(m for m in meeting if m[2] == nearest)
        where = f"at {_users(n)}" if measured else f"at {_users(n)} (judged at its measured {_users(at)})"
        verdict = f"meets {judge.text()} {where} with the highest median throughput ({fmt_g(tok_s)} tok/s)"
        return Recommendation(best, verdict, True, n, evidence, at, measured)
    where = f"at {_users(n)}"
    if uncertain:
        verdict = (
            f"no engine is shown to meet {judge.text()} {where}; {', '.join(uncertain)} may (its interval "
            "straddles the budget): measure more requests, scale out or relax the SLO"
        )
        return Recommendation(None, verdict, False, n, evidence)
    verdict = f"no engine meets {judge.text()} {where} on this hardware: scale out or relax the SLO"
    return Recommendation(None, verdict, False, n, evidence)


def _cliff_evidence(cliffs: dict[str, Cliff]) -> list[str]:
    return [f"{e}: cliff {c.text()}" for e, c in cliffs.items()]


def _users_subtree(
    lv: pd.DataFrame, cliffs: dict[str, Cliff], judge: SloJudge, mixed: pd.DataFrame | None
) -> DecisionNode:
    src = lv if mixed is None else mixed
    users = sorted(float(u) for u in src["concurrency"].unique())
    top = users[-1]
    splits = {c.meets_up_to for c in cliffs.values() if c.meets_up_to >= users[0]}
    uppers = sorted(s for s in splits | {top} if s <= top)
    ranges: list[tuple[float, float, Leaf]] = []
    lower = 1.0
    for upper in uppers:
        profile = UserProfile(
            peak_users=int(upper),
            ttft_slo_s=judge.thresholds.get("ttft_s", 1.0),
            tpot_slo_s=judge.thresholds.get("tpot_s", 1.0),
            long_prompts=mixed is not None,
        )
        rec = recommend(lv, profile, judge, mixed)
        leaf = Leaf(rec.engine, rec.verdict, rec.evidence)
        if ranges and ranges[-1][2].engine == rec.engine:
            # the same answer for the lighter range: one leaf, judged at the heavier load
            ranges[-1] = (ranges[-1][0], upper, leaf)
        else:
            ranges.append((lower, upper, leaf))
        lower = upper + 1
    branches: list[tuple[str, DecisionNode | Leaf]] = [
        (f"<= {_users(hi)}" if lo <= 1 else f"{lo:g}-{_users(hi)}", leaf) for lo, hi, leaf in ranges
    ]
    beyond = Leaf(
        None,
        f"above the highest measured level ({_users(top)}): unmeasured, extrapolate with the roofline",
        _cliff_evidence(cliffs),
    )
    branches.append((f"> {_users(top)}", beyond))
    return DecisionNode("peak concurrent users?", branches)


def build_tree(levels: pd.DataFrame, judge: SloJudge, mixed_levels: pd.DataFrame | None = None) -> DecisionTree:
    """The decision tree from pooled, judged levels: user-count splits at the engines' cliffs;
    with ``mixed_levels`` a first split on long documents, whose yes-branch judges that set."""
    lv = select_levels(levels)
    if lv.empty:
        raise ValueError("no levels to decide from")
    cliffs = engine_cliff_details(lv)
    chat = _users_subtree(lv, cliffs, judge, None)
    all_cliffs = dict(cliffs)
    ml = None if mixed_levels is None else select_levels(mixed_levels, default="mixed")
    root = chat
    if ml is not None and not ml.empty:
        long_cliffs = engine_cliff_details(ml)
        all_cliffs.update({f"{e}{_LONG}": c for e, c in long_cliffs.items()})
        root = DecisionNode(
            "long documents in the traffic?", [("no", chat), ("yes", _users_subtree(lv, long_cliffs, judge, ml))]
        )
    return DecisionTree(
        root,
        {e: c.meets_up_to for e, c in all_cliffs.items()},
        dict(judge.thresholds),
        {e: c.at_least for e, c in all_cliffs.items()},
        all_cliffs,
        judge.text(),
    )


def decision_tree(
    res: Results, level_set: str, mixed_level_set: str, ttft_slo_s: float, tpot_slo_s: float
) -> DecisionTree:
    """The tree of a stored study: `level_set` for the chat curves, `mixed_level_set` (when
    measured) for traffic with long documents; the SLO percentiles are the study's."""
    UserProfile(peak_users=1, ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s)  # one-line errors for bad SLOs
    judge = SloJudge.of(res.study.slo, ttft_s=ttft_slo_s, tpot_s=tpot_slo_s)
    pooled = pooled_levels(res, judge)
    levels = select_levels(pooled, level_set)
    mixed = pooled[pooled["level_set"] == mixed_level_set]
    return build_tree(levels, judge, select_levels(mixed, mixed_level_set) if len(mixed) else None)


def recommend_for(
    res: Results, profile: UserProfile, level_set: str = "chat", mixed_level_set: str = "mixed"
) -> Recommendation:
    """`recommend` on a stored study, its levels judged by the profile's budgets at the study's
    SLO percentiles."""
    judge = SloJudge.of(res.study.slo, ttft_s=profile.ttft_slo_s, tpot_s=profile.tpot_slo_s)
    pooled = pooled_levels(res, judge)
    mixed = pooled[pooled["level_set"] == mixed_level_set]
    return recommend(
        select_levels(pooled, level_set),
        profile,
        judge,
        select_levels(mixed, mixed_level_set) if len(mixed) and profile.long_prompts else None,
    )

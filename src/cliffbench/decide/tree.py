"""Which engine for how many users: a decision tree that agrees with the study's tables.

Nothing here is typed in by hand. Each level is judged by `bench.metrics.repeats.pool_repeats`: its SLO
percentiles over every submitted request of every repeat (failures count as misses), decided by
their interval. An engine's *cliff* is a bracket: the highest measured level that meets the SLO
before the first that does not ("between 4 and 8 users"), or "at least 16 users" when no measured
level missed (`decide.at_load.Cliff`).

Engines are compared at the reader's user count `n`, each placed there from its own measured
levels (`decide.at_load.engine_at_load`): verdicts are monotone, as the cliff search assumes (an
engine that meets the SLO at 32 users meets it at 19; one that misses at 8 misses at 16), and
throughput and TTFT are interpolated between the measured levels around `n`. So an engine probed
by the search at 19 users is never weighed against another's grid level at 32: both are read at 19.

The rule (`CRITERION`, printed with the tree), among the engines that meet the SLO at `n`:

1. the most headroom to the cliff, its cliff over `n`, counted up to `HEADROOM_CAP` (2x): a
   deployment sized to its peak meets more users than planned sooner or later, and an engine at
   its cliff turns a few extra users into a missed SLO for everyone. Twice the users is where the
   grid's doubling looks next; beyond that, more headroom is not a reason to give up speed.
2. then the highest output tok/s at `n`: with the same users in a closed loop, total tokens per
   second is the users times each user's rate, so it is how fast every user's answer arrives (its
   end-to-end time), which the TTFT budget, already met by rule 1's condition, does not capture.
3. then the lower TTFT at the SLO percentile, when throughputs are within `TIE_FRACTION` (5 %,
   about the spread of repeats of one level on these machines: a smaller lead is not a result).

The tree evaluates this rule at every user count from 1 to the highest measured level and merges
consecutive counts with the same answer into one branch; above the highest level an engine that
never missed is unmeasured there (extrapolate with the roofline), one that missed misses.
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
from cliffbench.decide.at_load import AtLoad, Cliff, engine_at_load, engine_cliff_details, users_text

__all__ = [
    "CRITERION",
    "HEADROOM_CAP",
    "TIE_FRACTION",
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
HEADROOM_CAP = 2.0
TIE_FRACTION = 0.05
CRITERION = (
    "Among the engines meeting the SLO at your peak users (verdicts monotone in users: meeting at a "
    f"higher measured load implies meeting here), the one with the most headroom to its cliff (up to "
    f"{HEADROOM_CAP:g}x your users), then the highest output tok/s at your users (each engine "
    f"interpolated between its own measured levels), then the lower TTFT when throughputs are within "
    f"{TIE_FRACTION:.0%}."
)
_REQUIRED = ("engine", "concurrency")
_LONG = " (long documents)"


class UserProfile(Spec):
    """The deployment being decided for."""

    peak_users: int = Field(gt=0, description="concurrent users at peak")
    ttft_slo_s: float = Field(gt=0, allow_inf_nan=False, description="TTFT budget in seconds")
    tpot_slo_s: float = Field(gt=0, allow_inf_nan=False, description="TPOT budget in seconds")
    long_prompts: bool = Field(False, description="users send documents near the context limit")


@dataclass(frozen=True)
class Recommendation:
    """`kind`: 'meets' (an engine is recommended), 'uncertain' (none shown to meet the SLO, some
    may), 'misses' (none meets) or 'unmeasured' (above the measured levels)."""

    engine: str | None
    verdict: str
    meets_slo: bool
    peak_users: int
    evidence: list[str] = field(default_factory=list)
    judged_at: float | None = None
    measured: bool = False
    kind: str = ""
    summary: str = ""


@dataclass(frozen=True)
class Leaf:
    """`summary`: the verdict in a few words, for the figure's box."""

    engine: str | None
    verdict: str
    evidence: list[str] = field(default_factory=list)
    summary: str = ""


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
    criterion: str = CRITERION


def fmt_g(x: float) -> str:
    """Three significant digits, as the tree's verdicts print numbers."""
    return f"{x:.3g}"


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


def _evidence(row: pd.Series, judge: SloJudge, label: str) -> str:
    tok = f"{fmt_g(row[THROUGHPUT_METRIC])} tok/s"
    if row.get("repeats", 1) > 1 and not math.isnan(row.get(f"{THROUGHPUT_METRIC}_min", math.nan)):
        tok += f" (range {fmt_g(row[THROUGHPUT_METRIC + '_min'])}-{fmt_g(row[THROUGHPUT_METRIC + '_max'])})"
    parts = [tok]
    for m in judge.thresholds:
        pt, lo, hi = row.get(f"slo_{m}", math.nan), row.get(f"slo_{m}_lo", math.nan), row.get(f"slo_{m}_hi", math.nan)
        ci = (
            (row.get("slo_note") or "n too small for an interval")
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


def _choose(meeting: list[AtLoad]) -> AtLoad:
    """The module docstring's rule: headroom (capped), then throughput, then TTFT within a tie."""
    most = max(min(a.headroom, HEADROOM_CAP) for a in meeting)
    tier = [a for a in meeting if min(a.headroom, HEADROOM_CAP) >= most - 1e-9]
    known = [a.tok_s for a in tier if not math.isnan(a.tok_s)]
    fastest = max(known) if known else math.nan
    close = [a for a in tier if math.isnan(fastest) or a.tok_s >= fastest * (1 - TIE_FRACTION)]
    return min(close, key=lambda a: (math.inf if math.isnan(a.ttft_s) else a.ttft_s, -a.tok_s, a.engine))


def _headroom_text(a: AtLoad, cliff: Cliff) -> str:
    if cliff.at_least:
        return f"meets it at every measured level, up to {users_text(cliff.meets_up_to)}"
    return f"meets it up to {users_text(cliff.meets_up_to)} ({a.headroom:.2g}x the users)"


def recommend(
    levels: pd.DataFrame, profile: UserProfile, judge: SloJudge, mixed_levels: pd.DataFrame | None = None
) -> Recommendation:
    """The engine the rule of the module docstring picks at ``profile.peak_users``, each engine
    placed there from its own measured levels (`decide.at_load.engine_at_load`). With
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
    cliffs = engine_cliff_details(lv)
    placed = [engine_at_load(lv, cliff, n, THROUGHPUT_METRIC) for cliff in cliffs.values()]
    for a in placed:
        if a.judged_at is None:
            evidence.append(f"{a.engine}: {a.how}")
            continue
        row = lv[(lv["engine"] == a.engine) & (lv["concurrency"] == a.judged_at)].iloc[0]
        line = _evidence(row, judge, f"{a.engine} at {users_text(a.judged_at)}") + (f" ({a.how})" if a.how else "")
        if a.verdict == "meets":
            line += f"; at {users_text(n)}: {fmt_g(a.tok_s)} tok/s ({a.numbers}), {_headroom_text(a, cliffs[a.engine])}"
        evidence.append(line)
    meeting = [a for a in placed if a.verdict == "meets"]
    where = f"at {users_text(n)}"
    if meeting:
        best = _choose(meeting)
        assert best.judged_at is not None
        if not best.measured:
            where += f" (judged at its measured {users_text(best.judged_at)})"
        reason = _headroom_text(best, cliffs[best.engine])
        verdict = (
            f"meets {judge.text()} {where}; {reason}; {fmt_g(best.tok_s)} tok/s at {users_text(n)} ({best.numbers})"
        )
        summary = f"{reason}; {fmt_g(best.tok_s)} tok/s at {users_text(n)}"
        return Recommendation(best.engine, verdict, True, n, evidence, best.judged_at, best.measured, "meets", summary)
    uncertain = [a.engine for a in placed if a.verdict == "uncertain"]
    if uncertain:
        verdict = (
            f"no engine is shown to meet {judge.text()} {where}; {', '.join(uncertain)} may (its interval "
            "straddles the budget): measure more requests, scale out or relax the SLO"
        )
        return Recommendation(None, verdict, False, n, evidence, kind="uncertain", summary="none shown to meet the SLO")
    top = max(float(u) for u in lv["concurrency"])
    if any(a.verdict == "unmeasured" for a in placed):
        verdict = (
            f"{users_text(n)} is above the highest measured level ({users_text(top)}): unmeasured, "
            "extrapolate with the roofline"
        )
        return Recommendation(None, verdict, False, n, evidence, kind="unmeasured", summary="unmeasured")
    verdict = (
        f"no engine meets {judge.text()} {where} on this hardware (each misses at or below this load): "
        "scale out or relax the SLO"
    )
    return Recommendation(None, verdict, False, n, evidence, kind="misses", summary="no engine meets the SLO")


def _cliff_evidence(cliffs: dict[str, Cliff]) -> list[str]:
    return [f"{e}: cliff {c.text()}" for e, c in cliffs.items()]


def _label(lo: int, hi: int, open_ended: bool) -> str:
    if open_ended:
        return f"> {users_text(lo - 1)}" if lo > 1 else "any number of users"
    if lo <= 1:
        return f"<= {users_text(hi)}"
    return users_text(lo) if lo == hi else f"{lo}-{users_text(hi)}"


def _users_subtree(
    lv: pd.DataFrame, cliffs: dict[str, Cliff], judge: SloJudge, mixed: pd.DataFrame | None
) -> DecisionNode:
    """The rule at every user count from 1 to one above the highest measured level; consecutive
    counts with the same answer share a branch, described at its heaviest load when an engine is
    recommended (its least headroom) and at its lightest otherwise (where the engines stop)."""
    src = lv if mixed is None else mixed
    top = int(max(float(u) for u in src["concurrency"].unique()))
    runs: list[tuple[int, int, Recommendation, Recommendation]] = []
    for n in range(1, top + 2):
        profile = UserProfile(
            peak_users=n,
            ttft_slo_s=judge.thresholds.get("ttft_s", 1.0),
            tpot_slo_s=judge.thresholds.get("tpot_s", 1.0),
            long_prompts=mixed is not None,
        )
        rec = recommend(lv, profile, judge, mixed)
        if runs and (runs[-1][2].engine, runs[-1][2].kind) == (rec.engine, rec.kind):
            runs[-1] = (runs[-1][0], n, runs[-1][2], rec)
        else:
            runs.append((n, n, rec, rec))
    branches: list[tuple[str, DecisionNode | Leaf]] = []
    for lo, hi, first, last in runs:
        rec = last if first.meets_slo else first
        evidence = rec.evidence if hi <= top else [*rec.evidence, *_cliff_evidence(cliffs)]
        branches.append((_label(lo, hi, hi > top), Leaf(rec.engine, rec.verdict, evidence, rec.summary)))
    return DecisionNode("peak concurrent users?", branches)


def build_tree(levels: pd.DataFrame, judge: SloJudge, mixed_levels: pd.DataFrame | None = None) -> DecisionTree:
    """The decision tree from pooled, judged levels: user-count splits where the rule's answer
    changes (at the engines' cliffs, their halves, or where one overtakes another); with
    ``mixed_levels`` a first split on long documents, whose yes-branch judges that set."""
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
        CRITERION,
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

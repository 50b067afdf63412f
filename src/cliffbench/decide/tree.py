"""Which engine for how many users: a decision tree whose thresholds are read off the measured curves.

Nothing here is typed in by hand. An engine's *cliff* is the largest user count at which it still
meets both SLOs (``ttft_s_p99 <= ttft_slo_s`` and ``tpot_s_p50 <= tpot_slo_s``), found by linear
interpolation over log2(users) between the last measured level that meets them and the first that
does not. The tree splits the user count at those cliffs and, for each range, recommends the engine
that meets the SLOs at the top of the range with the highest output throughput.

Between measured levels metrics are interpolated on log2(users) because the sweep doubles the users
per level, so neighbouring levels are evenly spaced on that axis. Above the highest measured level
nothing is claimed (NaN, "unmeasured"); below the lowest the lowest level's value stands in, since a
lighter load is never slower in a closed loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from cliffbench.bench.store import Results, ok_levels
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
    "engine_cliffs",
    "fmt_g",
    "interpolate",
    "recommend",
    "select_levels",
]

TTFT_METRIC = "ttft_s_p99"
TPOT_METRIC = "tpot_s_p50"
THROUGHPUT_METRIC = "output_tok_s"
_REQUIRED = ("engine", "concurrency")
# Interpolated cliffs land on floats such as 11.999999999 for an exact 12; round down only past this.
_FLOOR_EPS = 1e-9

FloatArray = npt.NDArray[np.float64]


class UserProfile(Spec):
    """The deployment being decided for."""

    peak_users: int = Field(gt=0, description="concurrent users at peak")
    ttft_slo_s: float = Field(gt=0, allow_inf_nan=False, description="TTFT p99 budget in seconds")
    tpot_slo_s: float = Field(gt=0, allow_inf_nan=False, description="TPOT p50 budget in seconds")
    long_prompts: bool = Field(False, description="users send documents near the context limit")


@dataclass(frozen=True)
class Cliff:
    """An engine's cliff: ``users`` is a lower bound only (``at_least``) when it never failed."""

    engine: str
    users: float
    at_least: bool


@dataclass(frozen=True)
class Recommendation:
    engine: str | None
    verdict: str
    meets_slo: bool
    peak_users: int
    evidence: list[str] = field(default_factory=list)


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


def select_levels(levels: pd.DataFrame, level_set: str | None = None, default: str = "chat") -> pd.DataFrame:
    """The ok, closed-loop levels of one level set.

    ``level_set=None`` takes the frame's only level set, or ``default`` when it holds several, so
    callers may pass either the whole study table or an already filtered one.
    """
    missing = [c for c in _REQUIRED if c not in levels.columns]
    if missing:
        raise ValueError(f"levels lacks column(s): {', '.join(missing)}")
    out = levels
    if "status" in out.columns:
        out = ok_levels(out)
    if "level_set" in out.columns:
        sets = sorted(str(s) for s in out["level_set"].dropna().unique())
        chosen = level_set if level_set is not None else (sets[0] if len(sets) == 1 else default)
        out = out[out["level_set"] == chosen]
    # open-loop (rate) levels have no user count to place on the curve
    return out[out["concurrency"].notna()]


def _curve(levels: pd.DataFrame, engine: str, metric: str) -> tuple[FloatArray, FloatArray]:
    """(log2 users, metric) of one engine, one point per measured user count, NaN metrics dropped."""
    if metric not in levels.columns:
        raise ValueError(f"levels lacks column(s): {metric}")
    rows = levels[levels["engine"] == engine]
    if rows.empty:
        known = ", ".join(sorted(str(e) for e in levels["engine"].unique())) or "none"
        raise ValueError(f"no successful levels for engine {engine!r}; engines: {known}")
    # repeated levels (reruns, seeds) are averaged rather than letting one of them win silently
    by_users = rows.groupby("concurrency")[metric].mean().dropna().sort_index()
    x = np.log2(by_users.index.to_numpy(dtype=np.float64))
    return x, by_users.to_numpy(dtype=np.float64)


def _highest_users(levels: pd.DataFrame, engine: str) -> float:
    return float(levels.loc[levels["engine"] == engine, "concurrency"].max())


def interpolate(levels: pd.DataFrame, engine: str, metric: str, users: float) -> float:
    """``metric`` of ``engine`` at ``users``, linear in log2(users) between measured levels.

    Below the lowest measured level: that level's value. Above the highest: NaN (unmeasured).
    """
    if not users > 0:
        raise ValueError(f"users must be > 0, got {users}")
    x, y = _curve(select_levels(levels), engine, metric)
    if x.size == 0:
        return math.nan
    u = math.log2(users)
    if u > x[-1] + _FLOOR_EPS:
        return math.nan
    return float(np.interp(u, x, y))


def _meets(ttft_p99_s: float, tpot_p50_s: float, ttft_slo_s: float, tpot_slo_s: float) -> bool:
    # NaN TTFT means nothing was measured there; NaN TPOT means one-token replies, which have no
    # decode phase to be slow in (the same rule as metrics.summarize_level's goodput)
    tpot_ok = math.isnan(tpot_p50_s) or tpot_p50_s <= tpot_slo_s
    return not math.isnan(ttft_p99_s) and ttft_p99_s <= ttft_slo_s and tpot_ok


def _crossing(x0: float, x1: float, a: float, b: float, limit: float) -> float:
    """log2 users where the segment (x0, a) -> (x1, b) reaches ``limit``; x1 when it stays below."""
    if not b > limit:
        return x1
    if math.isnan(a) or b == a:
        return x0
    return x0 + (x1 - x0) * (limit - a) / (b - a)


def _cliff_on_grid(
    engine: str, users: FloatArray, ttft: FloatArray, tpot: FloatArray, ttft_slo_s: float, tpot_slo_s: float
) -> Cliff:
    ok = [_meets(t, p, ttft_slo_s, tpot_slo_s) for t, p in zip(ttft, tpot, strict=True)]
    if all(ok):
        return Cliff(engine, float(users[-1]), at_least=True)
    first_fail = ok.index(False)
    if first_fail == 0:
        return Cliff(engine, 0.0, at_least=False)
    i, j = first_fail - 1, first_fail
    x0, x1 = math.log2(users[i]), math.log2(users[j])
    # both metrics are piecewise linear on this grid, so the earlier of the two crossings is the cliff
    x = min(
        _crossing(x0, x1, ttft[i], ttft[j], ttft_slo_s),
        _crossing(x0, x1, tpot[i], tpot[j], tpot_slo_s) if not math.isnan(tpot[j]) else x1,
    )
    return Cliff(engine, float(2.0**x), at_least=False)


def _engine_grid(
    levels: pd.DataFrame, engine: str, ttft_levels: pd.DataFrame | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    users = np.sort(levels.loc[levels["engine"] == engine, "concurrency"].unique().astype(np.float64))
    if ttft_levels is not None:
        # TTFT from another level set: both curves are piecewise linear on the union of their user
        # counts, and only the range measured in both can be judged
        other = ttft_levels.loc[ttft_levels["engine"] == engine, "concurrency"].unique()
        users = np.union1d(users, np.asarray(other, dtype=np.float64))
        top = min(_highest_users(levels, engine), _highest_users(ttft_levels, engine))
        users = users[users <= top]
    src = levels if ttft_levels is None else ttft_levels
    ttft = np.array([interpolate(src, engine, TTFT_METRIC, u) for u in users])
    tpot = np.array([interpolate(levels, engine, TPOT_METRIC, u) for u in users])
    return users, ttft, tpot


def engine_cliff_details(
    levels: pd.DataFrame,
    ttft_slo_s: float,
    tpot_slo_s: float,
    *,
    ttft_levels: pd.DataFrame | None = None,
) -> dict[str, Cliff]:
    """Each engine's cliff; ``ttft_levels`` (e.g. the mixed set) supplies TTFT p99 instead of ``levels``."""
    lv = select_levels(levels)
    if lv.empty:
        raise ValueError("no successful levels to decide from")
    tl = None if ttft_levels is None else select_levels(ttft_levels, default="mixed")
    out: dict[str, Cliff] = {}
    for engine in sorted(str(e) for e in lv["engine"].unique()):
        if tl is not None and not (tl["engine"] == engine).any():
            continue  # no long-prompt measurement for this engine: it cannot be judged there
        users, ttft, tpot = _engine_grid(lv, engine, tl)
        out[engine] = _cliff_on_grid(engine, users, ttft, tpot, ttft_slo_s, tpot_slo_s)
    return out


def engine_cliffs(levels: pd.DataFrame, ttft_slo_s: float, tpot_slo_s: float) -> dict[str, float]:
    """Per engine, the largest user count that still meets both SLOs (see `engine_cliff_details`)."""
    return {e: c.users for e, c in engine_cliff_details(levels, ttft_slo_s, tpot_slo_s).items()}


def fmt_g(x: float) -> str:
    """Three significant digits, as the tree's verdicts print numbers."""
    return f"{x:.3g}"


def _users(n: float) -> str:
    return f"{n:g} user" if n == 1 else f"{n:g} users"


def recommend(levels: pd.DataFrame, profile: UserProfile, mixed_levels: pd.DataFrame | None = None) -> Recommendation:
    """Among engines meeting the SLOs at ``profile.peak_users``, the one with the most output tok/s.

    With ``profile.long_prompts`` and ``mixed_levels``, TTFT p99 comes from the mixed-length set.
    When none meets them, the engine with the lowest TTFT p99 is named with a "scale out" verdict.
    """
    lv = select_levels(levels)
    if lv.empty:
        raise ValueError("no successful levels to decide from")
    n = profile.peak_users
    ml = None if mixed_levels is None else select_levels(mixed_levels, default="mixed")
    long_ttft = profile.long_prompts and ml is not None and not ml.empty
    tl = ml if long_ttft and ml is not None else lv
    evidence: list[str] = []
    if profile.long_prompts and not long_ttft:
        evidence.append("no mixed-length levels measured: TTFT judged on short prompts only")
    meeting: list[tuple[float, str]] = []
    ttfts: list[tuple[float, str]] = []
    for engine in sorted(str(e) for e in lv["engine"].unique()):
        if not (tl["engine"] == engine).any():
            evidence.append(f"{engine} at {_users(n)}: not measured with long documents")
            continue
        tok_s = interpolate(lv, engine, THROUGHPUT_METRIC, n)
        ttft = interpolate(tl, engine, TTFT_METRIC, n)
        tpot = interpolate(lv, engine, TPOT_METRIC, n)
        if math.isnan(tok_s) or math.isnan(ttft):
            top = min(_highest_users(lv, engine), _highest_users(tl, engine))
            evidence.append(f"{engine} at {_users(n)}: unmeasured (highest measured level: {_users(top)})")
            continue
        ok = _meets(ttft, tpot, profile.ttft_slo_s, profile.tpot_slo_s)
        if ok:
            meeting.append((tok_s, engine))
            outcome = "meets SLO"
        else:
            misses = [f"TTFT p99 > {fmt_g(profile.ttft_slo_s)} s"] if ttft > profile.ttft_slo_s else []
            if tpot > profile.tpot_slo_s:
                misses.append(f"TPOT p50 > {fmt_g(profile.tpot_slo_s)} s")
            outcome = f"misses SLO ({', '.join(misses)})"
        ttfts.append((ttft, engine))
        label = "TTFT p99 (long documents)" if long_ttft else "TTFT p99"
        evidence.append(
            f"{engine} at {_users(n)}: {fmt_g(tok_s)} tok/s, {label} {fmt_g(ttft)} s, "
            f"TPOT p50 {fmt_g(tpot)} s -> {outcome}"
        )
    if meeting:
        tok_s, best = max(meeting)
        verdict = (
            f"meets TTFT p99 <= {fmt_g(profile.ttft_slo_s)} s and TPOT p50 <= {fmt_g(profile.tpot_slo_s)} s "
            f"at {_users(n)} with the highest throughput ({fmt_g(tok_s)} tok/s)"
        )
        return Recommendation(best, verdict, True, n, evidence)
    if ttfts:
        ttft, closest = min(ttfts)
        verdict = (
            f"no engine meets the SLO at {_users(n)} on this hardware: scale out or relax the SLO "
            f"(closest: {closest}, TTFT p99 {fmt_g(ttft)} s)"
        )
        return Recommendation(closest, verdict, False, n, evidence)
    verdict = f"no engine was measured at {_users(n)}: unmeasured, extrapolate with the roofline"
    return Recommendation(None, verdict, False, n, evidence)


def _cliff_evidence(cliffs: dict[str, Cliff]) -> list[str]:
    lines = []
    for e, c in cliffs.items():
        if c.at_least:
            lines.append(f"{e} meets the SLO at every measured level (cliff at least {_users(c.users)})")
        elif c.users == 0:
            lines.append(f"{e} misses the SLO even at its lowest measured level")
        else:
            lines.append(f"{e} meets the SLO up to {_users(float(fmt_g(c.users)))}")
    return lines


def _users_subtree(
    levels: pd.DataFrame,
    cliffs: dict[str, Cliff],
    slo: dict[str, float],
    mixed_levels: pd.DataFrame | None,
) -> DecisionNode:
    if mixed_levels is None:
        top = float(levels["concurrency"].max())
    else:
        # with long documents only the users measured in both sets count as measured
        top = max(min(_highest_users(levels, e), _highest_users(mixed_levels, e)) for e in cliffs)
    top_users = math.floor(top + _FLOOR_EPS)
    splits = {math.floor(c.users + _FLOOR_EPS) for c in cliffs.values()}
    # a cliff of 0 (fails at the lowest level) opens no range of its own; the top always closes one
    uppers = sorted(s for s in splits | {top_users} if 1 <= s <= top_users)
    branches: list[tuple[str, DecisionNode | Leaf]] = []
    lower = 1
    for upper in uppers:
        profile = UserProfile(
            peak_users=upper,
            ttft_slo_s=slo["ttft_s"],
            tpot_slo_s=slo["tpot_s"],
            long_prompts=mixed_levels is not None,
        )
        rec = recommend(levels, profile, mixed_levels)
        label = f"<= {_users(upper)}" if lower == 1 else f"{lower}-{upper} users"
        branches.append((label, Leaf(rec.engine, rec.verdict, rec.evidence)))
        lower = upper + 1
    beyond = Leaf(
        None,
        f"above the highest measured level ({_users(top_users)}): unmeasured, extrapolate with the roofline",
        _cliff_evidence(cliffs),
    )
    branches.append((f"> {_users(top_users)}", beyond))
    return DecisionNode("peak concurrent users?", branches)


def build_tree(
    levels: pd.DataFrame,
    ttft_slo_s: float,
    tpot_slo_s: float,
    mixed_levels: pd.DataFrame | None = None,
) -> DecisionTree:
    """The decision tree: user-count splits at the engines' cliffs; with ``mixed_levels`` a first
    split on long documents, whose yes-branch judges TTFT on the mixed-length set."""
    # validates the SLOs once, with the same one-line pydantic errors as a profile
    UserProfile(peak_users=1, ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s)
    lv = select_levels(levels)
    if lv.empty:
        raise ValueError("no successful levels to decide from")
    slo = {"ttft_s": ttft_slo_s, "tpot_s": tpot_slo_s}
    cliffs = engine_cliff_details(lv, ttft_slo_s, tpot_slo_s)
    thresholds = {e: c.users for e, c in cliffs.items()}
    at_least = {e: c.at_least for e, c in cliffs.items()}
    chat = _users_subtree(lv, cliffs, slo, None)
    ml = None if mixed_levels is None else select_levels(mixed_levels, default="mixed")
    if ml is None or ml.empty:
        return DecisionTree(chat, thresholds, slo, at_least)
    long_cliffs = engine_cliff_details(lv, ttft_slo_s, tpot_slo_s, ttft_levels=ml)
    if not long_cliffs:
        return DecisionTree(chat, thresholds, slo, at_least)
    for e, c in long_cliffs.items():
        thresholds[f"{e} (long documents)"] = c.users
        at_least[f"{e} (long documents)"] = c.at_least
    root = DecisionNode(
        "long documents in the traffic?",
        [("no", chat), ("yes", _users_subtree(lv, long_cliffs, slo, ml))],
    )
    return DecisionTree(root, thresholds, slo, at_least)


def decision_tree(
    res: Results, level_set: str, mixed_level_set: str, ttft_slo_s: float, tpot_slo_s: float
) -> DecisionTree:
    """The tree of a stored study: `level_set` for throughput and TPOT, `mixed_level_set` (when
    measured) for TTFT with long documents."""
    levels = select_levels(res.levels, level_set)
    mixed = res.levels[res.levels["level_set"] == mixed_level_set]
    return build_tree(
        levels, ttft_slo_s, tpot_slo_s, mixed_levels=select_levels(mixed, mixed_level_set) if len(mixed) else None
    )

"""An engine's cliff in two studies (`cliffbench compare`): each side's bracket, and whether it moved.

A bracket `(lo, hi]` is where the cliff can be: above the highest measured level that meets the
SLO, up to the first level shown to miss it. A level whose interval straddles the budget
(`uncertain`) may yet meet it, so it does not close the bracket; no level shown to miss leaves it
open (`hi` infinite). The cliff moved only when the two brackets do not overlap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel

from cliffbench.decide.compare_match import EnginePair, SetPair
from cliffbench.decide.tree import select_levels

__all__ = ["CliffShift", "cliff_shifts"]


class CliffShift(BaseModel):
    """An engine's cliff in one level set: each side's text and bracket `(lo, hi]` in users."""

    level_set: str
    a: str
    b: str
    a_bracket: tuple[float, float]
    b_bracket: tuple[float, float]
    moved: str  # 'moved up', 'moved down', 'not moved (brackets overlap)'


def _bracket(pooled: pd.DataFrame, engine: str) -> tuple[float, float] | None:
    rows = pooled[pooled["engine"] == engine].sort_values("concurrency")
    if rows.empty:
        return None
    users = rows["concurrency"].to_numpy(dtype=np.float64)
    verdicts = rows["slo_verdict"].astype(str).to_numpy()
    bad = np.flatnonzero(verdicts != "meets")
    if not bad.size:
        return (float(users[-1]), math.inf)
    lo = float(users[bad[0] - 1]) if bad[0] else 0.0
    # an uncertain level may yet meet the SLO: the bracket closes at the first level shown to miss
    misses = [float(u) for u, v in zip(users[bad[0] :], verdicts[bad[0] :], strict=True) if v == "misses"]
    return (lo, misses[0] if misses else math.inf)


def _users(n: float) -> str:
    return f"{n:g} user" if n == 1 else f"{n:g} users"


def _bracket_text(b: tuple[float, float]) -> str:
    lo, hi = b
    if math.isinf(hi):
        if not lo:  # every level uncertain: n too small for an interval, or one straddling the budget
            return "not bracketed (no level shown to meet the SLO or to miss it)"
        return f"above {_users(lo)} (no level shown to miss)"
    return f"{lo:g}-{_users(hi)}" if lo else f"at or below {_users(hi)}"


def cliff_shifts(pa: pd.DataFrame, pb: pd.DataFrame, pair: EnginePair, sets: list[SetPair]) -> list[CliffShift]:
    """Engine `pair`'s cliff in each level set, from both studies' pooled, judged levels."""
    out = []
    for s in sets:
        la, lb = select_levels(pa, s.a), select_levels(pb, s.b)
        ba, bb = _bracket(la, pair.a), _bracket(lb, pair.b)
        if ba is None or bb is None:
            continue
        if ba[1] <= bb[0]:
            moved = "moved up"
        elif bb[1] <= ba[0]:
            moved = "moved down"
        else:
            moved = "not moved (brackets overlap)"
        out.append(
            CliffShift(level_set=s.a, a=_bracket_text(ba), b=_bracket_text(bb), a_bracket=ba, b_bracket=bb, moved=moved)
        )
    return out

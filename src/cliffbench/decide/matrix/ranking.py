"""Scores, ranking and sensitivity: normalised scores for one set of weights, which single-weight
changes flip the top choice, and whether the top choice is one at all (`top_choice`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SENSITIVITY_FACTORS", "TIE_BAND", "Scores", "TopChoice", "score_matrix", "sensitivity", "top_choice"]

SENSITIVITY_FACTORS = (0.0, 0.5, 2.0, 5.0)


@dataclass
class Scores:
    """Normalised 0..1 scores, the weighted total and the rank of each option (NaN = unknown)."""

    normalised: pd.DataFrame
    total: pd.Series
    rank: pd.Series
    flagged: dict[str, list[str]]
    weights: dict[str, float]


def _normalised(
    values: pd.DataFrame, directions: Mapping[str, str], eligible: list[str] | None, log_scale: tuple[str, ...]
) -> np.ndarray:
    """`score_matrix`'s normalised scores as an array (options x criteria, NaN where unknown): they
    do not depend on the weights, so the sensitivity search computes them once."""
    v = values.to_numpy(dtype=float, copy=True)
    logs = np.array([c in log_scale for c in values.columns])
    if logs.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            v[:, logs] = np.where(v[:, logs] > 0, np.log10(np.where(v[:, logs] > 0, v[:, logs], 1.0)), np.nan)
    names = list(values.index)
    rows = np.array([names.index(o) for o in eligible] if eligible is not None else range(len(names)), dtype=int)
    ref = v[rows]
    known_ref = ~np.isnan(ref)
    lo = np.where(known_ref.any(axis=0), np.nanmin(np.where(known_ref, ref, np.inf), axis=0), np.nan)
    hi = np.where(known_ref.any(axis=0), np.nanmax(np.where(known_ref, ref, -np.inf), axis=0), np.nan)
    span = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.clip((v - lo) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    lower = np.array([directions[c] == "lower" for c in values.columns])
    s = np.where(lower, 1.0 - s, s)
    s = np.where(span > 0, s, 1.0)  # every known value equal (or one known): all best
    s[np.isnan(v)] = np.nan
    return s


def _totals(s: np.ndarray, wv: np.ndarray) -> np.ndarray:
    """The weighted mean of each option's known scores (NaN where no known score has weight)."""
    wsum = (~np.isnan(s)) @ wv
    with np.errstate(divide="ignore", invalid="ignore"):
        totals: np.ndarray = np.where(wsum > 0, np.nansum(s * wv, axis=1) / wsum, np.nan)
    return totals


def score_matrix(
    values: pd.DataFrame,
    directions: Mapping[str, str],
    weights: dict[str, float],
    eligible: list[str] | None = None,
    log_scale: tuple[str, ...] = (),
) -> Scores:
    """Min-max normalise each criterion over the options that know it; weighted mean over known cells.

    `values`: options x criteria, NaN where unknown. A criterion whose known values are all equal
    gives every option 1. `eligible` options are ranked (1 = best); the others get NaN, and the
    bounds of each criterion come from the eligible options only (clipped to 0..1 for the others), so a
    retired model's price cannot move the ranking of the options one can still choose.
    """
    # numpy, not per-column pandas: the sensitivity search scores a few hundred weight sets
    s = _normalised(values, directions, eligible, log_scale)
    norm = pd.DataFrame(s, index=values.index, columns=values.columns)
    w = pd.Series({c: weights.get(c, 0.0) for c in values.columns}, dtype=float)
    wv = w.to_numpy()
    total = pd.Series(_totals(s, wv), index=values.index)
    ranked = total.loc[eligible] if eligible is not None else total
    rank = ranked.rank(ascending=False, method="min").reindex(values.index)
    unknown = np.isnan(s) & (wv > 0)
    cols = list(values.columns)
    flagged = {o: [cols[j] for j in np.flatnonzero(unknown[i])] for i, o in enumerate(values.index)}
    return Scores(norm, total, rank, {o: f for o, f in flagged.items() if f}, dict(w))


class _Top:
    """The best eligible option under a set of weights (`score_matrix`'s top, its normalised scores
    computed once); "" when no weight is left to decide (every known weight 0)."""

    def __init__(
        self, values: pd.DataFrame, directions: Mapping[str, str], eligible: list[str], log_scale: tuple[str, ...]
    ) -> None:
        names = list(values.index)
        self.s = _normalised(values, directions, eligible, log_scale)[[names.index(o) for o in eligible]]
        self.columns, self.eligible = list(values.columns), eligible

    def __call__(self, weights: dict[str, float]) -> str:
        total = _totals(self.s, np.array([weights.get(c, 0.0) for c in self.columns], dtype=float))
        # pandas' idxmax: the first of the largest, NaN skipped
        return "" if np.isnan(total).all() else self.eligible[int(np.nanargmax(total))]


def sensitivity(
    values: pd.DataFrame,
    directions: Mapping[str, str],
    weights: dict[str, float],
    eligible: list[str],
    log_scale: tuple[str, ...] = (),
    factors: tuple[float, ...] = SENSITIVITY_FACTORS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which single-weight changes flip the top choice.

    Returns (grid, thresholds): the grid tries each weight x each factor; thresholds gives, per
    criterion, the factor nearest 1 (found by bisection, up to x100 and down to x0) at which the
    top option changes, NaN where none does.
    """
    best = _Top(values, directions, eligible, log_scale)
    base = best(weights)

    def top_at(c: str, f: float) -> str:
        return best({**weights, c: weights.get(c, 0.0) * f})

    rows = []
    for c in values.columns:
        for f in factors:
            top = top_at(c, f)
            rows.append({"criterion": c, "factor": f, "top": top, "flips": top not in (base, "")})
    grid = pd.DataFrame(rows)

    th = []
    for c in values.columns:
        if weights.get(c, 0.0) == 0:
            th.append({"criterion": c, "up": math.nan, "up_top": "", "down": math.nan, "down_top": ""})
            continue
        up, up_top = math.nan, ""
        if top_at(c, 100.0) not in (base, ""):
            lo, hi = 0.0, 2.0  # log10 of the factor
            for _ in range(20):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if top_at(c, 10**mid) not in (base, "") else (mid, hi)
            up, up_top = 10**hi, top_at(c, 10**hi)
        down, down_top = math.nan, ""
        if top_at(c, 0.0) not in (base, ""):
            lo, hi = 0.0, 1.0
            for _ in range(20):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if top_at(c, mid) not in (base, "") else (lo, mid)
            down, down_top = lo, top_at(c, lo)
        th.append({"criterion": c, "up": up, "up_top": up_top, "down": down, "down_top": down_top})
    return grid, pd.DataFrame(th)


# a top choice must survive every single weight moved by up to a quarter: weights are judgements,
# and a reader's x0.8 or x1.25 is within the noise of anyone's judgement
TIE_BAND = (0.8, 1.25)


@dataclass(frozen=True)
class TopChoice:
    """The top of the ranking, and whether it is one: `tie` when some weight moved within TIE_BAND
    (or equal totals) makes another option first. `pivot` is the criterion whose weight moves it
    soonest (the factor nearest 1, `pivot_factor`, makes `flips_to` first); "" when no weight does."""

    top: str
    runner_up: str
    tie: bool
    pivot: str
    pivot_factor: float
    flips_to: str
    margin: float  # weighted total of the top minus the runner-up's

    @property
    def other(self) -> str:
        """The option the top ties with (tie) or that would take its place (else the runner-up)."""
        return self.flips_to or self.runner_up


def top_choice(
    total: pd.Series, thresholds: pd.DataFrame, eligible: list[str], band: tuple[float, float] = TIE_BAND
) -> TopChoice:
    """The top choice of `total` (weighted totals) among `eligible`, judged by `sensitivity`'s
    thresholds: a single top only if no weight moved within `band` changes it."""
    ranked = total.loc[eligible].dropna().sort_values(ascending=False, kind="stable")
    top = str(ranked.index[0]) if len(ranked) else ""
    runner = str(ranked.index[1]) if len(ranked) > 1 else ""
    margin = float(ranked.iloc[0] - ranked.iloc[1]) if len(ranked) > 1 else math.inf
    best: tuple[float, float, str, str] | None = None  # (distance in log, factor, criterion, new top)
    for _, t in thresholds.iterrows():
        for side in ("up", "down"):
            f = t[side]
            if isinstance(f, float) and math.isfinite(f):
                dist = abs(math.log(f)) if f > 0 else math.inf
                if best is None or dist < best[0]:
                    best = (dist, f, str(t["criterion"]), str(t[f"{side}_top"]))
    lo, hi = band
    within = best is not None and lo <= best[1] <= hi
    tie = within or (runner != "" and margin <= 1e-9)
    if best is None:
        return TopChoice(top, runner, tie, "", math.nan, runner if tie else "", margin)
    return TopChoice(top, runner, tie, best[2], best[1], best[3], margin)

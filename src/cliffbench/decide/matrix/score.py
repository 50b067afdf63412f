"""Scores, ranking and sensitivity: the matrix for one profile and one set of weights."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cliffbench.config import fmt_number
from cliffbench.decide.matrix.daily import load_profile, self_hosted_daily
from cliffbench.decide.matrix.data import RANKED_STATUSES, MatrixData, Option, load_matrix
from cliffbench.decide.matrix.freshness import Freshness, freshness, past_shutdown
from cliffbench.decide.matrix.model import (
    MatrixParams,
    check_params,
    engine_precision,
    gpu_price,
    managed_cost_usd_per_1m,
    report_day,
)

__all__ = [
    "SENSITIVITY_FACTORS",
    "Flip",
    "MatrixResult",
    "Scores",
    "evaluate",
    "exclusion_reason",
    "score_matrix",
    "sensitivity",
    "usd_text",
    "utilisation_sweep",
]

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


@dataclass
class MatrixResult:
    params: MatrixParams
    data: MatrixData
    values: pd.DataFrame  # options x criteria, numeric (scores 1..5, USD, s), NaN unknown
    text: pd.DataFrame  # options x criteria, what the table prints
    notes: pd.DataFrame  # options x criteria: rationale
    sources: pd.DataFrame  # options x criteria: "url | as of | verified"
    scores: Scores
    throughput_source: dict[str, str]
    grid: pd.DataFrame
    thresholds: pd.DataFrame
    eligible: list[str]
    excluded: dict[str, str]  # option -> why it is shown but not ranked
    freshness: Freshness
    utilisation: pd.DataFrame  # utilisation_sweep's table
    utilisation_flips: list[Flip]

    @property
    def top(self) -> str:
        return str(self.scores.total.loc[self.eligible].idxmax())


@dataclass
class _Values:
    values: pd.DataFrame
    text: pd.DataFrame
    notes: pd.DataFrame
    sources: pd.DataFrame
    how: dict[str, str]


def _values(params: MatrixParams, data: MatrixData) -> _Values:
    """Every cell's number, printed text, note and source for `params` (checked), before scoring."""
    opts, crits = list(data.options), list(data.criteria)
    # plain dicts, framed once at the end: pandas' per-cell assignment made this the sweep's cost
    values: dict[str, dict[str, float]] = {o: dict.fromkeys(crits, np.nan) for o in opts}
    text: dict[str, dict[str, str]] = {o: dict.fromkeys(crits, "") for o in opts}
    notes: dict[str, dict[str, str]] = {o: dict.fromkeys(crits, "") for o in opts}
    sources: dict[str, dict[str, str]] = {o: dict.fromkeys(crits, "") for o in opts}
    how: dict[str, str] = {}
    price = gpu_price(params, data)
    src = f"{price.source} | {price.as_of} | {price.verified}"
    peak_h, off_users = load_profile(params)
    for o, opt in data.options.items():
        for c in crits:
            cell = data.cells.get((o, c))
            if cell is not None:
                values[o][c] = cell.score if cell.known and cell.score is not None else np.nan
                text[o][c] = f"{cell.value} ({cell.score:g}/5)" if cell.known else cell.value
                notes[o][c] = cell.rationale if cell.known else f"{cell.value}: {cell.unknown_reason}"
                sources[o][c] = f"{cell.source_url} | {cell.as_of} | {cell.verified}"
        if opt.kind == "managed" and (o, "cost") not in data.cells:
            cost = managed_cost_usd_per_1m(opt, params.input_tokens, params.output_tokens)
            values[o]["cost"] = cost
            text[o]["cost"] = usd_text(cost)
            notes[o]["cost"] = (
                f"{opt.model}: ({params.input_tokens} x ${opt.input_usd_per_1m:g} + {params.output_tokens} x "
                f"${opt.output_usd_per_1m:g}) / {params.output_tokens} per 1M, {opt.currency} list prices"
            )
            sources[o]["cost"] = f"{opt.price_source} | {opt.price_as_of} | {opt.price_verified}"
        elif opt.kind == "self-hosted" and (o, "cost") in data.cells:
            how[o] = "not modelled (its cost cell says why)"
        elif opt.kind == "self-hosted":
            day = self_hosted_daily(opt, params, price.usd_per_hour)
            if day is None:
                for c in ("cost", "ttft"):
                    text[o][c] = "unknown"
                    notes[o][c] = (
                        f"unknown: {params.model} {engine_precision(opt, params)} does not fit {params.hardware}"
                    )
                    sources[o][c] = src
                how[o] = "does not fit"
                continue
            est = day.peak
            how[o] = est.source
            values[o]["cost"], values[o]["ttft"] = day.usd_per_1m, est.ttft_s
            text[o]["cost"] = usd_text(day.usd_per_1m)
            text[o]["ttft"] = f"{fmt_number(est.ttft_s)} s" + ("" if est.meets_slo else " (misses SLO)")
            load = f"{params.users} users {fmt_number(peak_h)} h/day" + (
                f", {off_users} users the rest" if off_users else (", idle the rest" if peak_h < 24 else "")
            )
            notes[o]["cost"] = f"{day.text(price.usd_per_hour)} ({load}); peak: {est.source}"
            notes[o]["ttft"] = (
                f"{params.users} users vs TTFT SLO {params.ttft_slo_s:g} s: "
                + ("met" if est.meets_slo else "missed")
                + f"; {est.source}"
            )
            sources[o]["cost"] = sources[o]["ttft"] = src

    def frame(d: Mapping[str, Mapping[str, object]]) -> pd.DataFrame:
        return pd.DataFrame([[d[o][c] for c in crits] for o in opts], index=opts, columns=crits)

    return _Values(frame(values).astype(float), frame(text), frame(notes), frame(sources), how)


def _scoring(params: MatrixParams, data: MatrixData) -> tuple[dict[str, float], Mapping[str, str], tuple[str, ...]]:
    weights = {c: params.weights.get(c, cr.default_weight) for c, cr in data.criteria.items()}
    directions = {c: cr.direction for c, cr in data.criteria.items()}
    log_scale = tuple(c for c, cr in data.criteria.items() if cr.kind == "computed")
    return weights, directions, log_scale


UTILISATION_GRID = (1.0, 0.75, 0.5, 1 / 3, 0.25, 0.1, 0.05, 0.02)


@dataclass(frozen=True)
class Flip:
    """Below utilisation `below`, the `what` ('top' or 'cheapest') changes from `before` to `after`."""

    what: str
    below: float
    before: str
    after: str


def utilisation_sweep(
    params: MatrixParams, data: MatrixData, eligible: list[str], grid: tuple[float, ...] = UTILISATION_GRID
) -> tuple[pd.DataFrame, list[Flip]]:
    """The ranking as utilisation falls: the fleet at the profile's peak for a fraction u of the day,
    idle otherwise (autoscaling as the profile says). Returns (table, flips): one row per u with the
    top option, the cheapest option and the cheapest self-hosted and managed costs; and for the top
    and the cheapest, each u (found by bisection between grid points) below which the choice changes."""
    weights, directions, log_scale = _scoring(params, data)

    def at(u: float) -> tuple[str, str, pd.Series]:
        p = params.model_copy(update={"utilisation": u, "peak_hours": 24.0, "offpeak_users": 0})
        v = _values(p, data).values
        total = score_matrix(v, directions, weights, eligible, log_scale).total.loc[eligible]
        cost = v.loc[eligible, "cost"].dropna()
        return (str(total.idxmax()) if total.notna().any() else ""), (str(cost.idxmin()) if len(cost) else ""), cost

    rows: list[dict[str, object]] = []
    flips: list[Flip] = []
    prev: tuple[float, str, str] | None = None
    for u in grid:
        top, cheapest, cost = at(u)
        kinds = pd.Series({o: data.options[o].kind for o in cost.index}, dtype=object)
        rows.append(
            {
                "utilisation": u,
                "top": top,
                "cheapest": cheapest,
                "self_hosted_usd_per_1m": float(cost[kinds == "self-hosted"].min()) if len(cost) else math.nan,
                "managed_usd_per_1m": float(cost[kinds == "managed"].min()) if len(cost) else math.nan,
            }
        )
        if prev is not None:
            for what, before, now in (("top", prev[1], top), ("cheapest", prev[2], cheapest)):
                if before == now:
                    continue
                hi, lo = prev[0], u  # `before` holds at hi, `now` at lo
                for _ in range(10):
                    mid = math.sqrt(hi * lo)
                    choice = at(mid)[0 if what == "top" else 1]
                    hi, lo = (mid, lo) if choice == before else (hi, mid)
                flips.append(Flip(what, hi, before, now))
        prev = (u, top, cheapest)
    return pd.DataFrame(rows), flips


def evaluate(params: MatrixParams | None = None, data: MatrixData | None = None) -> MatrixResult:
    """The whole matrix for `params`: values, scores, ranking and sensitivity (weights, utilisation)."""
    params = params or MatrixParams()
    data = data or load_matrix()
    check_params(params, data)
    vals = _values(params, data)
    values = vals.values
    weights, directions, log_scale = _scoring(params, data)
    day = report_day(params)
    excluded = {o: why for o, opt in data.options.items() if (why := exclusion_reason(opt, day))}
    eligible = [o for o in data.options if o not in excluded]
    scores = score_matrix(values, directions, weights, eligible, log_scale)
    # a criterion that does not apply (multi-GPU of a managed API) is left out, but not flagged as unknown
    scores.flagged = {
        o: kept
        for o, cs in scores.flagged.items()
        if (kept := [c for c in cs if (cell := data.cells.get((o, c))) is None or cell.applicable])
    }
    grid, thresholds = sensitivity(values, directions, weights, eligible, log_scale)
    price = gpu_price(params, data)
    gpu = None if price.user else (params.hardware, price.provider, price.pricing_model, price.as_of, price.source)
    fresh = freshness(data, day, params.stale_after_months, eligible, gpu)
    sweep, flips = utilisation_sweep(params, data, eligible)
    return MatrixResult(
        params,
        data,
        values,
        vals.text,
        vals.notes,
        vals.sources,
        scores,
        vals.how,
        grid,
        thresholds,
        eligible,
        excluded,
        fresh,
        sweep,
        flips,
    )


def exclusion_reason(option: Option, report_date: dt.date | None = None) -> str:
    """Why `option` is shown but not ranked ("" when it is ranked); with `report_date`, a model past
    its announced shutdown is not ranked whatever its status says."""
    if report_date is not None and past_shutdown(option, report_date) and option.status != "retired":
        return f"shut down {option.shutdown_date} as announced (its row says {option.status})"
    if option.status in RANKED_STATUSES:
        return ""
    if option.status == "retired":
        return f"retired {option.shutdown_date}: calls fail"
    if option.status == "retiring":
        return f"shutdown announced for {option.shutdown_date}: a new deployment would have to migrate"
    return "discontinued"


def usd_text(x: float) -> str:
    return "unknown" if not math.isfinite(x) else f"${x:.3f}" if x < 1 else f"${x:,.2f}"

"""The matrix for one profile and one set of weights: its values (measured where a study says), scores,
ranking, sensitivity to the weights and to utilisation, and whether its top choice is one."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import pandas as pd

from cliffbench.bench.store.levels import Results
from cliffbench.decide.matrix.data import RANKED_STATUSES, MatrixData, Option, load_matrix
from cliffbench.decide.matrix.freshness import Freshness, freshness, past_shutdown
from cliffbench.decide.matrix.measured import MeasuredFamily, capacity_text, load_study, measured_families
from cliffbench.decide.matrix.model import MatrixParams, check_params, gpu_price, report_day
from cliffbench.decide.matrix.ranking import (
    SENSITIVITY_FACTORS,
    Scores,
    TopChoice,
    score_matrix,
    sensitivity,
    top_choice,
)
from cliffbench.decide.matrix.values import TotalCost, cell_values, scoring_inputs, usd_text

__all__ = [
    "SENSITIVITY_FACTORS",
    "Flip",
    "MatrixResult",
    "Scores",
    "TopChoice",
    "evaluate",
    "exclusion_reason",
    "score_matrix",
    "sensitivity",
    "usd_text",
    "utilisation_sweep",
]


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
    measured: dict[str, MeasuredFamily]  # self-hosted option -> its engine in the study
    capacity: dict[str, tuple[int, str]]  # self-hosted option -> (users one server meets the SLO for, source)
    costs: dict[str, TotalCost]  # the cost criterion in parts
    demand_tokens_per_day: float
    meets_slo: dict[str, bool]  # self-hosted options at the peak users
    choice: TopChoice

    @property
    def top(self) -> str:
        return str(self.scores.total.loc[self.eligible].idxmax())


UTILISATION_GRID = (1.0, 0.75, 0.5, 1 / 3, 0.25, 0.1, 0.05, 0.02)


@dataclass(frozen=True)
class Flip:
    """Below utilisation `below`, the `what` ('top' or 'cheapest') changes from `before` to `after`."""

    what: str
    below: float
    before: str
    after: str


def utilisation_sweep(
    params: MatrixParams,
    data: MatrixData,
    eligible: list[str],
    grid: tuple[float, ...] = UTILISATION_GRID,
    measured: dict[str, MeasuredFamily] | None = None,
) -> tuple[pd.DataFrame, list[Flip]]:
    """The ranking as utilisation falls: the fleet at the profile's peak for a fraction u of the day,
    idle otherwise (autoscaling as the profile says). Returns (table, flips): one row per u with the
    top option, the cheapest option and the cheapest self-hosted and managed costs; and for the top
    and the cheapest, each u (found by bisection between grid points) below which the choice changes."""
    weights, directions, log_scale = scoring_inputs(params, data)

    def at(u: float) -> tuple[str, str, pd.Series]:
        p = params.model_copy(update={"utilisation": u, "peak_hours": 24.0, "offpeak_users": 0})
        v = cell_values(p, data, measured).values
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


def evaluate(
    params: MatrixParams | None = None, data: MatrixData | None = None, study: Results | None = None
) -> MatrixResult:
    """The whole matrix for `params`: values, scores, ranking and sensitivity (weights, utilisation).
    Self-hosted rows come from `study` (else the stored study `params.study`, if any) where it
    measured their engine family, projected to params.hardware; the others from the roofline."""
    params = params or MatrixParams()
    data = data or load_matrix()
    check_params(params, data)
    if study is None and params.study:
        study = load_study(params.study)
    measured = measured_families(study, params, data) if study is not None else {}
    vals = cell_values(params, data, measured)
    values = vals.values
    weights, directions, log_scale = scoring_inputs(params, data)
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
    sweep, flips = utilisation_sweep(params, data, eligible, measured=measured)
    capacity = {
        o: capacity_text(opt, params, measured.get(o))
        for o, opt in data.options.items()
        if opt.kind == "self-hosted" and o in vals.costs
    }
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
        measured,
        capacity,
        vals.costs,
        vals.demand_tokens_per_day,
        vals.meets_slo,
        top_choice(scores.total, thresholds, eligible),
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

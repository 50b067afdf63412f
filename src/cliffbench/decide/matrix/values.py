"""Every cell of the matrix for one profile: the stored scores, and the computed cost and TTFT.

`cost` is the total cost per 1M output tokens at the reader's load, in three parts:

- compute: GPU-hours paid a day x the hourly price / output tokens served a day (self-hosted,
  daily.py), or the list prices x the request's input/output mix (managed);
- staff: the option's ops fraction of an engineer (options.csv `ops_fte`; for the consultancy-run
  option, the fee it replaces staff with) x an engineer's yearly cost (costs.csv), a day;
- exit: what leaving takes, in engineer-weeks from three facts of the option (options.csv
  `exit_api`, `exit_weights`, `exit_data`; the weeks each adds are in costs.csv) x an engineer's
  week, spread over the horizon (costs.csv `horizon_months`).

Staff and exit are fixed costs, divided by the reader's demand: the output tokens a day the
profile's users draw when served within the SLO, taken as the most that any self-hosted option
meeting the SLO serves a day under the load profile (else the most any serves). One demand for every
option, so fixed costs compare like with like, and weigh more per token as utilisation falls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cliffbench.config import fmt_number
from cliffbench.decide.matrix.daily import DailyCost, load_profile, self_hosted_daily
from cliffbench.decide.matrix.data import MatrixData, Option
from cliffbench.decide.matrix.measured import MeasuredFamily
from cliffbench.decide.matrix.model import MatrixParams, engine_precision, gpu_price, managed_cost_usd_per_1m

__all__ = ["CellValues", "TotalCost", "cell_values", "cost_setting", "exit_weeks", "scoring_inputs", "usd_text"]

_WEEKS_A_YEAR = 52.0
_DAYS_A_MONTH = 365.25 / 12


@dataclass(frozen=True)
class TotalCost:
    """One option's cost per 1M output tokens at the reader's load, in parts (NaN: unknown)."""

    compute: float
    staff: float
    exit: float
    staff_usd_per_month: float
    exit_usd: float
    exit_weeks: float

    @property
    def total(self) -> float:
        return self.compute + self.staff + self.exit


@dataclass
class CellValues:
    values: pd.DataFrame
    text: pd.DataFrame
    notes: pd.DataFrame
    sources: pd.DataFrame
    how: dict[str, str]
    costs: dict[str, TotalCost]
    demand_tokens_per_day: float
    meets_slo: dict[str, bool]  # self-hosted options: meets the TTFT SLO at the peak users


def cost_setting(params: MatrixParams, data: MatrixData, name: str) -> float:
    """A cost parameter: the reader's value where given, else costs.csv's sourced default."""
    given = getattr(params, name, None)
    return float(given) if given is not None else data.costs[name].value


def exit_weeks(option: Option, params: MatrixParams, data: MatrixData) -> float:
    """Engineer-weeks to move away from `option`: a base (re-point and re-test the client) plus the
    weeks each lock-in fact adds (an own API to rewrite against, closed weights to re-evaluate prompts
    on another model for, data held by the vendor to export)."""
    weeks = cost_setting(params, data, "exit_base_weeks")
    if option.exit_api == "own":
        weeks += cost_setting(params, data, "exit_own_api_weeks")
    if option.exit_weights == "closed":
        weeks += cost_setting(params, data, "exit_closed_weights_weeks")
    if option.exit_data == "vendor":
        weeks += cost_setting(params, data, "exit_vendor_data_weeks")
    return weeks


def _fixed(option_id: str, option: Option, params: MatrixParams, data: MatrixData, demand: float) -> tuple[float, ...]:
    """(staff per 1M, exit per 1M, staff USD a month, exit USD, exit weeks) at `demand` tokens a day."""
    year = cost_setting(params, data, "engineer_usd_per_year")
    fte = params.staff_fte.get(option_id, option.ops_fte)
    weeks = exit_weeks(option, params, data)
    exit_usd = weeks * year / _WEEKS_A_YEAR
    staff_day = fte * year / 365.25
    exit_day = exit_usd / (cost_setting(params, data, "horizon_months") * _DAYS_A_MONTH)
    per_1m = 1e6 / demand if demand > 0 else math.nan
    # a fixed cost of 0 (the reader left staff out) is 0 per token at any demand, known or not
    staff, leave = (staff_day * per_1m if staff_day else 0.0), (exit_day * per_1m if exit_day else 0.0)
    return staff, leave, staff_day * _DAYS_A_MONTH, exit_usd, weeks


def cell_values(
    params: MatrixParams, data: MatrixData, measured: Mapping[str, MeasuredFamily] | None = None
) -> CellValues:
    """Every cell's number, printed text, note and source for `params` (checked), before scoring."""
    measured = measured or {}
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
    for o in opts:
        for c in crits:
            cell = data.cells.get((o, c))
            if cell is not None:
                values[o][c] = cell.score if cell.known and cell.score is not None else np.nan
                text[o][c] = f"{cell.value} ({cell.score:g}/5)" if cell.known else cell.value
                notes[o][c] = cell.rationale if cell.known else f"{cell.value}: {cell.unknown_reason}"
                sources[o][c] = f"{cell.source_url} | {cell.as_of} | {cell.verified}"
    # the compute part: self-hosted days first, since they set the demand every option is costed at
    days: dict[str, DailyCost] = {}
    compute: dict[str, float] = {}
    for o, opt in data.options.items():
        if opt.kind == "managed" and (o, "cost") not in data.cells:
            compute[o] = managed_cost_usd_per_1m(opt, params.input_tokens, params.output_tokens)
            notes[o]["cost"] = (
                f"{opt.model}: ({params.input_tokens} x ${opt.input_usd_per_1m:g} + {params.output_tokens} x "
                f"${opt.output_usd_per_1m:g}) / {params.output_tokens} per 1M, {opt.currency} list prices"
            )
            sources[o]["cost"] = f"{opt.price_source} | {opt.price_as_of} | {opt.price_verified}"
        elif opt.kind == "self-hosted" and (o, "cost") in data.cells:
            how[o] = "not modelled (its cost cell says why)"
        elif opt.kind == "self-hosted":
            day = self_hosted_daily(opt, params, price.usd_per_hour, measured=measured.get(o))
            if day is None:
                for c in ("cost", "ttft"):
                    text[o][c] = "unknown"
                    notes[o][c] = (
                        f"unknown: {params.model} {engine_precision(opt, params)} does not fit {params.hardware}"
                    )
                    sources[o][c] = src
                how[o] = "does not fit"
                continue
            days[o] = day
            est = day.peak
            how[o] = est.source
            compute[o] = day.usd_per_1m
            values[o]["ttft"] = est.ttft_s
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
    within = [d.tokens for d in days.values() if d.peak.meets_slo]
    demand = max(within or [d.tokens for d in days.values()] or [math.nan])
    costs: dict[str, TotalCost] = {}
    for o, part in compute.items():
        staff, leave, staff_month, exit_usd, weeks = _fixed(o, data.options[o], params, data, demand)
        total = TotalCost(part, staff, leave, staff_month, exit_usd, weeks)
        costs[o] = total
        values[o]["cost"] = total.total
        text[o]["cost"] = usd_text(total.total)
        notes[o]["cost"] += (
            f"; total {usd_text(total.total)} = compute {usd_text(part)} + staff {usd_text(staff)} "
            f"(${staff_month:,.0f} a month) + exit {usd_text(leave)} ({fmt_number(weeks)} engineer-weeks, "
            f"${exit_usd:,.0f}) per 1M at {fmt_number(demand / 1e6, 3)}M output tokens a day"
        )

    def frame(d: Mapping[str, Mapping[str, object]]) -> pd.DataFrame:
        return pd.DataFrame([[d[o][c] for c in crits] for o in opts], index=opts, columns=crits)

    meets = {o: d.peak.meets_slo for o, d in days.items()}
    return CellValues(frame(values).astype(float), frame(text), frame(notes), frame(sources), how, costs, demand, meets)


def scoring_inputs(
    params: MatrixParams, data: MatrixData
) -> tuple[dict[str, float], Mapping[str, str], tuple[str, ...]]:
    """(weights, directions, log-scaled criteria) of `params` over `data`'s criteria."""
    weights = {c: params.weights.get(c, cr.default_weight) for c, cr in data.criteria.items()}
    directions = {c: cr.direction for c, cr in data.criteria.items()}
    log_scale = tuple(c for c, cr in data.criteria.items() if cr.kind == "computed")
    return weights, directions, log_scale


def usd_text(x: float) -> str:
    return "unknown" if not math.isfinite(x) else f"${x:.3f}" if x < 1 else f"${x:,.2f}"

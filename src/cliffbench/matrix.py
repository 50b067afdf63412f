"""The Architecture Decision Matrix: sourced data, a cost model, weights, a ranking and its sensitivity.

The data live in data/matrix/ (schema in its README): options, criteria, one sourced cell per
option x scored criterion, and GPU hourly prices. Two criteria are computed for the user's
profile instead of typed in:

- cost, USD per 1M output tokens. Managed: (input x input price + output x output price) / output,
  per request, so the input mix counts. Self-hosted: replicas x GPU USD/h / output tokens per hour.
- ttft, seconds. Self-hosted only; managed APIs publish no TTFT guarantee, so their cells say so.

Self-hosted throughput comes from a stored study when its GPU matches the hardware ("measured:
study X"), else from the roofline (`cliffbench.roofline`), scaled by `efficiency`. A roofline is an
upper bound, so efficiency (default 0.5, a middle reading of measured fractions of peak bandwidth
for 8B decode) turns it into an estimate; it is a parameter because it is the least certain number
here. Per replica with batch B (slots, or every user while the KV cache holds them), closed-loop
users, prompt I and output O tokens, prefill rate P and batched decode rate D(B):

    GPU-seconds per B requests  = B x I / P + O x B / D(B)
    output tok/s                = O x B / (GPU-seconds per B requests)
    TTFT                        = wait + I / P + B / D(B),  wait = users / X - service  (Little's law)

where X is requests/s and service the time a request holds its slot; wait is 0 while every user
has a slot. Options that may scale out (vLLM behind LiteLLM) add replicas until the TTFT SLO holds.

Scores: each criterion is min-max normalised to 0..1 over the options that know it (computed
criteria on a log scale: half the price counts the same at any price); an unknown cell is left out
of that criterion's normalisation and of its option's weighted mean, and flagged. Discontinued
options are shown but never ranked.
"""

from __future__ import annotations

import csv
import html
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, model_validator

from cliffbench.config import DATA_DIR, REPORT_DIR, InputError, Spec
from cliffbench.roofline import (
    BITS_PER_PARAM,
    HARDWARE,
    MODELS,
    decode_ceiling_tok_s,
    kv_capacity_seqs,
    prefill_ceiling_tok_s,
)

__all__ = [
    "MATRIX_CAPTIONS",
    "MATRIX_DIR",
    "Cell",
    "Criterion",
    "GpuPrice",
    "MatrixData",
    "MatrixParams",
    "MatrixResult",
    "Option",
    "Scores",
    "SelfHostedEstimate",
    "check_params",
    "cost_curve",
    "evaluate",
    "load_matrix",
    "make_matrix_figures",
    "managed_cost_usd_per_1m",
    "managed_source",
    "matrix_markdown",
    "method_markdown",
    "param_problem",
    "parse_assignments",
    "plot_cost_curve",
    "plot_heatmap",
    "ranking_markdown",
    "score_matrix",
    "self_hosted_estimate",
    "sensitivity",
    "sensitivity_markdown",
    "write_matrix_csv",
    "write_matrix_pdf",
]

MATRIX_DIR = DATA_DIR / "matrix"
_DATE = r"^\d{4}-\d{2}(-\d{2})?$"
_URL = r"^https?://"
Verified = Literal["primary", "secondary", "no"]
# unlimited scale-out still needs a bound for the search; 64 replicas of one GPU is past any profile here
_MAX_SCALE_OUT = 64
# cliffbench has no SGLang or TGI engine: a study's vLLM curve must not stand in for them
_NOT_MEASURABLE = ("sglang", "tgi")
SENSITIVITY_FACTORS = (0.0, 0.5, 2.0, 5.0)


class Criterion(Spec):
    criterion_id: str = Field(pattern=r"^[a-z_]+$")
    name: str = Field(min_length=1)
    direction: Literal["higher", "lower"]
    kind: Literal["score", "computed"]
    default_weight: float = Field(ge=0)
    unit: str
    description: str


class Option(Spec):
    option_id: str = Field(pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=1)
    kind: Literal["self-hosted", "managed"]
    status: Literal["active", "maintenance", "discontinued"]
    engine: Literal["llamacpp-slots", "vllm", "none"]
    slots: int | None = Field(None, gt=0, description="fixed slots; empty = tuned to the users")
    precision: str = ""
    max_replicas: int | None = Field(None, gt=0, description="empty = scale out until the TTFT SLO holds")
    model: str = Field(min_length=1)
    input_usd_per_1m: float | None = Field(None, ge=0)
    output_usd_per_1m: float | None = Field(None, ge=0)
    currency: str = ""
    price_as_of: str = Field("", pattern=r"^(\d{4}-\d{2}(-\d{2})?)?$")
    price_source: str = Field("", pattern=r"^(https?://.*)?$")
    price_verified: Verified | Literal[""] = ""
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Option:
        if self.kind == "self-hosted" and (self.engine == "none" or not self.precision):
            raise ValueError("a self-hosted option needs an engine and a precision")
        if self.kind == "managed" and self.status != "discontinued":
            if self.input_usd_per_1m is None or self.output_usd_per_1m is None:
                raise ValueError("an active managed option needs input and output prices")
            if not (self.currency and self.price_as_of and self.price_source and self.price_verified):
                raise ValueError("a price needs its currency, as-of date, source and verified status")
        return self


class Cell(Spec):
    option_id: str
    criterion_id: str
    value: str = Field(min_length=1)
    score: float | None = Field(None, ge=1, le=5)
    unknown_reason: str = ""
    rationale: str = ""
    source_url: str = Field(pattern=_URL)
    as_of: str = Field(pattern=_DATE)
    verified: Verified

    @model_validator(mode="after")
    def _known_or_not(self) -> Cell:
        if self.value == "unknown":
            if self.score is not None or not self.unknown_reason:
                raise ValueError("an unknown cell has no score and needs an unknown_reason")
        elif self.score is None or not self.rationale:
            raise ValueError("a known cell needs a score and a rationale")
        return self

    @property
    def known(self) -> bool:
        return self.value != "unknown"


class GpuPrice(Spec):
    hardware: str
    usd_per_hour: float = Field(gt=0)
    currency: Literal["USD"]
    provider: str = Field(min_length=1)
    as_of: str = Field(pattern=_DATE)
    source_url: str = Field(pattern=_URL)
    verified: Verified
    note: str = ""


_Row = TypeVar("_Row", bound=Spec)


def _read_csv(path: Path, cls: type[_Row]) -> list[_Row]:
    if not path.is_file():
        raise InputError(f"{path.name}: file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, want = list(reader.fieldnames or []), list(cls.model_fields)
        if header != want:
            raise InputError(f"{path.name}: columns must be {', '.join(want)}; got {', '.join(header)}")
        rows = []
        for raw in reader:
            data = {k: v for k, v in raw.items() if v != ""}  # empty CSV field = the field's default
            try:
                rows.append(cls.model_validate(data))
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "row"
                msg = str(err["msg"]).replace("Value error, ", "")
                raise InputError(f"{path.name} line {reader.line_num}: {where}: {msg}") from None
    return rows


@dataclass(frozen=True)
class MatrixData:
    criteria: dict[str, Criterion]
    options: dict[str, Option]
    cells: dict[tuple[str, str], Cell]
    gpu_prices: dict[str, GpuPrice]


def load_matrix(root: Path | None = None) -> MatrixData:
    """data/matrix/*.csv validated, with every scored cell present and every reference known."""
    d = root or MATRIX_DIR
    criteria = {c.criterion_id: c for c in _read_csv(d / "criteria.csv", Criterion)}
    options = {o.option_id: o for o in _read_csv(d / "options.csv", Option)}
    cells: dict[tuple[str, str], Cell] = {}
    for c in _read_csv(d / "cells.csv", Cell):
        if c.option_id not in options or c.criterion_id not in criteria:
            raise InputError(f"cells.csv: ({c.option_id}, {c.criterion_id}) names an unknown option or criterion")
        if criteria[c.criterion_id].kind == "computed" and c.known:
            raise InputError(f"cells.csv: ({c.option_id}, {c.criterion_id}) is computed; only 'unknown' may be stored")
        if (c.option_id, c.criterion_id) in cells:
            raise InputError(f"cells.csv: ({c.option_id}, {c.criterion_id}) repeats")
        cells[(c.option_id, c.criterion_id)] = c
    missing = [(o, c) for o in options for c, cr in criteria.items() if cr.kind == "score" and (o, c) not in cells]
    if missing:
        raise InputError(f"cells.csv: missing cell(s) {', '.join(f'{o}/{c}' for o, c in missing)}")
    prices = {p.hardware: p for p in _read_csv(d / "gpu_prices.csv", GpuPrice)}
    if unknown := [h for h in prices if h not in HARDWARE]:
        raise InputError(f"gpu_prices.csv: unknown hardware {unknown[0]!r}; allowed: {', '.join(HARDWARE)}")
    return MatrixData(criteria, options, cells, prices)


class MatrixParams(Spec):
    """The user's profile and preferences (papermill `matrix_*` parameters, `cliffbench matrix` flags)."""

    users: int = Field(25, gt=0, description="concurrent users, closed loop")
    input_tokens: int = Field(512, gt=0, description="prompt tokens per request")
    output_tokens: int = Field(256, gt=0, description="output tokens per request")
    ttft_slo_s: float = Field(2.0, gt=0, allow_inf_nan=False, description="TTFT objective, seconds")
    hardware: str = Field("a100-40gb", description="GPU of the self-hosted options (roofline.HARDWARE key)")
    model: str = Field("llama-3.1-8b", description="model shape of the self-hosted options (roofline.MODELS key)")
    gpu_prices: dict[str, float] = Field(default_factory=dict, description="USD per GPU-hour overrides")
    weights: dict[str, float] = Field(default_factory=dict, description="criterion weights overriding the defaults")
    efficiency: float = Field(0.5, gt=0, le=1, description="fraction of the roofline an engine reaches")
    precision: str = Field(
        "bf16",
        description="weights of every self-hosted option, so engines compare like for like; "
        "'native' = each option's usual default (Ollama and llama.cpp Q4_K_M)",
    )
    study: str = Field("", description="stored study to read measured throughput from, when its GPU matches")


def param_problem(name: str, value: Any, data: MatrixData | None = None) -> str | None:
    """What is wrong with parameter `name` (hardware, model, gpu_prices, weights), or None.

    The message names the allowed values but not the parameter, so each caller prefixes its own
    spelling of it (`--weights`, `matrix_weights`).
    """
    if name == "hardware" and value not in HARDWARE:
        return f"unknown hardware {value!r}; allowed: {', '.join(HARDWARE)}"
    if name == "precision" and value != "native" and value not in BITS_PER_PARAM:
        return f"unknown precision {value!r}; allowed: native, {', '.join(BITS_PER_PARAM)}"
    if name == "model" and value not in MODELS:
        return f"unknown model {value!r}; allowed: {', '.join(MODELS)}"
    if name == "gpu_prices":
        for hw, price in value.items():
            if hw not in HARDWARE:
                return f"unknown hardware {hw!r}; allowed: {', '.join(HARDWARE)}"
            if not (price > 0 and math.isfinite(price)):
                return f"{hw} must be a positive USD/hour, got {price:g}"
    if name == "weights":
        criteria = list((data or load_matrix()).criteria)
        for c, w in value.items():
            if c not in criteria:
                return f"unknown criterion {c!r}; allowed: {', '.join(criteria)}"
            if not (w >= 0 and math.isfinite(w)):
                return f"{c} must be >= 0, got {w:g}"
        defaults = {c: cr.default_weight for c, cr in (data or load_matrix()).criteria.items()}
        if not any(w > 0 for w in (defaults | value).values()):
            return f"at least one weight must be > 0; criteria: {', '.join(criteria)}"
    return None


def check_params(params: MatrixParams, data: MatrixData | None = None, names: Mapping[str, str] | None = None) -> None:
    """InputError naming the first bad parameter (as `names` spells it: a CLI flag, a notebook parameter)."""
    data = data or load_matrix()
    names = names or {}
    for name in ("hardware", "model", "precision", "gpu_prices", "weights"):
        if problem := param_problem(name, getattr(params, name), data):
            raise InputError(f"{names.get(name, name)}: {problem}")
    if params.hardware not in params.gpu_prices and params.hardware not in data.gpu_prices:
        known = ", ".join(sorted(set(data.gpu_prices) | set(params.gpu_prices)))
        raise InputError(
            f"{names.get('gpu_prices', 'gpu_prices')}: no price for {params.hardware!r}; "
            f"give one ({params.hardware}=USD per hour) or pick a hardware priced in data/matrix: {known}"
        )


def parse_assignments(text: str | list[str], param: str) -> dict[str, float]:
    """'a=1,b=2' (or ['a=1', 'b=2']) -> {'a': 1.0, 'b': 2.0}; InputError names `param`."""
    items = text if isinstance(text, list) else [text]
    out: dict[str, float] = {}
    for part in (p.strip() for item in items for p in item.split(",")):
        if not part:
            continue
        key, sep, val = part.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = float(val)
        except ValueError:
            raise InputError(f"{param}: expected name=number pairs, got {part!r}") from None
    return out


@dataclass(frozen=True)
class SelfHostedEstimate:
    """One self-hosted option at one user count."""

    output_tok_s: float
    ttft_s: float
    replicas: int
    batch: int
    meets_slo: bool
    source: str


def _precision(option: Option, params: MatrixParams) -> str:
    return option.precision if params.precision == "native" else params.precision


def _per_replica(option: Option, params: MatrixParams, users: int) -> tuple[float, float, int] | None:
    """(output tok/s, TTFT s, batch) of one replica serving `users`; None if the model does not fit."""
    hw, model, prec = HARDWARE[params.hardware], MODELS[params.model], _precision(option, params)
    i, o, eff = params.input_tokens, params.output_tokens, params.efficiency
    capacity = kv_capacity_seqs(hw, model, prec, i + o)
    if capacity < 1:
        return None
    cap = min(option.slots or users, capacity) if option.engine == "llamacpp-slots" else capacity
    batch = min(users, cap)
    prefill_tok_s = prefill_ceiling_tok_s(hw, model, prec) * eff
    step_s = batch / (decode_ceiling_tok_s(hw, model, prec, batch, i + o / 2) * eff)
    service_s = batch * i / prefill_tok_s + o * step_s  # GPU-seconds per `batch` requests = slot hold time
    req_s = batch / service_s
    wait_s = max(0.0, users / req_s - service_s)
    return req_s * o, wait_s + i / prefill_tok_s + step_s, batch


def _measured(option: Option, params: MatrixParams, users: int) -> SelfHostedEstimate | None:
    """Throughput and TTFT p50 of a matching engine in `params.study`, when its GPU is `params.hardware`."""
    if not params.study or option.option_id in _NOT_MEASURABLE:
        return None
    from cliffbench.decision import interpolate
    from cliffbench.store import load_results

    res = load_results(params.study)
    gpus = " ".join(str(g.get("name", "")) for g in res.manifest.get("gpu", []) or []).lower()
    family, _, size = params.hardware.partition("-")
    if family not in gpus or (size.endswith("gb") and size.upper() not in gpus.upper()):
        return None
    lv = res.levels
    if option.engine == "vllm":
        engines = lv.loc[lv["engine_kind"] == "vllm", "engine"]
    else:
        slots = lv.get("cfg_slots", pd.Series(np.nan, index=lv.index))
        want = lv["engine_kind"] == "llamacpp-slots"
        if option.slots:
            want &= slots == option.slots
        engines = lv.loc[want, "engine"]
    for eng in sorted(set(engines)):
        tok_s = interpolate(lv, eng, "output_tok_s", users)
        ttft_s = interpolate(lv, eng, "ttft_s_p50", users)
        if math.isfinite(tok_s) and tok_s > 0:
            # the study's own model, which may differ from params.model: the label says which was measured
            model = (res.manifest.get("models") or {}).get(eng, {}).get("name", "as stored")
            how = f"measured: study {params.study}, engine {eng}, model {model}"
            return SelfHostedEstimate(tok_s, ttft_s, 1, users, ttft_s <= params.ttft_slo_s, how)
    return None


def self_hosted_estimate(option: Option, params: MatrixParams, users: int | None = None) -> SelfHostedEstimate | None:
    """Throughput and TTFT of a self-hosted option at `users` (default params.users), measured or roofline."""
    users = users or params.users
    if (m := _measured(option, params, users)) is not None:
        return m
    limit = option.max_replicas or _MAX_SCALE_OUT
    best: tuple[float, float, int] | None = None
    n = 1
    for n in range(1, limit + 1):
        best = _per_replica(option, params, math.ceil(users / n))
        if best is None or best[1] <= params.ttft_slo_s:
            break
    if best is None:
        return None
    tok_s, ttft_s, batch = best
    slots = f"{option.slots} slots, " if option.slots else ""
    how = (
        f"roofline: {params.hardware}, {params.model} {_precision(option, params)}, {slots}batch {batch}, "
        f"x{params.efficiency:g} efficiency" + (f", {n} replicas" if n > 1 else "")
    )
    # replicas serve ceil(users / n) each, so the fleet's throughput counts only the users that exist
    total = tok_s * n * min(1.0, users / (n * math.ceil(users / n)))
    return SelfHostedEstimate(total, ttft_s, n, batch, ttft_s <= params.ttft_slo_s, how)


def managed_cost_usd_per_1m(option: Option, input_tokens: int, output_tokens: int) -> float:
    """Cost per 1M output tokens of a managed API: the request's input and output at list prices."""
    if option.input_usd_per_1m is None or option.output_usd_per_1m is None:
        return math.nan
    per_request = input_tokens * option.input_usd_per_1m + output_tokens * option.output_usd_per_1m
    return per_request / output_tokens


def _gpu_price(params: MatrixParams, data: MatrixData) -> tuple[float, str, str, str]:
    """(USD/h, source, as-of, verified) of the chosen GPU: the user's override or the stored price."""
    if params.hardware in params.gpu_prices:
        return params.gpu_prices[params.hardware], "parameter gpu_prices (the user's price)", "run time", "user"
    p = data.gpu_prices[params.hardware]
    return p.usd_per_hour, p.source_url, p.as_of, p.verified


@dataclass
class Scores:
    """Normalised 0..1 scores, the weighted total and the rank of each option (NaN = unknown)."""

    normalised: pd.DataFrame
    total: pd.Series
    rank: pd.Series
    flagged: dict[str, list[str]]
    weights: dict[str, float]


def score_matrix(
    values: pd.DataFrame,
    directions: Mapping[str, str],
    weights: dict[str, float],
    eligible: list[str] | None = None,
    log_scale: tuple[str, ...] = (),
) -> Scores:
    """Min-max normalise each criterion over the options that know it; weighted mean over known cells.

    `values`: options x criteria, NaN where unknown. A criterion whose known values are all equal
    gives every option 1. `eligible` options are ranked (1 = best); the others get NaN.
    """
    norm = pd.DataFrame(index=values.index, columns=values.columns, dtype=float)
    for c in values.columns:
        v = values[c].astype(float)
        if c in log_scale:
            v = pd.Series(np.log10(v.where(v > 0)), index=v.index)
        lo, hi = v.min(), v.max()
        s = pd.Series(1.0, index=v.index) if not hi > lo else (v - lo) / (hi - lo)
        norm[c] = (1 - s if directions[c] == "lower" else s).where(v.notna())
    w = pd.Series({c: weights.get(c, 0.0) for c in values.columns}, dtype=float)
    known = norm.notna()
    wsum = known.mul(w, axis=1).sum(axis=1)
    total = norm.fillna(0).mul(w, axis=1).sum(axis=1) / wsum.where(wsum > 0)
    ranked = total.loc[eligible] if eligible is not None else total
    rank = ranked.rank(ascending=False, method="min").reindex(values.index)
    flagged = {o: [c for c in values.columns if not known.loc[o, c] and w[c] > 0] for o in values.index}
    return Scores(norm, total, rank, {o: f for o, f in flagged.items() if f}, dict(w))


def _top(
    values: pd.DataFrame,
    directions: Mapping[str, str],
    weights: dict[str, float],
    eligible: list[str],
    log_scale: tuple[str, ...],
) -> str:
    """The best eligible option; "" when no weight is left to decide (every known weight 0)."""
    total = score_matrix(values, directions, weights, eligible, log_scale).total.loc[eligible]
    return "" if total.isna().all() else str(total.idxmax())


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
    base = _top(values, directions, weights, eligible, log_scale)
    rows = []
    for c in values.columns:
        for f in factors:
            top = _top(values, directions, {**weights, c: weights.get(c, 0.0) * f}, eligible, log_scale)
            rows.append({"criterion": c, "factor": f, "top": top, "flips": top not in (base, "")})
    grid = pd.DataFrame(rows)

    def top_at(c: str, f: float) -> str:
        return _top(values, directions, {**weights, c: weights.get(c, 0.0) * f}, eligible, log_scale)

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
    eligible: list[str] = field(default_factory=list)

    @property
    def top(self) -> str:
        return str(self.scores.total.loc[self.eligible].idxmax())


def _fmt(x: float, digits: int = 3) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}g}"


def evaluate(params: MatrixParams | None = None, data: MatrixData | None = None) -> MatrixResult:
    """The whole matrix for `params`: values, scores, ranking and sensitivity."""
    params = params or MatrixParams()
    data = data or load_matrix()
    check_params(params, data)
    opts, crits = list(data.options), list(data.criteria)
    values = pd.DataFrame(np.nan, index=opts, columns=crits)
    text = pd.DataFrame("", index=opts, columns=crits)
    notes = text.copy()
    sources = text.copy()
    how: dict[str, str] = {}
    gpu_usd_h, gpu_src, gpu_asof, gpu_ver = _gpu_price(params, data)
    for o, opt in data.options.items():
        for c in crits:
            cell = data.cells.get((o, c))
            if cell is not None:
                values.loc[o, c] = cell.score if cell.known else np.nan
                text.loc[o, c] = f"{cell.value} ({cell.score:g}/5)" if cell.known else "unknown"
                notes.loc[o, c] = cell.rationale if cell.known else f"unknown: {cell.unknown_reason}"
                sources.loc[o, c] = f"{cell.source_url} | {cell.as_of} | {cell.verified}"
        if opt.kind == "managed" and (o, "cost") not in data.cells:
            cost = managed_cost_usd_per_1m(opt, params.input_tokens, params.output_tokens)
            values.loc[o, "cost"] = cost
            text.loc[o, "cost"] = _usd(cost)
            notes.loc[o, "cost"] = (
                f"{opt.model}: ({params.input_tokens} x ${opt.input_usd_per_1m:g} + {params.output_tokens} x "
                f"${opt.output_usd_per_1m:g}) / {params.output_tokens} per 1M, {opt.currency} list prices"
            )
            sources.loc[o, "cost"] = f"{opt.price_source} | {opt.price_as_of} | {opt.price_verified}"
        elif opt.kind == "self-hosted":
            est = self_hosted_estimate(opt, params)
            src = f"{gpu_src} | {gpu_asof} | {gpu_ver}"
            if est is None:
                for c in ("cost", "ttft"):
                    text.loc[o, c] = "unknown"
                    notes.loc[o, c] = (
                        f"unknown: {params.model} {_precision(opt, params)} does not fit {params.hardware}"
                    )
                    sources.loc[o, c] = src
                how[o] = "does not fit"
                continue
            how[o] = est.source
            cost = est.replicas * gpu_usd_h / (est.output_tok_s * 3600) * 1e6
            values.loc[o, ["cost", "ttft"]] = [cost, est.ttft_s]
            text.loc[o, "cost"] = _usd(cost)
            text.loc[o, "ttft"] = f"{_fmt(est.ttft_s)} s" + ("" if est.meets_slo else " (misses SLO)")
            base = f"{est.replicas} x ${gpu_usd_h:g}/h / {_fmt(est.output_tok_s)} output tok/s; {est.source}"
            notes.loc[o, "cost"] = base
            notes.loc[o, "ttft"] = (
                f"{params.users} users vs TTFT SLO {params.ttft_slo_s:g} s: "
                + ("met" if est.meets_slo else "missed")
                + f"; {est.source}"
            )
            sources.loc[o, ["cost", "ttft"]] = [src, src]
    weights = {c: params.weights.get(c, cr.default_weight) for c, cr in data.criteria.items()}
    directions = {c: cr.direction for c, cr in data.criteria.items()}
    log_scale = tuple(c for c, cr in data.criteria.items() if cr.kind == "computed")
    eligible = [o for o, opt in data.options.items() if opt.status != "discontinued"]
    scores = score_matrix(values, directions, weights, eligible, log_scale)
    grid, thresholds = sensitivity(values, directions, weights, eligible, log_scale)
    return MatrixResult(params, data, values, text, notes, sources, scores, how, grid, thresholds, eligible)


def cost_curve(params: MatrixParams, data: MatrixData | None = None, users: list[int] | None = None) -> pd.DataFrame:
    """Cost per 1M output tokens vs concurrent users: one row per option x user count (tidy)."""
    data = data or load_matrix()
    check_params(params, data)
    grid = users or [1, 2, 4, 8, 16, 32, 64, 128, 256]
    usd_h = _gpu_price(params, data)[0]
    rows = []
    for o, opt in data.options.items():
        if opt.status == "discontinued":
            continue
        for u in grid:
            if opt.kind == "managed":
                cost, src = managed_cost_usd_per_1m(opt, params.input_tokens, params.output_tokens), "list price"
            else:
                est = self_hosted_estimate(opt, params, u)
                if est is None:
                    continue
                cost, src = est.replicas * usd_h / (est.output_tok_s * 3600) * 1e6, est.source
            rows.append(
                {"option": o, "name": opt.name, "kind": opt.kind, "users": u, "usd_per_1m_output": cost, "source": src}
            )
    return pd.DataFrame(rows)


# ---- tables -------------------------------------------------------------------------------------


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _usd(x: float) -> str:
    return "unknown" if not math.isfinite(x) else f"${x:.3f}" if x < 1 else f"${x:,.2f}"


def matrix_markdown(r: MatrixResult) -> str:
    """The matrix as a Markdown table; [n] notes give each cell's rationale, as-of date and [S] source."""
    crits = list(r.data.criteria)
    head = "| option | " + " | ".join(r.data.criteria[c].name for c in crits) + " |"
    lines = [head, "|" + "---|" * (len(crits) + 1)]
    notes: list[str] = []
    urls: dict[str, int] = {}
    for o, opt in r.data.options.items():
        cells = []
        for c in crits:
            url, as_of, verified = [*str(r.sources.loc[o, c]).split(" | "), "", ""][:3]
            k = urls.setdefault(url, len(urls) + 1)
            notes.append(f"{r.notes.loc[o, c]!s} (as of {as_of}; verified: {verified}) [S{k}]")
            cells.append(f"{_md_escape(str(r.text.loc[o, c]))} [{len(notes)}]")
        status = "" if opt.status == "active" else f" ({opt.status})"
        lines.append(f"| {_md_escape(opt.name)}{status} | " + " | ".join(cells) + " |")
    p = r.params
    weights_txt = (
        "each engine's usual weights" if p.precision == "native" else f"{p.precision} weights for every engine"
    )
    intro = (
        f"Profile: {p.users} concurrent users, {p.input_tokens} input and {p.output_tokens} output tokens per "
        f"request, TTFT SLO {p.ttft_slo_s:g} s; self-hosted on {p.hardware} ({p.model}, "
        f"{weights_txt}), "
        f"engines at {p.efficiency:g} x the roofline unless measured. Scores 1 (worst) to 5 (best); prices in USD. "
        "Verified: primary = the vendor's own page was read; secondary = a third-party copy was read; "
        "no = from knowledge, not re-verified."
    )
    note_md = "\n".join(f"{i}. {_md_escape(n)}" for i, n in enumerate(notes, 1))
    src_md = "; ".join(f"[S{k}] {u}" for u, k in urls.items())
    return f"{intro}\n\n" + "\n".join(lines) + f"\n\n**Notes**\n\n{note_md}\n\n**Sources** {src_md}"


def managed_source(option: Option) -> str:
    """Where a managed option's cost comes from, for the 'throughput source' columns."""
    if option.status == "discontinued":
        return "discontinued: no public price"
    return f"managed: list prices ({option.model.split(' (')[0]})"


def method_markdown(r: MatrixResult) -> str:
    """How the computed cells were computed, with this run's parameters."""
    p = r.params
    usd_h, src, as_of, verified = _gpu_price(p, r.data)
    price_txt = "your price" if verified == "user" else f"{src}, {as_of}"
    measured = [o for o, s in r.throughput_source.items() if s.startswith("measured")]
    return (
        f"Options, criteria and every scored cell come from `data/matrix/` (each with a one-line rationale, a "
        f"source and an as-of date); two criteria are computed for this profile: **{p.users} concurrent users**, "
        f"{p.input_tokens} input and {p.output_tokens} output tokens per request, TTFT SLO {p.ttft_slo_s:g} s. "
        f"Managed APIs cost (input x input price + output x output price) / output per 1M output tokens, at the "
        f"list price of one representative model each. Self-hosted options run {p.model} on one {p.hardware} at "
        f"${usd_h:g}/h ({price_txt}); their throughput is "
        + (f"measured for {', '.join(measured)} (study {p.study}), else " if measured else "")
        + f"the roofline (bandwidth and compute ceilings) x {p.efficiency:g}: a roofline is an upper "
        f"bound, and the factor is a parameter. Ollama keeps its 4 slots (extra users queue); llama.cpp server gets "
        f"as many slots as users; vLLM, SGLang and TGI batch continuously (SGLang and TGI are modelled like vLLM: "
        f"cliffbench cannot run them yet). Behind a LiteLLM router, vLLM replicas are added until the TTFT SLO "
        f"holds. Scores are min-max normalised per criterion (cost and TTFT on a log scale); an unknown cell is "
        f"left out of its criterion and of its option's weighted mean, and listed beside the ranking."
    )


def ranking_markdown(r: MatrixResult) -> str:
    """Ranking under the chosen weights, with each self-hosted option's throughput source."""
    w = ", ".join(f"{r.data.criteria[c].name} {v:g}" for c, v in r.scores.weights.items())
    lines = [
        f"Weights: {w}.",
        "",
        "| rank | option | weighted score (0-1) | cost / 1M output | throughput source | unknown (left out) |",
        "|---|---|---|---|---|---|",
    ]
    order = r.scores.total.sort_values(ascending=False).index
    for o in order:
        rank = r.scores.rank.loc[o]
        rk = "not ranked (discontinued)" if not math.isfinite(rank) else str(int(rank))
        lines.append(
            f"| {rk} | {_md_escape(r.data.options[o].name)} | {_fmt(float(r.scores.total.loc[o]), 2)} | "
            f"{r.text.loc[o, 'cost']} | {_md_escape(r.throughput_source.get(o, managed_source(r.data.options[o])))} | "
            f"{', '.join(r.scores.flagged.get(o, [])) or '-'} |"
        )
    return "\n".join(lines)


def sensitivity_markdown(r: MatrixResult) -> str:
    """The sensitivity check in words and a table: which single-weight change flips the top choice."""
    name = {o: opt.name for o, opt in r.data.options.items()}
    cname = {c: cr.name for c, cr in r.data.criteria.items()}
    flips = r.grid[r.grid["flips"]]
    out = [f"Top choice under these weights: **{name[r.top]}**."]
    cands = []
    for _, t in r.thresholds.iterrows():
        for side in ("up", "down"):
            f = t[side]
            if isinstance(f, float) and math.isfinite(f):
                dist = abs(math.log(f)) if f > 0 else math.inf
                cands.append((dist, f, str(t["criterion"]), str(t[f"{side}_top"])))
    if cands:
        _, f, c, top = min(cands, key=lambda x: x[0])
        out.append(
            f"The smallest single-weight change (by ratio) that flips it: {cname[c]} weight x{_fmt(f, 3)} "
            f"(from {r.scores.weights[c]:g} to {_fmt(r.scores.weights[c] * f, 3)}) makes {name[top]} the top choice."
        )
    else:
        out.append("No single weight between x0 and x100 changes the top choice.")
    out += [
        "",
        "| criterion | " + " | ".join(f"x{f:g}" for f in SENSITIVITY_FACTORS) + " |",
        "|---|" + "---|" * len(SENSITIVITY_FACTORS),
    ]
    for c in r.data.criteria:
        row = r.grid[r.grid["criterion"] == c]
        cells = [
            ("**" + name[t] + "**") if fl else "same" if t else "no choice (all weights 0)"
            for t, fl in zip(row["top"], row["flips"], strict=True)
        ]
        out.append(f"| {cname[c]} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"{len(flips)} of {len(r.grid)} single-weight changes flip the top choice (bold: the new top).")
    return "\n".join(out)


# ---- figures ------------------------------------------------------------------------------------


def plot_heatmap(ax: Any, r: MatrixResult) -> None:
    """Normalised scores (0..1), options x criteria; unknown cells grey with '?'."""
    import seaborn as sns

    norm = r.scores.normalised.astype(float)
    labels = [r.data.options[o].name for o in norm.index]
    cols = [r.data.criteria[c].name for c in norm.columns]
    annot = norm.map(lambda v: "?" if not math.isfinite(v) else f"{v:.2f}")
    ax.set_facecolor((0.85, 0.85, 0.85))
    sns.heatmap(
        norm,
        ax=ax,
        vmin=0,
        vmax=1,
        cmap="viridis",
        annot=annot.values,
        fmt="",
        cbar_kws={"label": "normalised score"},
        linewidths=0.5,
        annot_kws={"fontsize": 7},
    )
    ax.set_yticks(np.arange(len(labels)) + 0.5, labels, rotation=0, fontsize=7)
    ax.set_xticks(np.arange(len(cols)) + 0.5, cols, rotation=30, ha="right", fontsize=7)
    ax.set_xlabel("")
    ax.set_ylabel("")


def plot_cost_curve(ax: Any, curve: pd.DataFrame, hardware: str = "") -> None:
    """USD per 1M output tokens vs users: self-hosted curves (solid), managed list prices (dashed)."""
    import seaborn as sns

    # options on the same roofline draw the same curve: one line, all their names, so none hides another
    lines: dict[tuple[str, tuple[float, ...]], list[pd.DataFrame]] = {}
    for _, g in curve.groupby("option", sort=False):
        key = (str(g["kind"].iloc[0]), tuple(np.round(g["usd_per_1m_output"].to_numpy(), 9)))
        lines.setdefault(key, []).append(g)
    pal = sns.color_palette("colorblind", max(len(lines), 1))
    for ((kind, _), gs), col in zip(lines.items(), pal, strict=False):
        g = gs[0]
        managed = kind == "managed"
        names = [str(x["name"].iloc[0]) for x in gs]
        if len(names) > 1 and all(n.startswith("Self-hosted ") for n in names):
            names = ["Self-hosted " + " = ".join(n.removeprefix("Self-hosted ") for n in names)]
        label = " = ".join(names)
        ax.plot(
            g["users"],
            g["usd_per_1m_output"],
            ls="--" if managed else "-",
            marker="" if managed else "o",
            ms=3,
            color=col,
            label=label,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent users (closed loop)")
    ax.set_ylabel("USD per 1M output tokens")
    ax.set_title(
        f"Cost per 1M output tokens vs load (self-hosted on {hardware})"
        if hardware
        else "Cost per 1M output tokens vs load"
    )
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)


MATRIX_CAPTIONS = {
    "matrix_heatmap": "Architecture Decision Matrix: normalised scores per criterion (1 = the best option on it); "
    "grey = unknown, left out of the normalisation.",
    "matrix_cost": "Cost per 1M output tokens vs concurrent users: self-hosted curves fall with load until the GPU "
    "saturates; managed APIs are flat list prices.",
}


def make_matrix_figures(r: MatrixResult, out_dir: Path) -> dict[str, Path]:
    """Heatmap and cost curve as PNG + SVG under `out_dir`; returns the SVG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cliffbench import figures as fg

    fg.set_style()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    plot_heatmap(ax, r)
    fig.tight_layout()
    paths = {"matrix_heatmap": fg.save_figure(fig, "matrix_heatmap", out_dir)["svg"]}
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    plot_cost_curve(ax, cost_curve(r.params, r.data), r.params.hardware)
    fig.tight_layout()
    paths["matrix_cost"] = fg.save_figure(fig, "matrix_cost", out_dir)["svg"]
    plt.close(fig)
    return paths


# ---- exports ------------------------------------------------------------------------------------


def _tidy(r: MatrixResult) -> pd.DataFrame:
    rows = []
    for o, opt in r.data.options.items():
        for c, cr in r.data.criteria.items():
            v, n = float(r.values.at[o, c]), float(r.scores.normalised.at[o, c])  # type: ignore[arg-type]
            rank = r.scores.rank.loc[o]
            rows.append(
                {
                    "option": o,
                    "option_name": opt.name,
                    "status": opt.status,
                    "criterion": c,
                    "unit": cr.unit,
                    "value": v,
                    "text": r.text.loc[o, c],
                    "known": bool(math.isfinite(v)),
                    "normalised": n,
                    "weight": r.scores.weights[c],
                    "weighted_total": r.scores.total.loc[o],
                    "rank": int(rank) if math.isfinite(rank) else None,
                    "throughput_source": r.throughput_source.get(o, ""),
                    "rationale": r.notes.loc[o, c],
                    "source": r.sources.loc[o, c],
                }
            )
    return pd.DataFrame(rows)


def write_matrix_csv(r: MatrixResult, path: Path | None = None) -> Path:
    """Tidy CSV (one row per option x criterion), written to a temp file and renamed into place."""
    path = path or REPORT_DIR / "decision_matrix.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}-{os.getpid()}")
    try:
        _tidy(r).to_csv(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _md_html(md: str) -> str:
    import mistune  # nbconvert's Markdown renderer, so no new dependency

    return str(mistune.create_markdown(plugins=["table"])(md))


_PDF_CSS = """
@page { size: A4 landscape; margin: 11mm 12mm 14mm 12mm; }
body { font-size: 7.5pt; line-height: 1.25; }
h1 { font-size: 15pt; margin: 0 0 2mm 0; } h2 { font-size: 11pt; margin-top: 3mm; }
table { font-size: 6.8pt; margin: 1.5mm 0; } th, td { padding: 0.4mm 1.2mm; }
ol { font-size: 5.8pt; line-height: 1.12; columns: 3; column-gap: 5mm; margin: 0; padding-left: 6mm; }
.figs { display: flex; gap: 4mm; } .figs figure { width: 50%; margin: 1mm 0; }
.figs img { max-height: 62mm; object-fit: contain; }
p { margin: 1mm 0; }
"""


def write_matrix_pdf(r: MatrixResult, path: Path | None = None) -> Path:
    """The standalone 2-3 page matrix PDF (HTML -> WeasyPrint, atomic)."""
    import tempfile

    from cliffbench.report import html_to_pdf

    path = path or REPORT_DIR / "decision_matrix.pdf"
    with tempfile.TemporaryDirectory() as d:
        figs = make_matrix_figures(r, Path(d))

        def fig(name: str) -> str:
            cap = html.escape(MATRIX_CAPTIONS[name])
            return f'<figure><img src="{figs[name].as_uri()}"/><figcaption>{cap}</figcaption></figure>'

        body = (
            "<h1>Architecture Decision Matrix</h1>"
            "<p>Generated by cliffbench from data/matrix/ and its cost model: every number is computed, "
            "every cell carries its source. Self-hosted numbers are estimates, not measurements, unless the "
            "throughput source says 'measured'.</p>"
            f"<h2>Ranking</h2>{_md_html(ranking_markdown(r))}"
            f'<div class="figs">{fig("matrix_heatmap")}{fig("matrix_cost")}</div>'
            f"<h2>Sensitivity</h2>{_md_html(sensitivity_markdown(r))}"
            f"<h2>The matrix</h2>{_md_html(matrix_markdown(r))}"
        )
        html_to_pdf(body, path, Path(d), extra_css=_PDF_CSS)
    return path

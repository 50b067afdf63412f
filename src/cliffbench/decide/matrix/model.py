"""The cost model: the user's profile and prices -> cost per 1M output tokens and TTFT per option."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from cliffbench.audit.roofline import (
    BITS_PER_PARAM,
    MODELS,
    decode_ceiling_tok_s,
    kv_capacity_seqs,
    prefill_ceiling_tok_s,
)
from cliffbench.config import InputError, Spec
from cliffbench.decide.matrix.data import PRICING_MODELS, MatrixData, Option, load_matrix
from cliffbench.engines.specs import slot_bound
from cliffbench.hardware import HARDWARE

__all__ = [
    "NOT_MEASURABLE",
    "GpuPriceUsed",
    "MatrixParams",
    "SelfHostedEstimate",
    "check_params",
    "engine_precision",
    "gpu_price",
    "managed_cost_usd_per_1m",
    "param_problem",
    "parse_assignments",
    "report_day",
    "roofline_capacity",
    "roofline_estimate",
]


_MAX_SCALE_OUT = 64
# cliffbench has no SGLang, TGI, TensorRT-LLM or LMDeploy engine: a study's vLLM curve must not stand in for them
NOT_MEASURABLE = ("sglang", "tgi", "tensorrt-llm", "lmdeploy")


class MatrixParams(Spec):
    """The user's profile and preferences (papermill `matrix_*` parameters, `cliffbench matrix` flags)."""

    users: int = Field(25, gt=0, description="concurrent users at peak, closed loop")
    peak_hours: float = Field(
        24.0, gt=0, le=24, allow_inf_nan=False, description="hours a day at peak (24: the GPU busy around the clock)"
    )
    offpeak_users: int = Field(0, ge=0, description="concurrent users the rest of the day (0: idle)")
    utilisation: float | None = Field(
        None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="shorthand for the load profile: the fraction of the day at peak, idle otherwise",
    )
    autoscale: bool = Field(
        False, description="replicas follow the load (options that scale out); else the peak fleet is paid all day"
    )
    min_replicas: int = Field(1, ge=0, description="with autoscale: replicas kept while idle (0 = scale to zero)")
    input_tokens: int = Field(512, gt=0, description="prompt tokens per request")
    output_tokens: int = Field(256, gt=0, description="output tokens per request")
    ttft_slo_s: float = Field(2.0, gt=0, allow_inf_nan=False, description="TTFT objective, seconds")
    hardware: str = Field("a100-40gb", description="GPU of the self-hosted options (hardware.HARDWARE key)")
    model: str = Field("llama-3.1-8b", description="model shape of the self-hosted options (roofline.MODELS key)")
    gpu_prices: dict[str, float] = Field(default_factory=dict, description="USD per GPU-hour overrides")
    pricing_model: str = Field(
        "vm-on-demand",
        description="how the GPU-hour is bought: vm-on-demand, serverless or marketplace (like with like)",
    )
    weights: dict[str, float] = Field(default_factory=dict, description="criterion weights overriding the defaults")
    efficiency: float = Field(0.5, gt=0, le=1, description="fraction of the roofline an engine reaches")
    precision: str = Field(
        "bf16",
        description="weights of every self-hosted option, so engines compare like for like; "
        "'native' = each option's usual default (Ollama and llama.cpp Q4_K_M)",
    )
    study: str = Field(
        "", description="stored study whose engine families give the self-hosted rows (measured, or projected)"
    )
    report_date: str = Field(
        "",
        pattern=r"^(\d{4}-\d{2}-\d{2})?$",
        description="date the matrix is for, YYYY-MM-DD (freshness and shutdowns); empty = today",
    )
    stale_after_months: int = Field(6, gt=0, description="a cell or price older than this many months is stale")
    engineer_usd_per_year: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="an engineer's yearly cost, for staff and exit costs (empty: costs.csv's sourced default; "
        "0 leaves staff and exit out)",
    )
    staff_fte: dict[str, float] = Field(
        default_factory=dict, description="ops fraction of an engineer per option, overriding options.csv ops_fte"
    )
    horizon_months: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="months the exit cost is spread over (empty: costs.csv)"
    )


def param_problem(name: str, value: Any, data: MatrixData | None = None) -> str | None:
    """What is wrong with parameter `name` (hardware, model, gpu_prices, weights), or None.

    The message names the allowed values but not the parameter, so each caller prefixes its own
    spelling of it (`--weights`, `matrix_weights`).
    """
    if name == "hardware" and value not in HARDWARE:
        return f"unknown hardware {value!r}; allowed: {', '.join(HARDWARE)}"
    if name == "precision" and value != "native" and value not in BITS_PER_PARAM:
        return f"unknown precision {value!r}; allowed: native, {', '.join(BITS_PER_PARAM)}"
    if name == "report_date" and value:
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return f"not a date: {value!r}; expected YYYY-MM-DD (empty: today)"
    if name == "pricing_model" and value not in PRICING_MODELS:
        return f"unknown pricing model {value!r}; allowed: {', '.join(PRICING_MODELS)}"
    if name == "model" and value not in MODELS:
        return f"unknown model {value!r}; allowed: {', '.join(MODELS)}"
    if name == "gpu_prices":
        for hw, price in value.items():
            if hw not in HARDWARE:
                return f"unknown hardware {hw!r}; allowed: {', '.join(HARDWARE)}"
            if not (price > 0 and math.isfinite(price)):
                return f"{hw} must be a positive USD/hour, got {price:g}"
    if name == "staff_fte":
        options = list((data or load_matrix()).options)
        for o, fte in value.items():
            if o not in options:
                return f"unknown option {o!r}; allowed: {', '.join(options)}"
            if not (fte >= 0 and math.isfinite(fte)):
                return f"{o} must be >= 0 engineers, got {fte:g}"
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
    for name in (
        "hardware",
        "model",
        "precision",
        "pricing_model",
        "report_date",
        "gpu_prices",
        "staff_fte",
        "weights",
    ):
        if problem := param_problem(name, getattr(params, name), data):
            raise InputError(f"{names.get(name, name)}: {problem}")
    if params.offpeak_users > params.users:
        raise InputError(
            f"{names.get('offpeak_users', 'offpeak_users')}: {params.offpeak_users} exceeds the peak "
            f"{names.get('users', 'users')} {params.users}"
        )
    if params.utilisation is not None and (params.peak_hours != 24 or params.offpeak_users):
        raise InputError(
            f"{names.get('utilisation', 'utilisation')}: give either a utilisation or a load profile "
            f"({names.get('peak_hours', 'peak_hours')}, {names.get('offpeak_users', 'offpeak_users')}), not both"
        )
    hw, pm = params.hardware, params.pricing_model
    if hw not in params.gpu_prices and not data.prices_for(hw, pm):
        others = sorted({p.pricing_model for p in data.prices_for(hw)})
        known = ", ".join(sorted({p.hardware for p in data.gpu_prices if p.pricing_model == pm}))
        raise InputError(
            f"{names.get('gpu_prices', 'gpu_prices')}: no {pm} price for {hw!r}"
            + (f" (priced as {', '.join(others)}: set {names.get('pricing_model', 'pricing_model')})" if others else "")
            + f"; give one ({hw}=USD per hour) or pick a hardware with a {pm} price: {known or 'none'}"
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


def report_day(params: MatrixParams) -> dt.date:
    """The matrix's date: `params.report_date`, else today (read here only, so tests pass a date)."""
    return dt.date.fromisoformat(params.report_date) if params.report_date else dt.date.today()


@dataclass(frozen=True)
class SelfHostedEstimate:
    """One self-hosted option at one user count."""

    output_tok_s: float
    ttft_s: float
    replicas: int
    batch: int
    meets_slo: bool
    source: str


def engine_precision(option: Option, params: MatrixParams) -> str:
    return option.precision if params.precision == "native" else params.precision


def _per_replica(option: Option, params: MatrixParams, users: int) -> tuple[float, float, int] | None:
    """(output tok/s, TTFT s, batch) of one replica serving `users`; None if the model does not fit."""
    hw, model, prec = HARDWARE[params.hardware], MODELS[params.model], engine_precision(option, params)
    i, o, eff = params.input_tokens, params.output_tokens, params.efficiency
    capacity = kv_capacity_seqs(hw, model, prec, i + o)
    if capacity < 1:
        return None
    cap = min(option.slots or users, capacity) if slot_bound(option.engine) else capacity
    batch = min(users, cap)
    prefill_tok_s = prefill_ceiling_tok_s(hw, model, prec) * eff
    step_s = batch / (decode_ceiling_tok_s(hw, model, prec, batch, i + o / 2) * eff)
    service_s = batch * i / prefill_tok_s + o * step_s  # GPU-seconds per `batch` requests = slot hold time
    req_s = batch / service_s
    wait_s = max(0.0, users / req_s - service_s)
    return req_s * o, wait_s + i / prefill_tok_s + step_s, batch


def roofline_estimate(
    option: Option,
    params: MatrixParams,
    users: int | None = None,
    replicas: int | None = None,
    efficiency: float | None = None,
    label: str = "roofline",
) -> SelfHostedEstimate | None:
    """Throughput and TTFT of a self-hosted option at `users` (default params.users) on the roofline at
    `efficiency` (default params.efficiency; a study's measured fraction when projecting it); `replicas`
    fixes the fleet (an idle hour of a fleet sized for the peak), else replicas are added until the
    TTFT SLO holds (options that scale out). `label` opens the source text."""
    users = users or params.users
    if efficiency is not None:
        params = params.model_copy(update={"efficiency": efficiency})
    limit = option.max_replicas or _MAX_SCALE_OUT
    best: tuple[float, float, int] | None = None
    n = 1
    fixed = range(min(replicas, users), min(replicas, users) + 1) if replicas else None
    for n in fixed or range(1, limit + 1):
        best = _per_replica(option, params, math.ceil(users / n))
        if best is None or best[1] <= params.ttft_slo_s:
            break
    if best is None:
        return None
    tok_s, ttft_s, batch = best
    slots = f"{option.slots} slots, " if option.slots else ""
    how = (
        f"{label}: {params.hardware}, {params.model} {engine_precision(option, params)}, {slots}batch {batch}, "
        f"x{params.efficiency:.3g} efficiency" + (f", {n} replicas" if n > 1 else "")
    )
    # replicas serve ceil(users / n) each, so the fleet's throughput counts only the users that exist
    total = tok_s * n * min(1.0, users / (n * math.ceil(users / n)))
    return SelfHostedEstimate(total, ttft_s, n, batch, ttft_s <= params.ttft_slo_s, how)


def roofline_capacity(option: Option, params: MatrixParams, efficiency: float | None = None) -> int:
    """The most users one server meets the TTFT SLO for on the roofline at `efficiency` (0: not even
    one; capped at 4096). TTFT grows with users (the batch, then the queue), so a bisection finds it."""
    if efficiency is not None:
        params = params.model_copy(update={"efficiency": efficiency})

    def meets(u: int) -> bool:
        one = _per_replica(option, params, u)
        return one is not None and one[1] <= params.ttft_slo_s

    if not meets(1):
        return 0
    lo, hi = 1, 2
    while hi <= 4096 and meets(hi):
        lo, hi = hi, hi * 2
    if hi > 4096:
        return 4096
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


def managed_cost_usd_per_1m(option: Option, input_tokens: int, output_tokens: int) -> float:
    """Cost per 1M output tokens of a managed API: the request's input and output at list prices."""
    if option.input_usd_per_1m is None or option.output_usd_per_1m is None:
        return math.nan
    per_request = input_tokens * option.input_usd_per_1m + output_tokens * option.output_usd_per_1m
    return per_request / output_tokens


@dataclass(frozen=True)
class GpuPriceUsed:
    """The GPU-hour price the self-hosted options are costed at, and where it comes from."""

    usd_per_hour: float
    source: str
    as_of: str
    verified: str
    provider: str
    pricing_model: str

    @property
    def user(self) -> bool:
        return self.verified == "user"


def gpu_price(params: MatrixParams, data: MatrixData) -> GpuPriceUsed:
    """The chosen GPU's price: the user's override, else the cheapest stored row of the chosen
    pricing model (rows of other pricing models are never mixed in: a serverless per-second rate
    held for an hour is not an on-demand VM)."""
    if params.hardware in params.gpu_prices:
        usd = params.gpu_prices[params.hardware]
        return GpuPriceUsed(usd, "parameter gpu_prices (the user's price)", "run time", "user", "you", "yours")
    p = data.prices_for(params.hardware, params.pricing_model)[0]
    return GpuPriceUsed(p.usd_per_hour, p.source_url, p.as_of, p.verified, p.provider, p.pricing_model)

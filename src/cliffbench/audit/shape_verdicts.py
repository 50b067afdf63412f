"""Shape verdicts: do the shapes the seed argues from reproduce in a study's measured curves?

Absolute numbers cannot transfer from an A100 serving an 8B model to this CPU serving 135M, but
shapes can: how much throughput grows from 1 to 25-32 users, how much TTFT grows, vLLM's lead at
25-32 users, and the tail TTFT at the highest level. Each shape is measured per engine, set beside
the published one (data/published/claims.csv) and judged with a stated rule; the roofline
(`cliffbench.audit.roofline`) supplies the reason. `efficiency` puts measured throughput against the
local roofline, so CPU and GPU numbers share one axis (fraction of the physical ceiling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cliffbench.audit.claims import audit_claims, load_claims
from cliffbench.audit.roofline import MODELS, ModelSize, decode_ceiling_tok_s
from cliffbench.bench.repeats import pool_repeats
from cliffbench.bench.store import Results, ok_levels, ok_requests
from cliffbench.config import fmt_number as fmt
from cliffbench.hardware import HARDWARE, Hardware

__all__ = [
    "GROWTH_CLASSES",
    "SEED_HIGH_USERS",
    "Shape",
    "efficiency",
    "growth_class",
    "local_hardware_of",
    "measured_shapes",
    "normalised_points",
    "ollama_like",
    "published_shapes",
    "shape_verdicts",
]

SEED_HIGH_USERS = (25, 32)  # the seed's "25-32 concurrent users"
# growth factor classes: the verdict compares classes, since magnitudes cannot transfer across hardware
GROWTH_CLASSES = ((0.9, "falls"), (1.5, "flat"), (10.0, "grows"), (math.inf, "grows >10x"))
_SEED = "CPLT_CLAIM"


def growth_class(factor: float) -> str:
    """'falls' (< x0.9), 'flat' (x0.9-1.5), 'grows' (x1.5-10) or 'grows >10x'."""
    if math.isnan(factor):
        return "n/a"
    return next(name for bound, name in GROWTH_CLASSES if factor < bound)


@dataclass(frozen=True)
class Shape:
    """One shape: published vs measured, with the verdict and the roofline reason."""

    shape: str
    published: str
    measured: str
    verdict: str
    reason: str


def published_shapes(claims: pd.DataFrame | None = None) -> dict[str, float]:
    """The seed's numbers by `<engine>_<metric>_<users>` (e.g. `vllm_tps_32`), plus the Red Hat p99
    TTFTs at peak load (`vllm_ttft_p99_peak`), from claims.csv."""
    c = load_claims() if claims is None else claims
    out: dict[str, float] = {}
    for r in c.to_dict("records"):
        scale = 1e-3 if r["unit"] == "ms" else 1.0
        engine = "vllm" if r["engine"] == "vllm" else "ollama"
        if r["source_id"] == _SEED and r["concurrency"] != "unknown":
            kind = "tps" if r["metric"] == "output_tok_s_total" else "ttft"
            out[f"{engine}_{kind}_{r['concurrency']}"] = float(r["value"]) * scale
        elif r["metric"] == "ttft_s_p99" and r["concurrency"] == "unknown":
            out[f"{engine}_ttft_p99_peak"] = float(r["value"]) * scale
    return out


def _high_users(lv: pd.DataFrame) -> int:
    """The highest level in 25-32 users every engine completed (else the highest common level)."""
    per = lv.groupby("engine")["concurrency"].apply(set)
    common = set.intersection(*per) if len(per) else set()
    inside = [u for u in common if SEED_HIGH_USERS[0] <= u <= SEED_HIGH_USERS[1]]
    return int(max(inside or common or {lv["concurrency"].max()}))


def measured_shapes(res: Results, level_set: str = "chat") -> pd.DataFrame:
    """Per engine: throughput and TTFT at the lowest and the high level, and their growth."""
    lv = ok_levels(pool_repeats(res.levels, res.requests), level_set)  # medians over repeats
    if lv.empty:
        return pd.DataFrame()
    high = _high_users(lv)
    rows = []
    for engine, g in lv.groupby("engine"):
        g = g.set_index("concurrency")
        low = int(g.index.min())
        if high not in g.index:
            continue
        rows.append(
            {
                "engine": engine,
                "users_low": low,
                "users_high": high,
                "tps_low": g.at[low, "output_tok_s"],
                "tps_high": g.at[high, "output_tok_s"],
                "ttft_p50_low_s": g.at[low, "ttft_s_p50"],
                "ttft_p50_high_s": g.at[high, "ttft_s_p50"],
                "ttft_p99_high_s": g.at[high, "ttft_s_p99"],
            }
        )
    out = pd.DataFrame(rows)
    if not out.empty:
        out["tps_gain"] = out["tps_high"] / out["tps_low"]
        out["ttft_growth"] = out["ttft_p50_high_s"] / out["ttft_p50_low_s"]
    return out


def ollama_like(engines: list[str]) -> str | None:
    """The study's stand-in for Ollama: 4 slots as Ollama ships, else one request at a time,
    else the first llama.cpp engine by name."""
    for pref in ("llamacpp-slots-4", "llamacpp-serial"):
        if pref in engines:
            return pref
    slots = sorted(e for e in engines if e.startswith("llamacpp"))
    return slots[0] if slots else None


class _Row:
    """Attribute access to one record (pandas rows type as unions mypy cannot narrow)."""

    def __init__(self, record: dict[Any, Any]) -> None:
        self.__dict__.update({str(k): v for k, v in record.items()})

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def _a100_reasons() -> dict[str, float]:
    """Ceilings of the published setup (A100 40GB, Llama-3.1-8B): vLLM bf16, Ollama Q4_K_M."""
    hw, m = HARDWARE["a100-40gb"], MODELS["llama-3.1-8b"]
    return {
        "vllm_1": decode_ceiling_tok_s(hw, m, "bf16", 1),
        "vllm_32": decode_ceiling_tok_s(hw, m, "bf16", 32),
        "ollama_1": decode_ceiling_tok_s(hw, m, "q4_k_m", 1),
        "ollama_4": decode_ceiling_tok_s(hw, m, "q4_k_m", 4),
    }


def shape_verdicts(res: Results, level_set: str = "chat", claims: pd.DataFrame | None = None) -> list[Shape]:
    """The seed's shapes against the study's, each with a verdict and its roofline reason.

    Rules: a growth shape reproduces when published and measured growth fall in the same
    `growth_class`; vLLM's lead reproduces when the measured ratio is at least half the
    published one; the tail-TTFT shape when the Ollama-like engine's p99 is the worse one in both.
    """
    pub = published_shapes(claims)
    ms = measured_shapes(res, level_set)
    if ms.empty or "vllm" not in set(ms["engine"]):
        return []
    ref = ollama_like(list(ms["engine"]))
    if ref is None:
        return []
    by_engine: dict[str, Any] = {str(r["engine"]): _Row(r) for r in ms.to_dict("records")}
    v, o = by_engine["vllm"], by_engine[ref]
    a = _a100_reasons()
    hi = int(v.users_high)
    out: list[Shape] = []

    gain_v = pub.get("vllm_tps_32", math.nan) / pub.get("vllm_tps_1", math.nan)
    out.append(
        Shape(
            "vLLM throughput gain, 1 -> 25-32 users",
            f"x{fmt(gain_v)} (510 -> 1,450 tok/s): {growth_class(gain_v)}",
            f"x{fmt(v.tps_gain)} ({fmt(v.tps_low)} -> {fmt(v.tps_high)} tok/s at {hi}): {growth_class(v.tps_gain)}",
            "reproduced" if growth_class(gain_v) == growth_class(v.tps_gain) else "not reproduced",
            f"one decode step reads the weights once for the whole batch, so the A100 ceiling grows from "
            f"{fmt(a['vllm_1'])} tok/s at 1 user to {fmt(a['vllm_32'])} at 32 (x{fmt(a['vllm_32'] / a['vllm_1'])}); "
            f"the published 1-user figure is x{fmt(pub.get('vllm_tps_1', math.nan) / a['vllm_1'])} its ceiling, "
            "which shrinks the published gain",
        )
    )
    gain_o = pub.get("ollama_tps_32", math.nan) / pub.get("ollama_tps_1", math.nan)
    out.append(
        Shape(
            f"Ollama throughput gain, 1 -> 25-32 users ({ref} here)",
            f"x{fmt(gain_o)} (420 -> 320 tok/s): {growth_class(gain_o)}",
            f"x{fmt(o.tps_gain)} ({fmt(o.tps_low)} -> {fmt(o.tps_high)} tok/s): {growth_class(o.tps_gain)}",
            "reproduced" if growth_class(gain_o) == growth_class(o.tps_gain) else "not reproduced",
            f"with 4 slots a step decodes up to 4 sequences for one read of the weights, so the ceiling can "
            f"only rise with load (A100, Q4_K_M: {fmt(a['ollama_1'])} -> {fmt(a['ollama_4'])} tok/s); a fall needs "
            "overheads the roofline does not model, and the published 1-user figure already exceeds its ceiling",
        )
    )
    # TTFT at 25-32 users on 4 slots: users beyond the slots wait for whole requests to finish
    per_slot = a["ollama_4"] / 4
    ahead = 32 / 4 - 1
    max_tokens = pub.get("ollama_ttft_32", math.nan) * per_slot / ahead
    for engine, row, key in (("vLLM", v, "vllm"), (f"Ollama ({ref} here)", o, "ollama")):
        growth = pub.get(f"{key}_ttft_32", math.nan) / pub.get(f"{key}_ttft_1", math.nan)
        reason = (
            "continuous batching admits a new request at the next step, so TTFT grows only with the batch's step time"
            if key == "vllm"
            else f"32 users on 4 slots leave {ahead:.0f} requests ahead in each slot's queue; at the A100 Q4_K_M "
            f"ceiling of {fmt(per_slot)} tok/s per slot, a published TTFT of "
            f"{fmt(pub.get('ollama_ttft_32', math.nan) * 1e3)} ms leaves at most {fmt(max_tokens)} output tokens "
            "per request, so the published figure implies very short answers or more slots than Ollama's default"
        )
        out.append(
            Shape(
                f"{engine} TTFT growth, 1 -> 25-32 users (p50 measured)",
                f"x{fmt(growth)}: {growth_class(growth)}",
                f"x{fmt(row.ttft_growth)} ({fmt(row.ttft_p50_low_s)} -> {fmt(row.ttft_p50_high_s)} s): "
                f"{growth_class(row.ttft_growth)}",
                "reproduced" if growth_class(growth) == growth_class(row.ttft_growth) else "not reproduced",
                reason,
            )
        )
    ratio_pub = pub.get("vllm_tps_32", math.nan) / pub.get("ollama_tps_32", math.nan)
    ratio = v.tps_high / o.tps_high
    out.append(
        Shape(
            "vLLM / Ollama throughput at 25-32 users",
            f"x{fmt(ratio_pub)}",
            f"x{fmt(ratio)} at {hi} users",
            "reproduced" if ratio >= 0.5 * ratio_pub else ("direction only" if ratio > 1 else "not reproduced"),
            f"the ratio of ceilings on the A100 is x{fmt(a['vllm_32'] / a['ollama_4'])} (bf16 batch 32 vs "
            "Q4_K_M batch 4): Ollama's smaller weights narrow it, its 4 slots widen it",
        )
    )
    p99_pub = pub.get("ollama_ttft_p99_peak", math.nan) / pub.get("vllm_ttft_p99_peak", math.nan)
    p99 = o.ttft_p99_high_s / v.ttft_p99_high_s
    out.append(
        Shape(
            "TTFT p99 at the highest level, Ollama / vLLM",
            f"x{fmt(p99_pub)} (Red Hat, peak load)",
            f"x{fmt(p99)} ({fmt(o.ttft_p99_high_s)} vs {fmt(v.ttft_p99_high_s)} s at {hi} users)",
            "reproduced" if (p99 > 1) == (p99_pub > 1) else "not reproduced",
            "the tail is queueing: static slots hold waiting users until a whole request ends",
        )
    )
    return out


def local_hardware_of(res: Results) -> Hardware | None:
    """The probed hardware stored in the study manifest (None for studies run before probes)."""
    probe: dict[str, Any] | None = res.manifest.get("hardware_probe")
    return Hardware.model_validate(probe) if probe else None


def efficiency(res: Results, level_set: str = "chat") -> pd.DataFrame:
    """Measured output tok/s / roofline decode ceiling, per engine and level.

    Ceiling: the study's probed bandwidth and compute (manifest), the engine's weights precision
    and the level's batch (users, capped by slots) at the level's mean context. Empty without a probe.
    """
    hw = local_hardware_of(res)
    lv = ok_levels(pool_repeats(res.levels, res.requests), level_set)  # medians over repeats
    if hw is None or lv.empty:
        return pd.DataFrame()
    req = ok_requests(res.requests)
    ctx = req.groupby("level_key").apply(lambda r: (r["prompt_tokens"] + r["output_tokens"] / 2).mean())
    # the engines as the study specified them, judged on the CPU the study ran on
    specs = res.engine_specs
    cpu_flags = res.manifest.get("cpu", {}).get("flags", [])
    rows = []
    for r in map(_Row, lv.to_dict("records")):
        shapes = res.manifest["models"][r.engine]
        size = ModelSize(
            name=r.engine, **{k: shapes[k] for k in ("n_params", "n_layers", "n_kv_heads", "head_dim", "hidden_size")}
        )
        es = specs[r.engine]
        # what the engine reported serving at; studies stored before it did: the spec on the stored CPU
        stored = getattr(r, "cfg_precision", None)
        precision = stored if isinstance(stored, str) else es.precision(cpu_flags=cpu_flags)
        batch = int(min(r.concurrency, es.batch_capacity()))
        ceiling = decode_ceiling_tok_s(
            hw, size, precision, batch=batch, context_tokens=float(ctx.get(r.level_key, 0.0))
        )
        rows.append(
            {
                "engine": r.engine,
                "concurrency": r.concurrency,
                "precision": precision,
                "batch": batch,
                "output_tok_s": r.output_tok_s,
                "ceiling_tok_s": ceiling,
                "efficiency": r.output_tok_s / ceiling,
            }
        )
    return pd.DataFrame(rows)


def normalised_points(res: Results, level_set: str = "chat", claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Published throughput claims (`claims`, default claims.csv) and measured levels as a fraction
    of their own roofline ceiling (`source`: 'published' or 'measured'); the one axis CPU and GPU
    results share."""
    audit = audit_claims(load_claims() if claims is None else claims)
    pub = audit[(audit["metric"] == "output_tok_s_total") & (audit["concurrency"] != "unknown")]
    pub = pub[pub["ceiling_tok_s"].notna()]
    rows = [
        {
            "source": "published",
            "label": f"{r.engine} ({r.source_id}, {r.hardware})",
            "engine": r.engine,
            "concurrency": int(r.concurrency),
            "fraction_of_ceiling": r.value / r.ceiling_tok_s,
        }
        for r in map(_Row, pub.to_dict("records"))
    ]
    eff = efficiency(res, level_set)
    rows += [
        {
            "source": "measured",
            "label": f"{r.engine} (this study)",
            "engine": r.engine,
            "concurrency": int(r.concurrency),
            "fraction_of_ceiling": r.efficiency,
        }
        for r in map(_Row, eff.to_dict("records"))
    ]
    return pd.DataFrame(rows, columns=["source", "label", "engine", "concurrency", "fraction_of_ceiling"])

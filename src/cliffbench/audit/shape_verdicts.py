"""Shape verdicts: do the shapes the seed argues from reproduce in a study's measured curves?

Absolute numbers cannot transfer from an A100 serving an 8B model to this CPU serving 135M, but
shapes can: how much throughput and TTFT grow from 1 user to the seed's high load, vLLM's lead and
the tail TTFT. Each shape is measured per engine with the statistic the source gives (a p99 against
a p99, a peak against a peak), set beside the published one (data/published/claims.csv, through
`cliffbench.audit.seed`: a source that measured on the stated A100 where the seed relabelled
another's numbers) and judged by direction and rough magnitude, a result more extreme in the
claimed direction counting as reproduced; the roofline
(`cliffbench.audit.roofline`) supplies the reason. `efficiency` puts measured throughput against the
local roofline, so CPU and GPU numbers share one axis (fraction of the physical ceiling).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cliffbench.audit.claims import audit_claims, load_claims
from cliffbench.audit.roofline import ModelSize, decode_roofs
from cliffbench.audit.seed import (
    OLLAMA_SLOTS,
    SEED_HIGH_USERS,
    SEED_SOURCE_ID,
    SEED_TAIL_CLAIMS,
    Published,
    claim,
    comparable_pair,
    seed_pair,
    seed_users,
    stated_ceiling,
    trace_text,
)
from cliffbench.audit.shape_rules import GROWTH_CLASSES, class_verdict, growth_class, pooled_p99, ratio_verdict
from cliffbench.bench.metrics.level import min_n_for_ci
from cliffbench.bench.metrics.repeats import pool_repeats
from cliffbench.bench.probes import LocalHardware, compute_roof
from cliffbench.bench.store.levels import Results, ok_levels, ok_requests
from cliffbench.config import fmt_number as fmt
from cliffbench.engines.specs import EngineSpec

__all__ = [
    "GROWTH_CLASSES",
    "SEED_HIGH_USERS",
    "Shape",
    "class_verdict",
    "efficiency",
    "growth_class",
    "local_hardware_of",
    "measured_shapes",
    "normalised_points",
    "ollama_like",
    "published_shapes",
    "ratio_verdict",
    "shape_verdicts",
]


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
        if r["source_id"] == SEED_SOURCE_ID and r["concurrency"] != "unknown":
            kind = "tps" if r["metric"] == "output_tok_s_total" else "ttft"
            out[f"{engine}_{kind}_{r['concurrency']}"] = float(r["value"]) * scale
        elif r["metric"] == "ttft_s_p99" and r["concurrency"] == "unknown":
            out[f"{engine}_ttft_p99_peak"] = float(r["value"]) * scale
    return out


def _high_users(lv: pd.DataFrame) -> int:
    """The highest level in the seed's 25-32 users every engine completed (else the highest common level)."""
    per = lv.groupby("engine")["concurrency"].apply(set)
    common = set.intersection(*per) if len(per) else set()
    inside = [u for u in common if SEED_HIGH_USERS[0] <= u <= SEED_HIGH_USERS[1]]
    return int(max(inside or common or {lv["concurrency"].max()}))


def measured_shapes(res: Results, level_set: str = "chat") -> pd.DataFrame:
    """Per engine: throughput and TTFT at the lowest and the high level, their growth, and the
    level of peak throughput (`users_peak`, `tps_peak`)."""
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
        peak = int(pd.to_numeric(g["output_tok_s"]).idxmax())  # type: ignore[call-overload]
        rows.append(
            {
                "engine": engine,
                "users_low": low,
                "users_high": high,
                "users_peak": peak,
                "tps_low": g.at[low, "output_tok_s"],
                "tps_high": g.at[high, "output_tok_s"],
                "tps_peak": g.at[peak, "output_tok_s"],
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


def ollama_like(engines: list[str], specs: Mapping[str, EngineSpec] | None = None) -> str | None:
    """The study's stand-in for Ollama, read from the engines' specs where given: an engine built
    from an Ollama preset, else llama.cpp with `OLLAMA_SLOTS` slots (Ollama's default of the seed's
    era, `cliffbench.audit.seed`), else one request at a time (that era's other automatic choice,
    the default since v0.10.0), else the first llama.cpp engine by name. Without specs the labels
    `llamacpp-slots-4` and `llamacpp-serial` stand for those."""
    if specs is not None:
        mine = sorted(e for e in engines if e in specs)
        preset = [e for e in mine if (specs[e].preset or "").startswith("ollama")]
        slots = [e for e in mine if specs[e].static_slots and specs[e].batch_capacity() == OLLAMA_SLOTS]
        serial = [e for e in mine if specs[e].static_slots and specs[e].batch_capacity() == 1]
        for hit in (preset, slots, serial):
            if hit:
                return hit[0]
    for pref in (f"llamacpp-slots-{OLLAMA_SLOTS}", "llamacpp-serial"):
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


def shape_verdicts(res: Results, level_set: str = "chat", claims: pd.DataFrame | None = None) -> list[Shape]:
    """The seed's shapes against the study's, each with a verdict and its roofline reason.

    Growth shapes compare `growth_class`es (`class_verdict`); vLLM's lead and the tail TTFT compare
    ratios (`ratio_verdict`) with the source `comparable_pair` picks, the same statistic measured
    here (a peak, or a p99 over every repeat's requests with its 95 % interval when n allows one).
    """
    c = load_claims() if claims is None else claims
    ms = measured_shapes(res, level_set)
    if ms.empty or "vllm" not in set(ms["engine"]):
        return []
    ref = ollama_like(list(ms["engine"]), res.engine_specs)
    if ref is None:
        return []
    by_engine: dict[str, _Row] = {str(r["engine"]): _Row(r) for r in ms.to_dict("records")}
    v, o = by_engine["vllm"], by_engine[ref]
    users, slots, hi = seed_users(c), OLLAMA_SLOTS, int(v.users_high)
    band = f"1 -> {SEED_HIGH_USERS[0]}-{SEED_HIGH_USERS[1]} users"
    tps = {k: [claim(c, k, "output_tok_s_total", u) for u in (1, users)] for k in ("vllm", "ollama")}
    prec = {k: next((p.served_precision() for p in x[::-1] if p), "bf16") for k, x in tps.items()}
    hw = tps["vllm"][1].hardware if tps["vllm"][1] else "unknown"
    a = {
        "vllm_1": stated_ceiling(c, prec["vllm"], 1),
        "vllm_hi": stated_ceiling(c, prec["vllm"], users),
        "ollama_1": stated_ceiling(c, prec["ollama"], 1),
        "ollama_slots": stated_ceiling(c, prec["ollama"], slots),
    }
    out: list[Shape] = []

    def si(p: Published | None) -> float:
        return p.si if p else math.nan

    for name, key, row in (("vLLM", "vllm", v), ("Ollama", "ollama", o)):
        one, many = tps[key]
        gain = si(many) / si(one)
        if key == "vllm":
            reason = (
                f"one decode step reads the weights once for the whole batch, so the {hw} ceiling grows from "
                f"{fmt(a['vllm_1'])} tok/s at 1 user to {fmt(a['vllm_hi'])} at {users} "
                f"(x{fmt(a['vllm_hi'] / a['vllm_1'])}); the published 1-user figure is "
                f"x{fmt(si(one) / a['vllm_1'])} its ceiling, which shrinks the published gain"
            )
        else:
            reason = (
                f"with {slots} slots a step decodes up to {slots} sequences for one read of the weights, so the "
                f"ceiling can only rise with load ({hw}, {prec['ollama']}: {fmt(a['ollama_1'])} -> "
                f"{fmt(a['ollama_slots'])} tok/s); a fall needs overheads the roofline does not model, and the "
                f"published 1-user figure is x{fmt(si(one) / a['ollama_1'])} its ceiling"
            )
        out.append(
            Shape(
                f"{name} throughput gain, {band}" + (f" ({ref} here)" if key == "ollama" else ""),
                f"x{fmt(gain)} ({fmt(si(one))} -> {fmt(si(many))} tok/s{trace_text(c, many)}): {growth_class(gain)}",
                f"x{fmt(row.tps_gain)} ({fmt(row.tps_low)} -> {fmt(row.tps_high)} tok/s at {row.users_low} and {hi} "
                f"users): "
                f"{growth_class(row.tps_gain)}",
                class_verdict(gain, row.tps_gain),
                reason,
            )
        )
    # TTFT at the high load on the default slots: users beyond the slots wait for whole requests to end
    per_slot, ahead = a["ollama_slots"] / slots, users / slots - 1
    for name, key, row in (("vLLM", "vllm", v), (f"Ollama ({ref} here)", "ollama", o)):
        one, many = claim(c, key, "ttft_s", 1), claim(c, key, "ttft_s", users)
        tail = many is not None and many.claim_id in SEED_TAIL_CLAIMS
        high = pooled_p99(res, str(row.engine), level_set, hi) if tail else None
        growth, measured = si(many) / si(one), (high.point if high else row.ttft_p50_high_s) / row.ttft_p50_low_s
        reason = (
            "continuous batching admits a new request at the next step, so TTFT grows only with the batch's step time"
            if key == "vllm"
            else f"{users} users on {slots} slots leave {fmt(round(ahead))} requests ahead in each slot's queue; at "
            f"the {hw} {prec['ollama']} ceiling of {fmt(per_slot)} tok/s per slot, a published TTFT of "
            f"{fmt(si(many) * 1e3)} ms leaves at most {fmt(si(many) * per_slot / ahead)} output tokens per request, "
            "so the published figure implies very short answers or more slots than Ollama's default"
        )
        stat = "p50 -> p99, as the seed's typical value -> spikes" if tail else "p50, as the seed's typical values"
        out.append(
            Shape(
                f"{name} TTFT growth, {band} ({stat})",
                f"x{fmt(growth)} ({fmt(si(one))} -> {'past ' if tail else ''}{fmt(si(many))} s): "
                f"{growth_class(growth)}",
                f"x{fmt(measured)} ({fmt(row.ttft_p50_low_s)} -> "
                f"{high.text() if high else fmt(row.ttft_p50_high_s) + ' s'}): {growth_class(measured)}",
                class_verdict(growth, measured),
                reason,
            )
        )
    lead = comparable_pair(c, "output_tok_s_total")
    if lead is not None:
        at_peak = lead.users is None  # a peak over the source's sweep (claims.csv notes): our peak level
        ratio = v.tps_peak / o.tps_peak if at_peak else v.tps_high / o.tps_high
        where = f"{hi} users"
        if at_peak:
            where = f"each engine's peak: {fmt(v.tps_peak)} tok/s at {v.users_peak} users vs {fmt(o.tps_peak)} at "
            where += f"{o.users_peak}"
        pv, po = lead.vllm.served_precision(), lead.ollama.served_precision()
        roof = stated_ceiling(c, pv, users) / stated_ceiling(c, po, slots)
        seed, left_out = seed_pair(c), ""
        if seed is not None and seed != lead:
            left_out = f"; the seed's x{fmt(seed.ratio)} at {seed.users} users is left out: {seed.relabel_note(False)}"
        out.append(
            Shape(
                "vLLM / Ollama throughput " + ("at peak" if at_peak else f"at {SEED_HIGH_USERS[0]}-{users} users"),
                f"x{fmt(lead.ratio)} ({lead.cite()}){left_out}",
                f"x{fmt(ratio)} at {where}",
                ratio_verdict(lead.ratio, ratio, ratio),
                f"the ratio of decode ceilings on the {hw} is x{fmt(roof)}: {pv} weights at batch {users} against "
                f"{po} at batch {slots}, Ollama's default slots of the seed's era",
            )
        )
    p99 = comparable_pair(c, "ttft_s_p99")
    if p99 is not None:
        # the source's "at peak throughput" (claims.csv notes): each engine's level of peak throughput
        ot = pooled_p99(res, ref, level_set, int(o.users_peak))
        vt = pooled_p99(res, "vllm", level_set, int(v.users_peak))
        pub, point = 1 / p99.ratio, ot.point / vt.point
        lo, up = ot.lo / vt.hi, ot.hi / vt.lo
        measured = f"x{fmt(point)} ({ot.text()} at {o.users_peak} users vs {vt.text()} at {v.users_peak})"
        if all(math.isfinite(x) for x in (lo, up)):
            verdict = ratio_verdict(pub, lo, up)
            measured += f"; from the intervals x{fmt(lo)}-x{fmt(up)}"
        else:
            verdict = f"n too small ({ratio_verdict(pub, point, point)} on the point estimates)"
            measured += f"; no 95 % interval of a p99 below {fmt(min_n_for_ci(99))} requests"
        out.append(
            Shape(
                "TTFT p99 at peak throughput, Ollama / vLLM",
                f"x{fmt(pub)} ({p99.cite()})",
                measured,
                verdict,
                "the tail is queueing: static slots hold waiting users until a whole request ends",
            )
        )
    return out


def local_hardware_of(res: Results) -> LocalHardware | None:
    """The probed hardware stored in the study manifest (None for studies run before probes; probes
    stored before the per-dtype matmul rates load with none)."""
    return res.manifest.hardware_probe


def efficiency(res: Results, level_set: str = "chat") -> pd.DataFrame:
    """Measured output tok/s / roofline decode ceiling, per engine and level.

    Ceiling: the lower of the memory roof (the study's probed bandwidth) and the compute roof (the
    probed matmul rate of the engine's precision, `compute_roof`: `compute_source` names it, and
    what stands in for a quantised path) for the engine's weights precision and the level's batch
    (users, capped by slots) at the level's mean context; `binding` says which roof is lower.
    Empty without a probe.
    """
    hw = local_hardware_of(res)
    lv = ok_levels(pool_repeats(res.levels, res.requests), level_set)  # medians over repeats
    if hw is None or lv.empty:
        return pd.DataFrame()
    req = ok_requests(res.requests)
    ctx = req.groupby("level_key").apply(lambda r: (r["prompt_tokens"] + r["output_tokens"] / 2).mean())
    # the engines as the study specified them, judged on the CPU the study ran on
    specs = res.engine_specs
    cpu_flags = res.manifest.cpu.flags
    rows = []
    for r in map(_Row, lv.to_dict("records")):
        shapes = res.manifest.models.get(r.engine)
        if shapes is None:  # no model shapes stored (a fake tokenizer's study): no roofline to judge by
            continue
        size = ModelSize(
            name=r.engine,
            **{k: getattr(shapes, k) for k in ("n_params", "n_layers", "n_kv_heads", "head_dim", "hidden_size")},
        )
        es = specs[r.engine]
        # what the engine reported serving at; studies stored before it did: the spec on the stored CPU
        stored = getattr(r, "cfg_precision", None)
        precision = stored if isinstance(stored, str) else es.precision(cpu_flags=cpu_flags)
        batch = int(min(r.concurrency, es.batch_capacity()))
        tflops, source = compute_roof(hw, precision)
        roofs = decode_roofs(hw, size, precision, batch, float(ctx.get(r.level_key, 0.0)), tflops=tflops)
        rows.append(
            {
                "engine": r.engine,
                "concurrency": r.concurrency,
                "precision": precision,
                "batch": batch,
                "output_tok_s": r.output_tok_s,
                "ceiling_tok_s": roofs.ceiling_tok_s,
                "memory_ceiling_tok_s": roofs.memory_tok_s,
                "compute_ceiling_tok_s": roofs.compute_tok_s,
                "binding": roofs.binding,
                "compute_tflops": tflops,
                "compute_source": source,
                "efficiency": r.output_tok_s / roofs.ceiling_tok_s,
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

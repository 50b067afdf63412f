"""What a study will cost before it runs: memory per engine and a duration from the roofline.

`cliffbench run --dry-run` prints this table, and the same arithmetic refuses a study whose KV
cache cannot fit the target hardware (`hardware:` in the study) before any engine starts. The
duration is a lower bound: every decode step is assumed to run at the memory-bandwidth ceiling
(`cliffbench.audit.roofline`), and engine start-up is left out, so real runs take longer (on this CPU
the measured efficiency is in the whitepaper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cliffbench.audit.roofline import ModelSize, decode_ceiling_tok_s, prefill_ceiling_tok_s, weight_bytes
from cliffbench.bench.probes import local_hardware
from cliffbench.bench.spec.load import LoadSpec
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.spec.workload import LengthDist, WorkloadSpec
from cliffbench.config import InputError
from cliffbench.engines.placement import check_gpu_loads, gpu_loads
from cliffbench.hardware import HARDWARE, Hardware
from cliffbench.models import load_manifest, resolve_model
from cliffbench.models.manifest import ModelShapes
from cliffbench.models.spec import ModelSpec
from cliffbench.models.synthetic import PRESETS, preset_shapes

__all__ = ["EngineEstimate", "estimate_study", "model_shapes", "target_hardware"]

_GIB = 2**30


@dataclass(frozen=True)
class EngineEstimate:
    """One engine of a study on the target hardware."""

    engine: str
    precision: str
    weights_gib: float
    kv_gib: float  # what the engine reserves (vLLM: its budget; llama.cpp: slots x context)
    kv_need_gib: float  # what the largest level's sequences occupy at their longest
    memory_gib: float  # the hardware's
    duration_s: float  # roofline lower bound for every level of the study
    batch_cap: int
    gpus: int = 1  # GPUs one instance spans (0: a CPU target)
    gpu_gib: tuple[float, ...] = ()  # weights + KV on each of them (cliffbench.engines.placement)

    @property
    def fits(self) -> bool:
        if self.gpu_gib:
            return max(self.gpu_gib) <= self.memory_gib
        return self.weights_gib + self.kv_gib <= self.memory_gib


def model_shapes(spec: ModelSpec) -> ModelShapes:
    """Shapes of an engine's model without loading it: a prepared model's manifest, a preset's
    published config when it is not prepared yet, or the user's files."""
    if spec.hf_path is None and spec.gguf_path is None:
        try:
            return load_manifest(spec.name).shapes
        except InputError:
            if spec.name in PRESETS:
                return preset_shapes(spec.name)
            raise
    return resolve_model(spec)[2]


def target_hardware(spec: StudySpec, local: Hardware | None = None) -> Hardware:
    """The study's `hardware` from the roofline table, or this machine (probed unless given)."""
    if spec.hardware is not None and spec.hardware != "local":
        return HARDWARE[spec.hardware]
    if local is not None:
        return local
    return local_hardware(size_mb=64, n=1024, runs=3)


def _mean(d: LengthDist) -> float:
    if d.dist == "uniform":
        return (d.low + (d.high or d.mean)) / 2
    if d.dist == "lognormal":
        return min(d.mean * math.exp(d.sigma**2 / 2), d.high or math.inf)
    return float(d.mean)


def _mean_lengths(wl: WorkloadSpec, max_context: int) -> tuple[float, float]:
    prompt, output = _mean(wl.prompt), _mean(wl.output)
    if wl.kind == "mixed" and wl.long_fraction > 0:
        long = wl.long_prompt_tokens or max_context - output
        prompt = (1 - wl.long_fraction) * prompt + wl.long_fraction * long
    return prompt, output


def _n_requests(load: LoadSpec, users: int) -> int:
    return (load.requests_at(users) or 0) + load.warmup_requests


def estimate_study(spec: StudySpec, hw: Hardware, max_context: int | None = None) -> list[EngineEstimate]:
    """Memory and roofline duration of every engine of `spec` on `hw`. `max_context` (the
    smallest per-request context of the study's engines unless given) sizes mixed long prompts.

    Raises InputError naming the engine's field when the weights plus the KV cache the engine
    reserves (llama.cpp) or the largest level needs (vLLM) exceed the hardware's memory.
    """
    if max_context is None:
        max_context = min(e.context_limit() for e in spec.engines)
    out = []
    for es in (e for e in spec.engines if e.serves_model):  # a `fake` engine has no model to size
        shapes = model_shapes(es.model)
        size = ModelSize.from_shapes(shapes, name=es.model.name)
        gpu = hw.name != "local"  # every GPU of the table has bf16 tensor cores; "local": its CPU flags decide
        precision = es.precision(gpu=gpu)
        weights = weight_bytes(size, precision)
        kv_token = shapes.kv_bytes_per_token(es.kv_dtype_bytes(gpu=gpu))
        reserved = es.kv_reserved_bytes(kv_token, hw.memory_gib * _GIB if gpu else None, weights)
        cap = es.batch_capacity()
        duration, need = 0.0, 0.0
        for ls in spec.level_sets:
            prompt, output = _mean_lengths(ls.workload, max_context)
            users = ls.load.concurrency if ls.load.arrival == "closed" else [cap]
            for c in users:
                batch = min(c, cap)
                need = max(need, batch * (prompt + output) * kv_token)
                if ls.load.duration_s is not None:
                    duration += ls.load.duration_s
                    continue
                n = _n_requests(ls.load, c)
                decode = decode_ceiling_tok_s(hw, size, precision, batch=batch, context_tokens=prompt + output / 2)
                duration += n * output / decode + n * prompt / prefill_ceiling_tok_s(hw, size, precision)
        loads = gpu_loads(es, shapes, weights, reserved, need, hw.memory_gib * _GIB) if gpu else []
        if len(loads) > 1:  # reserved per GPU: vLLM's budget is each GPU's memory less its weights
            reserved = sum(g.kv_reserved_bytes for g in loads)
        est = EngineEstimate(
            engine=es.name,
            precision=precision,
            weights_gib=weights / _GIB,
            kv_gib=reserved / _GIB,
            kv_need_gib=need / _GIB,
            memory_gib=hw.memory_gib,
            duration_s=duration,
            batch_cap=cap,
            gpus=len(loads),
            gpu_gib=tuple(g.total_bytes / _GIB for g in loads),
        )
        # spread over GPUs, each GPU is checked; on one, weights beyond it name the split to change
        if len(loads) > 1 or (loads and es.gpus() and est.weights_gib > hw.memory_gib):
            check_gpu_loads(es, loads, hw)
            out.append(est)
            continue
        total = est.weights_gib + max(est.kv_gib, est.kv_need_gib)
        if total > hw.memory_gib:
            field = es.memory_field
            if es.reserve_field and est.kv_gib > est.kv_need_gib:
                field = es.reserve_field
            raise InputError(
                f"engines.{es.name}.{field}: weights {est.weights_gib:.1f} GiB + KV cache "
                f"{max(est.kv_gib, est.kv_need_gib):.1f} GiB exceed the {hw.memory_gib:g} GiB of {hw.name}"
            )
        out.append(est)
    return out

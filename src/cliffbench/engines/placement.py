"""Where an engine that spans several GPUs puts its weights and KV cache, GPU by GPU: the dry run's
per-GPU estimate, and the check that refuses a spec one of whose GPUs would overflow.

vLLM (`tensor_parallel_size` x `pipeline_parallel_size` GPUs): the weights split evenly over the
GPUs (tensor parallelism shards every layer, the embedding and the output layer; pipeline stages
take whole layers, the first also the embedding and the last the output layer: even to within the
embedding's size). Each GPU holds `max(1, n_kv_heads // tp)` KV heads of its stage's layers (heads
are replicated when tp exceeds them) and reserves `gpu_memory_utilization` of its memory less its
weights for the KV cache.

llama.cpp (`tensor_split` shares, `split_mode`): the last `n_gpu_layers` layers are offloaded; the
token embedding stays on the CPU. `layer`: offloaded layer j goes to the first GPU whose cumulative
share exceeds `j / (offloaded + output)` (llama.cpp's `upper_bound` over the normalized split
points), its KV with it, and the output layer too when every layer is offloaded. `row`: each
offloaded matrix's rows split by the shares, the KV cache and the output layer on `main_gpu`.
`none`: everything offloaded on `main_gpu`. An untied output layer is assumed (the larger case).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from cliffbench.config import InputError
from cliffbench.engines.specs import EngineSpec, LlamaCppSpec, VllmSpec
from cliffbench.hardware import Hardware
from cliffbench.models.manifest import ModelShapes

__all__ = ["GpuLoad", "check_gpu_loads", "gpu_loads", "llamacpp_layer_gpus"]

_GIB = 2**30


@dataclass(frozen=True)
class GpuLoad:
    """What one GPU of an engine holds, in bytes."""

    weights_bytes: float
    kv_reserved_bytes: float  # reserved at start
    kv_need_bytes: float  # what the study's largest level occupies on this GPU at its longest

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + max(self.kv_reserved_bytes, self.kv_need_bytes)


def llamacpp_layer_gpus(n_layers: int, n_gpu_layers: int, shares: list[float]) -> list[int]:
    """The GPU of each offloaded layer (the output layer last, when every layer is offloaded), as
    llama.cpp's `load_tensors` assigns them; -1 marks a layer left on the CPU."""
    ngl = n_layers + 1 if n_gpu_layers < 0 else n_gpu_layers
    first = max(n_layers - ngl, 0)
    act = min(ngl, n_layers + 1)
    total = sum(shares)
    cum, points = 0.0, []
    for x in shares:
        cum += x
        points.append(cum / total)
    out = []
    for il in range(n_layers + 1):  # il == n_layers: the output layer
        j = il - first
        if il < first or j >= act:
            out.append(-1)
        else:
            out.append(min(bisect.bisect_right(points, j / act), len(shares) - 1))
    return out


def _vllm(es: VllmSpec, shapes: ModelShapes, weights: float, kv_need: float, gpu_bytes: float) -> list[GpuLoad]:
    tp, pp = es.tensor_parallel_size, es.pipeline_parallel_size
    n = tp * pp
    w = weights / n
    heads = max(1, shapes.n_kv_heads // tp)
    kv_share = heads / shapes.n_kv_heads / pp
    reserve = max(0.0, gpu_bytes * es.gpu_memory_utilization - w)
    return [GpuLoad(w, reserve, kv_need * kv_share) for _ in range(n)]


def _llamacpp(
    es: LlamaCppSpec, shapes: ModelShapes, weights: float, kv_reserved: float, kv_need: float
) -> list[GpuLoad]:
    per_param = weights / shapes.n_params
    edge = shapes.vocab_size * shapes.hidden_size * per_param  # the embedding, and the output layer
    layer = max(0.0, weights - 2 * edge) / shapes.n_layers
    kv_layer, need_layer = kv_reserved / shapes.n_layers, kv_need / shapes.n_layers
    shares = es.tensor_split or [1.0]
    n = len(shares)
    w, kv, need = [0.0] * n, [0.0] * n, [0.0] * n
    gpus = llamacpp_layer_gpus(shapes.n_layers, es.n_gpu_layers, shares)
    main = es.main_gpu
    for il, g in enumerate(gpus):
        if g < 0:
            continue
        output = il == shapes.n_layers
        if es.split_mode == "layer":
            w[g] += edge if output else layer
            if not output:
                kv[g] += kv_layer
                need[g] += need_layer
            continue
        if es.split_mode == "none" or output:  # row mode keeps the output layer on main_gpu
            w[main] += edge if output else layer
        else:
            for i, x in enumerate(shares):
                w[i] += layer * x / sum(shares)
        if not output:
            kv[main] += kv_layer
            need[main] += need_layer
    return [GpuLoad(w[i], kv[i], need[i]) for i in range(n)]


def gpu_loads(
    es: EngineSpec, shapes: ModelShapes, weights: float, kv_reserved: float, kv_need: float, gpu_bytes: float
) -> list[GpuLoad]:
    """Bytes on each GPU of `es` on GPUs of `gpu_bytes` each; one GPU holding everything for an
    engine that spans one."""
    if isinstance(es, VllmSpec) and es.gpus() > 1:
        return _vllm(es, shapes, weights, kv_need, gpu_bytes)
    if isinstance(es, LlamaCppSpec) and es.gpus() > 1:
        return _llamacpp(es, shapes, weights, kv_reserved, kv_need)
    return [GpuLoad(weights, kv_reserved, kv_need)]


def check_gpu_loads(es: EngineSpec, loads: list[GpuLoad], hw: Hardware) -> None:
    """InputError naming the field to change when a GPU of the engine overflows: the split when
    the weights alone do not fit, else the field that sets the KV cache."""
    mem = hw.memory_gib * _GIB
    cap = mem * es.gpu_memory_utilization if isinstance(es, VllmSpec) else mem
    where = f"GPU {{i}} of {len(loads)} ({hw.name}, {hw.memory_gib:g} GiB)"
    for i, g in enumerate(loads):
        at = where.format(i=i)
        if g.weights_bytes > cap:
            field = es.memory_field
            if isinstance(es, VllmSpec):
                field = "tensor_parallel_size"
            elif isinstance(es, LlamaCppSpec):
                field = "tensor_split" if es.tensor_split and es.split_mode != "none" else "n_gpu_layers"
            raise InputError(
                f"engines.{es.name}.{field}: weights {g.weights_bytes / _GIB:.1f} GiB on {at} exceed the "
                f"{cap / _GIB:.1f} GiB the engine may use there"
            )
        if isinstance(es, VllmSpec) and g.kv_need_bytes > g.kv_reserved_bytes:
            raise InputError(
                f"engines.{es.name}.{es.memory_field}: the largest level needs {g.kv_need_bytes / _GIB:.1f} GiB "
                f"of KV cache on {at}, {g.kv_reserved_bytes / _GIB:.1f} GiB are left after the weights"
            )
        if g.total_bytes > mem:
            raise InputError(
                f"engines.{es.name}.{es.memory_field}: weights {g.weights_bytes / _GIB:.1f} GiB + KV cache "
                f"{max(g.kv_reserved_bytes, g.kv_need_bytes) / _GIB:.1f} GiB on {at} exceed its memory"
            )

"""How an engine spans GPUs: vLLM's tensor and pipeline parallelism (and the executor that runs its
workers, Ray for engines across nodes), llama.cpp's layer offload and split over GPUs. The spec
fields are mixins of `VllmSpec` and `LlamaCppSpec` (specs.py); `model_params` turns the llama.cpp
ones into llama.cpp's own model parameters. Memory per GPU: cliffbench.engines.placement."""

from __future__ import annotations

import ctypes
from typing import Any, Literal

from pydantic import Field, model_validator

from cliffbench.config import InputError, Spec

__all__ = ["SPLIT_MODE", "LlamaCppGpuSplit", "VllmParallel", "model_params", "tensor_split_array"]

# llama_model_params.split_mode (enum llama_split_mode) for each `split_mode` setting
SPLIT_MODE = {"none": 0, "layer": 1, "row": 2}


class VllmParallel(Spec):
    tensor_parallel_size: int = Field(1, gt=0)
    pipeline_parallel_size: int = Field(1, gt=0, description="pipeline stages: layers split over this many GPUs")
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        None,
        description="how vLLM runs its workers: 'mp' processes on this node, 'ray' a Ray cluster (engines "
        "spanning nodes; needs the `cluster` extra); None: vLLM's choice (mp on one node)",
    )

    def gpus(self) -> int:
        """GPUs the engine spans: every tensor-parallel rank of every pipeline stage."""
        return self.tensor_parallel_size * self.pipeline_parallel_size


class LlamaCppGpuSplit(Spec):
    n_gpu_layers: int = Field(0, ge=-1, description="-1 offloads every layer (GPU builds)")
    split_mode: Literal["none", "layer", "row"] = Field(
        "layer",
        description="llama.cpp's multi-GPU split: 'none' one GPU (main_gpu), 'layer' layers and their KV "
        "over the GPUs, 'row' each weight matrix's rows over the GPUs with the KV on main_gpu",
    )
    tensor_split: list[float] | None = Field(
        None, description="share of the offloaded model per GPU, e.g. [3, 1]; None: llama.cpp's default"
    )
    main_gpu: int = Field(0, ge=0, description="the GPU of split_mode 'none', and of the KV with 'row'")

    @model_validator(mode="after")
    def _gpu_split(self) -> LlamaCppGpuSplit:
        ts = self.tensor_split
        if ts is not None:
            if not ts or any(x < 0 for x in ts) or sum(ts) <= 0:
                raise ValueError(f"tensor_split: shares must be >= 0 with a positive sum, got {ts}")
            if self.split_mode == "none":
                raise ValueError("tensor_split: split_mode 'none' uses one GPU; set split_mode layer or row")
            if self.n_gpu_layers == 0:
                raise ValueError("tensor_split: n_gpu_layers is 0, nothing is offloaded to split")
            if self.main_gpu >= len(ts):
                raise ValueError(f"main_gpu: {self.main_gpu} is not one of the {len(ts)} GPUs of tensor_split")
        return self

    def gpus(self) -> int:
        """GPUs the engine spans: one per tensor_split share (one without it), none without offload."""
        if self.n_gpu_layers == 0:
            return 0
        if self.split_mode == "none" or self.tensor_split is None:
            return 1
        return len(self.tensor_split)


def tensor_split_array(shares: list[float], max_devices: int) -> ctypes.Array[ctypes.c_float]:
    """llama_model_params.tensor_split: a float per device, LLAMA_MAX_DEVICES long (llama.cpp
    reads that many), the unused ones 0. The caller keeps it alive while the model loads."""
    if len(shares) > max_devices:
        raise InputError(f"tensor_split: {len(shares)} shares, this llama.cpp build takes at most {max_devices}")
    return (ctypes.c_float * max_devices)(*shares)


def model_params(spec: LlamaCppGpuSplit) -> tuple[Any, ctypes.Array[ctypes.c_float] | None]:
    """llama_model_params of `spec` (GPU offload and split), and the tensor_split array they point
    into, to be kept alive while the model loads."""
    import llama_cpp as lc

    mparams = lc.llama_model_default_params()
    mparams.n_gpu_layers = spec.n_gpu_layers if spec.n_gpu_layers >= 0 else 999
    mparams.split_mode, mparams.main_gpu = SPLIT_MODE[spec.split_mode], spec.main_gpu
    split = None
    if spec.tensor_split is not None:
        split = tensor_split_array(spec.tensor_split, lc.LLAMA_MAX_DEVICES)
        mparams.tensor_split = split
    return mparams, split

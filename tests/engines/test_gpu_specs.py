"""Multi-GPU engine specs: validation, and that each option reaches the engine's own arguments
(vLLM's AsyncEngineArgs, llama.cpp's llama_model_params, the reference servers' command lines).
No GPU here: nothing is executed on one; the arguments are what is checked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from cliffbench.config import InputError, parse_spec
from cliffbench.engines import vllm as vllm_engine
from cliffbench.engines.parallel import model_params, tensor_split_array
from cliffbench.engines.servers import server_command
from cliffbench.engines.specs import LlamaCppSerialSpec, LlamaCppSlotsSpec, ServerSpec, VllmSpec
from cliffbench.models.spec import ModelSpec


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"tensor_split": [1, 1]}, "tensor_split: n_gpu_layers is 0"),
        ({"n_gpu_layers": -1, "tensor_split": [1, 1], "split_mode": "none"}, "tensor_split: split_mode 'none'"),
        ({"n_gpu_layers": -1, "tensor_split": [1, -1]}, "tensor_split: shares must be >= 0"),
        ({"n_gpu_layers": -1, "tensor_split": []}, "tensor_split: shares must be >= 0"),
        ({"n_gpu_layers": -1, "tensor_split": [1, 1], "main_gpu": 2}, "main_gpu: 2 is not one of the 2 GPUs"),
        ({"split_mode": "columns"}, "split_mode"),
    ],
)
def test_llamacpp_split_options_are_validated(fields: dict[str, object], needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_spec(LlamaCppSlotsSpec, fields)


def test_gpu_counts() -> None:
    assert VllmSpec(tensor_parallel_size=4, pipeline_parallel_size=2).gpus() == 8
    assert LlamaCppSlotsSpec().gpus() == 0  # nothing offloaded
    assert LlamaCppSlotsSpec(n_gpu_layers=-1).gpus() == 1
    assert LlamaCppSlotsSpec(n_gpu_layers=-1, tensor_split=[3, 1, 1]).gpus() == 3
    with pytest.raises(InputError, match="distributed_executor_backend"):
        parse_spec(VllmSpec, {"distributed_executor_backend": "slurm"})


def test_vllm_parallel_options_reach_the_engine_args() -> None:
    spec = VllmSpec(tensor_parallel_size=2, pipeline_parallel_size=3, distributed_executor_backend="mp")
    args = vllm_engine.engine_args(spec, "/m", "bfloat16", "cuda", "auto")
    assert args["tensor_parallel_size"] == 2 and args["pipeline_parallel_size"] == 3
    assert args["distributed_executor_backend"] == "mp" and args["kv_cache_memory_bytes"] is None
    assert vllm_engine.engine_args(VllmSpec(), "/m", "float32", "cpu", "auto")["distributed_executor_backend"] is None


def test_ray_executor_without_ray_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(InputError, match=r"^distributed_executor_backend: 'ray' needs the ray package"):
        vllm_engine.check_executor_backend(VllmSpec(distributed_executor_backend="ray"))
    vllm_engine.check_executor_backend(VllmSpec(distributed_executor_backend="mp"))  # no error


@pytest.mark.vllm
def test_vllm_accepts_the_parallel_args() -> None:
    """vLLM's own AsyncEngineArgs takes every argument the kit passes (constructed, not started)."""
    from vllm import AsyncEngineArgs

    spec = VllmSpec(tensor_parallel_size=2, pipeline_parallel_size=2, distributed_executor_backend="ray")
    args = AsyncEngineArgs(**vllm_engine.engine_args(spec, "/m", "bfloat16", "cuda", "auto"))
    assert args.pipeline_parallel_size == 2 and args.distributed_executor_backend == "ray"


def test_llamacpp_split_reaches_the_model_params() -> None:
    spec = LlamaCppSlotsSpec(n_gpu_layers=-1, split_mode="row", tensor_split=[3, 1], main_gpu=1)
    mparams, keep = model_params(spec)
    assert keep is not None
    assert (mparams.n_gpu_layers, mparams.split_mode, mparams.main_gpu) == (999, 2, 1)
    assert [mparams.tensor_split[i] for i in range(3)] == [3.0, 1.0, 0.0]
    plain, none = model_params(LlamaCppSlotsSpec())
    assert none is None and (plain.n_gpu_layers, plain.split_mode, plain.main_gpu) == (0, 1, 0)
    with pytest.raises(InputError, match=r"tensor_split: 17 shares, this llama\.cpp build takes at most 16"):
        tensor_split_array([1.0] * 17, 16)


@pytest.fixture
def model(tmp_path: Path) -> ModelSpec:
    """A model given by user paths (a config.json and a placeholder GGUF): server_command reads
    the shapes from the config and only checks that the GGUF exists."""
    config = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 256}))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    return ModelSpec(hf_path=tmp_path, gguf_path=tmp_path / "m.gguf")


def test_split_options_reach_the_reference_servers(model: ModelSpec, tmp_path: Path) -> None:
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    eng = LlamaCppSlotsSpec(model=model, n_gpu_layers=-1, split_mode="layer", tensor_split=[2, 1], main_gpu=0)
    argv, _, _ = server_command(ServerSpec(kind="llama-server", mirrors=eng, binary=binary), 8000)
    line = " ".join(argv)
    assert "-ngl -1" in line and "-sm layer -mg 0" in line and "-ts 2,1" in line
    serial = LlamaCppSerialSpec(model=model, n_gpu_layers=-1, split_mode="row", tensor_split=[1, 1], main_gpu=1)
    argv, _, _ = server_command(ServerSpec(kind="llama-cpp-python", mirrors=serial), 8000)
    line = " ".join(argv)
    assert "--split_mode 2 --main_gpu 1" in line and "--tensor_split 1 1" in line
    plain = LlamaCppSlotsSpec(model=model)
    cpu, _, _ = server_command(ServerSpec(kind="llama-server", mirrors=plain, binary=binary), 1)
    assert "-sm" not in cpu and "-ts" not in cpu  # no offload: the command line as before
    vllm = VllmSpec(model=model, pipeline_parallel_size=2, distributed_executor_backend="ray")
    argv, _, _ = server_command(ServerSpec(kind="vllm", mirrors=vllm), 8000)
    line = " ".join(argv)
    assert "--pipeline-parallel-size 2" in line and "--distributed-executor-backend ray" in line
    argv, _, _ = server_command(ServerSpec(kind="vllm", mirrors=VllmSpec(model=model)), 8000)
    assert "--pipeline-parallel-size" not in argv and "--distributed-executor-backend" not in argv

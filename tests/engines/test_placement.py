"""Multi-GPU engine specs in the dry run: memory per GPU (cliffbench.engines.placement) and the
refusal that names the field, on a 70B-class model described by its config.json and a
header-only safetensors file (its parameter count; no weights exist, nothing is loaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cliffbench.audit.estimate import estimate_study
from cliffbench.bench.spec.study import StudySpec
from cliffbench.cli import app
from cliffbench.config import InputError
from cliffbench.engines.placement import llamacpp_layer_gpus
from cliffbench.hardware import HARDWARE

GIB = 2**30
N_PARAMS = 70_553_706_496  # Llama-3.1-70B
CONFIG = {
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
}
KV_TOKEN_BF16 = 2 * 80 * 8 * 128 * 2  # K and V, every layer, every KV head, 2 bytes


@pytest.fixture
def big_model(tmp_path: Path) -> Path:
    d = tmp_path / "llama-70b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(CONFIG))
    header = json.dumps({"all.weight": {"dtype": "BF16", "shape": [N_PARAMS], "data_offsets": [0, 0]}}).encode()
    (d / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    return d


def _study(engine: dict[str, Any], model: Path, hardware: str, users: list[int] | None = None) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "multi-gpu",
            "hardware": hardware,
            "engines": [{**engine, "label": "e", "model": {"hf_path": str(model)}}],
            "level_sets": [{"load": {"concurrency": users or [1, 4]}}],
        }
    )


def test_llamacpp_layer_assignment_follows_upper_bound_of_split_points() -> None:
    # every layer offloaded (81 with the output layer): j / 81 < 0.5 -> GPU 0 for j = 0..40
    gpus = llamacpp_layer_gpus(80, -1, [1, 1])
    assert gpus.count(0) == 41 and gpus.count(1) == 40 and gpus[-1] == 1
    assert gpus == sorted(gpus)  # contiguous blocks, in GPU order
    # the last 10 layers only: the first 70 and the output layer stay on the CPU
    part = llamacpp_layer_gpus(80, 10, [3, 1])
    assert part[:70] == [-1] * 70 and part[-1] == -1
    assert part[70:80] == [0] * 8 + [1] * 2  # j / 10 < 0.75 for j = 0..7


def test_vllm_weights_and_kv_split_over_tensor_and_pipeline_ranks(big_model: Path) -> None:
    hw = HARDWARE["h100-sxm"]
    (est,) = estimate_study(_study({"kind": "vllm", "tensor_parallel_size": 2}, big_model, "h100-sxm"), hw)
    w = N_PARAMS * 2
    assert est.gpus == 2 and est.weights_gib == pytest.approx(w / GIB)
    # each GPU: its half of the weights, plus the KV budget vLLM reserves there
    per_gpu_reserve = 80 * GIB * 0.9 - w / 2
    assert est.kv_gib == pytest.approx(2 * per_gpu_reserve / GIB)
    assert est.gpu_gib == pytest.approx((80 * 0.9, 80 * 0.9))
    assert est.fits
    (est8,) = estimate_study(
        _study({"kind": "vllm", "tensor_parallel_size": 4, "pipeline_parallel_size": 2}, big_model, "h100-sxm"), hw
    )
    assert est8.gpus == 8 and max(est8.gpu_gib) == pytest.approx(80 * 0.9)


def test_vllm_replicates_kv_heads_beyond_tensor_parallel(big_model: Path) -> None:
    # 128 users x (32 + 64) tokens: tp 2 holds 4 of 8 KV heads per GPU, tp 16 one (replicated), not 1/2
    from cliffbench.engines.placement import gpu_loads
    from cliffbench.engines.specs import VllmSpec
    from cliffbench.models.manifest import shapes_from_hf

    shapes = shapes_from_hf(big_model)
    need = 128 * 96 * KV_TOKEN_BF16
    two = gpu_loads(VllmSpec(tensor_parallel_size=2), shapes, N_PARAMS * 2, 0, need, 80 * GIB)
    sixteen = gpu_loads(VllmSpec(tensor_parallel_size=16), shapes, N_PARAMS * 2, 0, need, 80 * GIB)
    assert two[0].kv_need_bytes == pytest.approx(need / 2)
    assert sixteen[0].kv_need_bytes == pytest.approx(need / 8) and len(sixteen) == 16


@pytest.mark.parametrize(
    ("engine", "users", "field", "says"),
    [
        ({"kind": "vllm"}, None, "tensor_parallel_size", "weights 131.4 GiB on GPU 0 of 1"),
        ({"kind": "vllm", "pipeline_parallel_size": 2}, [256], "tensor_parallel_size", "weights 65.7 GiB"),
        # weights fit over 4 GPUs; 256 users x 96 tokens of KV do not fit what is left of each
        ({"kind": "vllm", "tensor_parallel_size": 4, "max_model_len": 4096}, [4096], "max_num_seqs", "of KV cache"),
    ],
)
def test_vllm_gpu_that_does_not_fit_is_refused_naming_the_field(
    big_model: Path, engine: dict[str, Any], users: list[int] | None, field: str, says: str
) -> None:
    spec = _study({**engine, "max_num_seqs": 4096}, big_model, "l40s", users)
    with pytest.raises(InputError, match=rf"^engines\.e\.{field}: .*{says}"):
        estimate_study(spec, HARDWARE["l40s"])


def test_llamacpp_tensor_split_places_layers_and_kv(big_model: Path) -> None:
    hw = HARDWARE["l4"]
    engine = {"kind": "llamacpp-slots", "n_gpu_layers": -1, "tensor_split": [1, 1], "slots": 4, "ctx_per_slot": 2048}
    (est,) = estimate_study(_study(engine, big_model, "l4"), hw)
    w = N_PARAMS * 5 / 8  # q4_1: 5 bits per parameter
    edge = 128256 * 8192 * 5 / 8
    layer = (w - 2 * edge) / 80
    kv_layer = 4 * 2048 * KV_TOKEN_BF16 / 80  # llama.cpp keeps f16 KV
    assert est.gpus == 2
    assert est.gpu_gib[0] == pytest.approx((41 * layer + 41 * kv_layer) / GIB)
    assert est.gpu_gib[1] == pytest.approx((39 * layer + edge + 39 * kv_layer) / GIB)
    # row split: every matrix halved, the KV cache and the output layer on main_gpu
    (row,) = estimate_study(_study({**engine, "split_mode": "row", "main_gpu": 1}, big_model, "l4"), hw)
    assert row.gpu_gib[0] == pytest.approx(40 * layer / GIB)
    assert row.gpu_gib[1] == pytest.approx((40 * layer + edge + 80 * kv_layer) / GIB)


def test_llamacpp_split_that_overflows_a_gpu_names_tensor_split(big_model: Path, tmp_path: Path) -> None:
    engine = {"kind": "llamacpp-slots", "n_gpu_layers": -1, "tensor_split": [3, 1], "slots": 4}
    with pytest.raises(InputError, match=r"^engines\.e\.tensor_split: weights 3\d\.\d GiB on GPU 0 of 2 \(l4"):
        estimate_study(_study(engine, big_model, "l4"), HARDWARE["l4"])
    # the dry run: one line, exit 2; an even split over three GPUs fits and shows them
    p = tmp_path / "s.yaml"
    model = {"hf_path": str(big_model)}
    p.write_text(_study(engine, big_model, "l4").to_yaml())
    result = CliRunner().invoke(app, ["run", str(p), "--dry-run"])
    assert result.exit_code == 2 and "engines.e.tensor_split: weights" in result.output, result.output
    fits = {**engine, "tensor_split": [1, 1, 1], "label": "e", "model": model}
    p.write_text(_study(fits, big_model, "l4").to_yaml())
    result = CliRunner().invoke(app, ["run", str(p), "--dry-run"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.strip().startswith("│ e "))
    assert " 3 " in row  # the GPUs column

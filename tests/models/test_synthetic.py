"""Model-scale presets: Llama shapes with synthetic weights load in both real engines."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cliffbench.audit.roofline import MODELS
from cliffbench.engines import GenRequest, make_engine
from cliffbench.engines.specs import LlamaCppSlotsSpec, VllmSpec
from cliffbench.models import ModelManifest, shapes_from_gguf
from cliffbench.models.spec import ModelSpec
from cliffbench.models.synthetic import PRESETS, estimate_bytes, prepare_synthetic, preset_shapes

pytestmark = pytest.mark.engine
PRESET = "llama-3.2-1b"


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_shapes_match_published_configs(name: str) -> None:
    shapes, ref = preset_shapes(name), MODELS[name]
    assert shapes.n_params == ref.n_params  # 1,235,814,400 and 8,030,261,248
    assert (shapes.n_layers, shapes.n_kv_heads, shapes.head_dim) == (ref.n_layers, ref.n_kv_heads, ref.head_dim)


def test_estimate_bytes() -> None:
    # Q4_1: 20 bytes per 32 weights for 2-D tensors; the 1-D norms stay F32
    q4 = estimate_bytes(PRESET, ("q4_1",))
    assert q4 == pytest.approx(PRESETS[PRESET].n_params() * 20 / 32, rel=0.001)
    assert estimate_bytes(PRESET, ("f16",)) == pytest.approx(PRESETS[PRESET].n_params() * 2, rel=0.001)


@pytest.fixture(scope="module")
def preset(model: Any) -> ModelManifest:
    return prepare_synthetic(PRESET, variants=("q4_1",))


def test_preset_files(preset: ModelManifest) -> None:
    assert preset.synthetic and "gguf/model-q4_1.gguf" in preset.files
    gguf_shapes = shapes_from_gguf(preset.gguf_path("q4_1"))
    assert gguf_shapes.n_params == preset.shapes.n_params == PRESETS[PRESET].n_params()
    assert gguf_shapes.vocab_size == 128256 and gguf_shapes.n_kv_heads == 8
    config = json.loads((preset.hf_dir / "config.json").read_text())
    assert config["vocab_size"] == 128256 and config["num_hidden_layers"] == 16
    assert not list(preset.hf_dir.glob("*.safetensors"))  # vLLM loads it with load_format="dummy"
    vocab = json.loads((preset.hf_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocab) == 128256


async def _generate(spec: Any, n: int) -> tuple[list[int], dict[str, object]]:
    engine = make_engine(spec)
    await engine.start()
    try:
        ids = [ev.token_id async for ev in engine.stream(GenRequest(0, tuple(range(1000, 1016)), max_tokens=n))]
        return ids, engine.describe()
    finally:
        await engine.stop()


def test_preset_generates_in_llamacpp(preset: ModelManifest) -> None:
    spec = LlamaCppSlotsSpec(slots=1, ctx_per_slot=256, model=ModelSpec(name=PRESET))
    ids, _ = asyncio.run(_generate(spec, 6))
    assert len(ids) == 6 and all(0 <= i < 128256 for i in ids)


@pytest.mark.vllm
def test_preset_generates_in_vllm(preset: ModelManifest) -> None:
    spec = VllmSpec(model=ModelSpec(name=PRESET), max_model_len=256, kv_cache_gib=0.25, max_num_seqs=4)
    ids, desc = asyncio.run(_generate(spec, 6))
    assert len(ids) == 6 and desc["load_format"] == "dummy"


def test_unprepared_variant_is_named(preset: ModelManifest) -> None:
    from cliffbench.config import InputError
    from cliffbench.models import resolve_model

    # a preset has the variants it was written with; llama.cpp derives nothing from synthetic weights
    with pytest.raises(
        InputError, match=rf"model.gguf_variant: 'q8_0' is not prepared for '{PRESET}'; allowed: (f16, )?q4_1$"
    ):
        resolve_model(ModelSpec(name=PRESET, gguf_variant="q8_0"))

"""Which model an engine serves."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cliffbench.config import Spec

__all__ = ["GgufVariant", "ModelSpec"]

# q4_1: the bundled GGUF; f32: written by prepare-model; q8_0, f16, bf16: quantised from the F32 GGUF
# by llama.cpp (models/variants.py), or written by a model-scale preset (f16, q4_1)
GgufVariant = Literal["q4_1", "q8_0", "f16", "bf16", "f32"]


class ModelSpec(Spec):
    """Which prepared model to serve. `name` is a folder under data/models/ (see `prepare-model`);
    `hf_path` / `gguf_path` point to a user's own files instead."""

    name: str = Field("smollm2-135m", description="prepared model folder under data/models/")
    hf_path: Path | None = Field(None, description="a Hugging Face folder for vLLM (overrides name)")
    gguf_path: Path | None = Field(None, description="a GGUF file for llama.cpp (overrides name)")
    gguf_variant: GgufVariant = Field(
        "q4_1",
        description="which GGUF of a prepared model llama.cpp loads; q8_0, f16 and bf16 are quantised from the "
        "F32 GGUF on first use",
    )

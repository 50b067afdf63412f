"""Which model an engine serves."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cliffbench.config import Spec

__all__ = ["ModelSpec"]


class ModelSpec(Spec):
    """Which prepared model to serve. `name` is a folder under data/models/ (see `prepare-model`);
    `hf_path` / `gguf_path` point to a user's own files instead."""

    name: str = Field("smollm2-135m", description="prepared model folder under data/models/")
    hf_path: Path | None = Field(None, description="a Hugging Face folder for vLLM (overrides name)")
    gguf_path: Path | None = Field(None, description="a GGUF file for llama.cpp (overrides name)")
    gguf_variant: Literal["q4_1", "f32", "f16"] = Field(
        "q4_1", description="which GGUF of a prepared model llama.cpp loads (f32: bundled model; f16: presets)"
    )

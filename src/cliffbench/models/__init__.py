"""Model preparation: the bundled SmolLM2-135M in the forms each engine loads.

`prepare_model()` writes `data/models/<name>/` (Hugging Face fp32 folder for vLLM, Q4_1 and F32
GGUF files for llama.cpp, and a manifest with every file's sha256); `resolve_model(spec)` turns an
engine's ModelSpec into verified paths and the shapes the roofline needs.
"""

from __future__ import annotations

from .bundled import SOURCES, ModelSource, prepare_model
from .manifest import (
    DEFAULT_MODEL,
    FileEntry,
    GgufVariant,
    ModelManifest,
    ModelShapes,
    load_manifest,
    model_dir,
    resolve_model,
    shapes_from_gguf,
    shapes_from_hf,
    verify_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "SOURCES",
    "FileEntry",
    "GgufVariant",
    "ModelManifest",
    "ModelShapes",
    "ModelSource",
    "load_manifest",
    "model_dir",
    "prepare_model",
    "resolve_model",
    "shapes_from_gguf",
    "shapes_from_hf",
    "verify_model",
]

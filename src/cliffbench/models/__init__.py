"""Model preparation: the bundled SmolLM2-135M in the forms each engine loads.

`prepare_model()` writes `data/models/<name>/` (Hugging Face fp32 folder for vLLM, Q4_1 and F32
GGUF files for llama.cpp, Q8_0, F16 and BF16 ones quantised from the F32 by llama.cpp, and a
manifest with every file's sha256); `resolve_model(spec)` turns an
engine's ModelSpec into verified paths and the shapes the roofline needs.
"""

from __future__ import annotations

from .bundled import DERIVED_VARIANTS, SOURCES, ModelSource, prepare_model
from .manifest import (
    DEFAULT_MODEL,
    DerivedFile,
    FileEntry,
    GgufVariant,
    ModelManifest,
    ModelShapes,
    load_manifest,
    model_dir,
    shapes_from_gguf,
    shapes_from_hf,
    verify_model,
)
from .resolve import resolve_model
from .variants import GGUF_VARIANTS, derive_variants, parse_variants

__all__ = [
    "DEFAULT_MODEL",
    "DERIVED_VARIANTS",
    "GGUF_VARIANTS",
    "SOURCES",
    "DerivedFile",
    "FileEntry",
    "GgufVariant",
    "ModelManifest",
    "ModelShapes",
    "ModelSource",
    "derive_variants",
    "load_manifest",
    "model_dir",
    "parse_variants",
    "prepare_model",
    "resolve_model",
    "shapes_from_gguf",
    "shapes_from_hf",
    "verify_model",
]

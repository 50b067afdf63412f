"""Resolving an engine's ModelSpec to the files it loads, verified, and the shapes they describe."""

from __future__ import annotations

from pathlib import Path

from cliffbench.config import InputError

from .manifest import ModelShapes, shapes_from_gguf, shapes_from_hf, verify_model
from .spec import ModelSpec
from .variants import derive_variants

__all__ = ["resolve_model"]


def resolve_model(spec: ModelSpec, *, models_dir: Path | None = None) -> tuple[Path | None, Path | None, ModelShapes]:
    """(hf_dir, gguf_path, shapes) an engine should load.

    User paths win over the prepared name; when only one of them is given the other is None (an
    engine that needs it reports that), so the shapes always describe the files actually served.
    A prepared model is verified (once per process unless its files change).
    """
    if spec.hf_path is None and spec.gguf_path is None:
        manifest = verify_model(spec.name, models_dir=models_dir, cached=True)
        prepared = manifest.gguf_path(spec.gguf_variant)
        if prepared.relative_to(manifest.root).as_posix() not in manifest.files and not manifest.synthetic:
            # a variant llama.cpp quantises from the F32 GGUF in a second is made on first use, so a
            # study that names it needs no manual step (models/variants.py)
            manifest = derive_variants(manifest, (spec.gguf_variant,))
        if prepared.relative_to(manifest.root).as_posix() not in manifest.files:
            have = sorted(
                f.removeprefix("gguf/model-").removesuffix(".gguf") for f in manifest.files if f.startswith("gguf/")
            )
            raise InputError(
                f"model.gguf_variant: {spec.gguf_variant!r} is not prepared for {spec.name!r}; "
                f"allowed: {', '.join(have)}"
            )
        return manifest.hf_dir, prepared, manifest.shapes
    hf = gguf_file = None
    if spec.hf_path is not None:
        hf = spec.hf_path.expanduser().resolve()
        if not (hf / "config.json").is_file():
            raise InputError(f"model.hf_path: {spec.hf_path} is not a folder with config.json")
    if spec.gguf_path is not None:
        gguf_file = spec.gguf_path.expanduser().resolve()
        if not gguf_file.is_file():
            raise InputError(f"model.gguf_path: {spec.gguf_path} does not exist")
    if hf is not None:
        return hf, gguf_file, shapes_from_hf(hf)
    assert gguf_file is not None  # one of the two is set, see the first branch
    return hf, gguf_file, shapes_from_gguf(gguf_file)

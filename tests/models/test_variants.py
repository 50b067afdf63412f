"""GGUF variants quantised from the F32 GGUF by llama.cpp, on the real bundled model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cliffbench.config import InputError
from cliffbench.models import (
    DERIVED_VARIANTS,
    ModelManifest,
    load_manifest,
    parse_variants,
    prepare_model,
    resolve_model,
    verify_model,
)
from cliffbench.models.gguf_io import read_gguf_header
from cliffbench.models.manifest import sha256_file
from cliffbench.models.spec import ModelSpec

# llama.h `enum llama_ftype`: the file type llama.cpp writes into general.file_type
FILE_TYPE = {"q8_0": 7, "f16": 1, "bf16": 32}


def _copy_without(m: ModelManifest, dest_root: Path, drop: set[str]) -> Path:
    """A hard-linked copy of the prepared folder whose manifest lacks the variants `drop`, as a folder
    prepared before they existed looks."""
    dest = dest_root / m.name
    shutil.copytree(m.root, dest, copy_function=os.link)
    data = json.loads((dest / "manifest.json").read_text())
    for v in drop:
        rel = f"gguf/model-{v}.gguf"
        data["files"].pop(rel)
        data["derived"].pop(rel, None)
        (dest / rel).unlink()
    (dest / "manifest.json").unlink()  # a hard link: replace, never edit in place
    (dest / "manifest.json").write_text(json.dumps(data))
    return dest


def test_prepare_writes_every_variant_with_its_origin(model: ModelManifest) -> None:
    assert DERIVED_VARIANTS == ("q8_0", "f16", "bf16")
    f32 = model.files["gguf/model-f32.gguf"]
    for v, ftype in FILE_TYPE.items():
        rel = f"gguf/model-{v}.gguf"
        path = model.root / rel
        assert model.files[rel].sha256 == sha256_file(path)
        origin = model.derived[rel]
        assert (origin.source, origin.source_sha256) == ("gguf/model-f32.gguf", f32.sha256)
        assert origin.tool.startswith("llama_model_quantize (LLAMA_FTYPE_MOSTLY_")
        assert "llama-cpp-python" in origin.tool
        assert read_gguf_header(path).values["general.file_type"] == ftype
        assert resolve_model(ModelSpec(gguf_variant=v))[1] == path
    n = model.shapes.n_params
    # Q8_0: 34 bytes per 32 weights; F16/BF16: 2 bytes a weight; plus a few MB of vocabulary
    assert 0 < model.files["gguf/model-q8_0.gguf"].bytes - n * 34 / 32 < 16 * 2**20
    assert 0 < model.files["gguf/model-bf16.gguf"].bytes - n * 2 < 16 * 2**20
    assert model.files["gguf/model-f16.gguf"].bytes == model.files["gguf/model-bf16.gguf"].bytes


def test_a_study_naming_a_missing_variant_gets_it(model: ModelManifest, tmp_path: Path) -> None:
    copy = _copy_without(model, tmp_path, {"q8_0", "bf16"})
    assert "gguf/model-q8_0.gguf" not in load_manifest(models_dir=tmp_path).files
    _, gguf_path, shapes = resolve_model(ModelSpec(gguf_variant="bf16"), models_dir=tmp_path)
    assert gguf_path == copy / "gguf" / "model-bf16.gguf"
    assert shapes == model.shapes
    after = verify_model(models_dir=tmp_path)  # every sha256, the new file's included
    # made the same way from the same F32 file: byte for byte the prepared one
    assert after.files["gguf/model-bf16.gguf"] == model.files["gguf/model-bf16.gguf"]
    assert "gguf/model-q8_0.gguf" not in after.files  # only what was asked for
    assert not [p.name for p in (copy / "gguf").iterdir() if p.name.startswith(".")]
    # prepare-model on that folder adds the rest and leaves the others untouched
    again = prepare_model(models_dir=tmp_path, variants=("q8_0",))
    assert again.files == model.files
    assert set(again.derived) == set(model.derived)


def test_a_variant_without_its_f32_source_is_a_clear_error(model: ModelManifest, tmp_path: Path) -> None:
    _copy_without(model, tmp_path, {"q8_0"})
    manifest = json.loads((tmp_path / model.name / "manifest.json").read_text())
    manifest["files"].pop("gguf/model-f32.gguf")
    (tmp_path / model.name / "manifest.json").unlink()
    (tmp_path / model.name / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"model\.gguf_variant: 'q8_0' is quantised from the F32 GGUF.*allowed: "):
        resolve_model(ModelSpec(gguf_variant="q8_0"), models_dir=tmp_path)


def test_a_folder_it_cannot_write_is_a_clear_error(model: ModelManifest, tmp_path: Path) -> None:
    copy = _copy_without(model, tmp_path, {"f16"})
    # the lock cannot be opened, as in a read-only folder (mode bits do not stop root: a folder does)
    (copy / ".variants.lock").unlink(missing_ok=True)
    (copy / ".variants.lock").mkdir()
    with pytest.raises(InputError, match=r"model\.gguf_variant: cannot add a GGUF variant to .*smollm2-135m \("):
        resolve_model(ModelSpec(gguf_variant="f16"), models_dir=tmp_path)
    assert not (copy / "gguf" / "model-f16.gguf").exists()


def test_parse_variants() -> None:
    assert parse_variants(" Q8_0, bf16 ,") == ("q8_0", "bf16")
    with pytest.raises(
        InputError, match=r"--variants: 'q5_k' is not a GGUF variant; allowed: q4_1, q8_0, f16, bf16, f32"
    ):
        parse_variants("q8_0,q5_k")

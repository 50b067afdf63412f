"""GGUF variants derived locally: Q8_0, F16 and BF16 quantised from a prepared model's F32 GGUF.

The bundled wheel ships only the Q4_1 GGUF, and `prepare_model` writes the F32 one from it; the
other precisions llama.cpp serves are made here by llama.cpp's own quantiser
(`llama_model_quantize`, the code behind `llama-quantize`), so nothing is downloaded. Each takes
about a second for the 135M model. A variant is added to a prepared folder in place: the file is
written under a temporary name and renamed, then the manifest is rewritten the same way with the
file's sha256 and where it came from. A lock on the folder serialises two processes deriving at
once (a study and a test, or several load clients).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from cliffbench.config import InputError
from cliffbench.files import atomic_file

from .manifest import (
    MANIFEST_NAME,
    DerivedFile,
    ModelManifest,
    display_path,
    file_entry,
    load_manifest,
    mark_verified,
    verify_model,
)
from .spec import GgufVariant

__all__ = ["DERIVED_FTYPES", "GGUF_VARIANTS", "derive_variants", "parse_variants"]

# variant -> llama.cpp's file type constant (llama.h `enum llama_ftype`)
DERIVED_FTYPES: dict[GgufVariant, str] = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "bf16": "LLAMA_FTYPE_MOSTLY_BF16",
}
GGUF_VARIANTS: tuple[str, ...] = get_args(GgufVariant)
_SOURCE_REL = "gguf/model-f32.gguf"

Progress = Callable[[str], None]

# llama.cpp logs every tensor it quantises; a module-level reference keeps the callback alive
_QUIET_LOG: Any = None


def _no_log(_level: int, _text: bytes, _user: ctypes.c_void_p) -> None:
    pass


def parse_variants(text: str, param: str = "--variants") -> tuple[GgufVariant, ...]:
    """'q8_0,bf16' -> ('q8_0', 'bf16'); InputError naming `param` for anything else."""
    out: list[GgufVariant] = []
    for raw in text.split(","):
        v = raw.strip().lower()
        if not v:
            continue
        if v not in GGUF_VARIANTS:
            raise InputError(f"{param}: {v!r} is not a GGUF variant; allowed: {', '.join(GGUF_VARIANTS)}")
        out.append(v)  # type: ignore[arg-type]  # checked against the Literal's values above
    return tuple(out)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        lock = (folder / ".variants.lock").open("a")
    except OSError as exc:  # a read-only models folder: say where, not a traceback
        raise InputError(
            f"model.gguf_variant: cannot add a GGUF variant to {display_path(folder)} ({exc.strerror}); "
            "run 'cliffbench prepare-model' where that folder is writable"
        ) from None
    with lock as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _quantize(src: Path, dst: Path, variant: GgufVariant) -> tuple[float, str]:
    """Write `dst` from `src` with llama.cpp's quantiser; returns (seconds, tool description)."""
    try:
        import llama_cpp as lc
    except ImportError:
        raise InputError(
            f"model.gguf_variant: {variant!r} is made by llama.cpp's quantiser; install llama-cpp-python"
        ) from None
    global _QUIET_LOG
    if _QUIET_LOG is None:
        _QUIET_LOG = lc.llama_log_callback(_no_log)
    lc.llama_backend_init()
    lc.llama_log_set(_QUIET_LOG, ctypes.c_void_p(0))
    params = lc.llama_model_quantize_default_params()
    params.ftype = getattr(lc, DERIVED_FTYPES[variant])
    params.nthread = os.cpu_count() or 1
    t0 = time.perf_counter()
    rc = lc.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    seconds = time.perf_counter() - t0
    if rc != 0 or not dst.is_file():
        raise RuntimeError(f"model: llama_model_quantize {src.name} -> {variant} failed (return code {rc})")
    tool = f"llama_model_quantize ({DERIVED_FTYPES[variant]}) of the llama.cpp in llama-cpp-python {lc.__version__}"
    return seconds, tool


def _write_manifest(manifest: ModelManifest) -> None:
    with atomic_file(manifest.root / MANIFEST_NAME) as tmp:
        tmp.write_text(manifest.model_dump_json(indent=2) + "\n")


def derive_variants(
    manifest: ModelManifest, variants: tuple[GgufVariant, ...], progress: Progress | None = None
) -> ModelManifest:
    """Add each of `variants` missing from the prepared folder of `manifest`, quantised from its F32
    GGUF; returns the manifest as it now stands. Variants that are present, or that no one can
    derive here (q4_1, f32: `prepare_model` writes them), are left as they are."""
    say = progress or (lambda _s: None)
    folder = manifest.root
    wanted = [v for v in variants if v in DERIVED_FTYPES and f"gguf/model-{v}.gguf" not in manifest.files]
    if not wanted:
        return manifest
    with _folder_lock(folder):
        # another process may have derived some while this one waited for the lock
        current = load_manifest(manifest.name, models_dir=folder.parent)
        wanted = [v for v in wanted if f"gguf/model-{v}.gguf" not in current.files]
        if not wanted:
            return verify_model(manifest.name, models_dir=folder.parent, cached=True)
        if _SOURCE_REL not in current.files:
            have = sorted(f.removeprefix("gguf/model-").removesuffix(".gguf") for f in current.files if "gguf/" in f)
            raise InputError(
                f"model.gguf_variant: {wanted[0]!r} is quantised from the F32 GGUF, which {manifest.name!r} "
                f"does not have; allowed: {', '.join(have)}"
            )
        current = verify_model(manifest.name, models_dir=folder.parent, cached=True)
        src = folder / _SOURCE_REL
        files = dict(current.files)
        derived = dict(current.derived)
        for v in wanted:
            rel = f"gguf/model-{v}.gguf"
            say(f"quantising {_SOURCE_REL} to {v.upper()} with llama.cpp ...")
            with atomic_file(folder / rel) as tmp:
                seconds, tool = _quantize(src, tmp, v)
                entry = file_entry(tmp)
            files[rel] = entry
            derived[rel] = DerivedFile(
                source=_SOURCE_REL,
                source_sha256=current.files[_SOURCE_REL].sha256,
                tool=tool,
                seconds=round(seconds, 3),
                created_at=datetime.now(UTC),
            )
            say(f"{display_path(folder / rel)}: {entry.bytes / 2**20:.0f} MiB in {seconds:.1f} s")
        updated = current.model_copy(update={"files": files, "derived": derived}).bind(folder)
        _write_manifest(updated)
    # every other file was verified a moment ago and the new ones hashed as they were written
    return mark_verified(updated)

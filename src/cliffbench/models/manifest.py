"""The manifest of a prepared model and its verification (models/resolve.py turns a ModelSpec into files).

A prepared model is a folder `data/models/<name>/` holding `manifest.json`, a Hugging Face folder
`hf/` (for vLLM) and GGUF files `gguf/model-<variant>.gguf` (for llama.cpp). The manifest records
the sha256 of every file, so a truncated download or an edited file is reported before an engine
spends minutes loading it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from cliffbench.config import MODELS_DIR, PROJECT_ROOT, InputError
from cliffbench.models.spec import GgufVariant, ModelSpec

from .gguf_io import gguf_shape_fields

__all__ = [
    "DEFAULT_MODEL",
    "MANIFEST_NAME",
    "DerivedFile",
    "FileEntry",
    "GgufVariant",
    "ModelManifest",
    "ModelShapes",
    "display_path",
    "file_entry",
    "forget_verified",
    "is_synthetic",
    "load_manifest",
    "mark_verified",
    "model_dir",
    "sha256_file",
    "shapes_from_gguf",
    "shapes_from_hf",
    "verify_model",
]

DEFAULT_MODEL = "smollm2-135m"
MANIFEST_NAME = "manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class ModelShapes(BaseModel):
    """Architecture numbers the roofline and KV-cache arithmetic need."""

    model_config = ConfigDict(frozen=True)

    architecture: str
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    context_length: int
    n_params: int

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """KV-cache bytes one token occupies: K and V, every layer, every KV head."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * dtype_bytes


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    sha256: str
    bytes: int


class DerivedFile(BaseModel):
    """Where a file made after preparation came from (a GGUF quantised from another)."""

    model_config = ConfigDict(frozen=True)

    source: str  # the file it was made from, relative to the model folder
    source_sha256: str
    tool: str
    seconds: float
    created_at: datetime


class ModelManifest(BaseModel):
    """What `prepare_model` wrote. Paths in `files` are relative to the model folder."""

    model_config = ConfigDict(frozen=True)

    name: str
    source: str
    created_at: datetime
    files: dict[str, FileEntry]
    shapes: ModelShapes
    versions: dict[str, str] = {}
    # weights are seeded noise (a model-scale preset): vLLM loads it with load_format="dummy"
    synthetic: bool = False
    # files added after preparation, by path: how each was made (models/variants.py)
    derived: dict[str, DerivedFile] = {}
    _root: Path | None = PrivateAttr(default=None)

    def bind(self, root: Path) -> ModelManifest:
        """Attach the folder the manifest was read from (not serialised: folders move)."""
        self._root = root.resolve()
        return self

    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError(f"manifest of {self.name!r} is not bound to a folder")
        return self._root

    @property
    def hf_dir(self) -> Path:
        return self.root / "hf"

    def gguf_path(self, variant: GgufVariant = "q4_1") -> Path:
        return self.root / "gguf" / f"model-{variant}.gguf"


def display_path(path: Path) -> str:
    """A path as the user should see it: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _hint(name: str, force: bool) -> str:
    cmd = "cliffbench prepare-model" if name == DEFAULT_MODEL else f"cliffbench prepare-model --name {name}"
    return f"run '{cmd}{' --force' if force else ''}'"


def model_dir(name: str, models_dir: Path | None = None) -> Path:
    """The folder of prepared model `name`; InputError if the name could escape models_dir."""
    if not _NAME_RE.match(name):
        raise InputError(f"model.name: {name!r} is not a folder name (letters, digits, '_', '.', '-')")
    return (models_dir or MODELS_DIR) / name


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)


def load_manifest(name: str = DEFAULT_MODEL, *, models_dir: Path | None = None) -> ModelManifest:
    """Read `<models_dir>/<name>/manifest.json` without checking the files."""
    folder = model_dir(name, models_dir)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"model: {name!r} is not prepared; {_hint(name, force=False)}")
    try:
        manifest = ModelManifest.model_validate_json(path.read_bytes())
    except ValidationError:
        raise InputError(f"model: {display_path(path)} is unreadable (corrupt); {_hint(name, force=True)}") from None
    return manifest.bind(folder)


# Verified folders of this process, keyed by folder, valued by the files' (size, mtime) signature:
# hashing ~750 MB takes seconds, and every engine start of a study resolves the same model.
_VERIFIED: dict[Path, tuple[tuple[tuple[str, int, int], ...], ModelManifest]] = {}


def _signature(folder: Path, rels: list[str]) -> tuple[tuple[str, int, int], ...]:
    stats = [(rel, (folder / rel).stat()) for rel in [MANIFEST_NAME, *rels]]
    return tuple((rel, st.st_size, st.st_mtime_ns) for rel, st in stats)


def mark_verified(manifest: ModelManifest) -> ModelManifest:
    """Record a manifest whose hashes the caller just computed as verified for this process."""
    _VERIFIED[manifest.root] = (_signature(manifest.root, sorted(manifest.files)), manifest)
    return manifest


def forget_verified(folder: Path) -> None:
    _VERIFIED.pop(folder.resolve(), None)


def verify_model(name: str = DEFAULT_MODEL, *, models_dir: Path | None = None, cached: bool = False) -> ModelManifest:
    """Load the manifest and check every file's size and sha256.

    `cached=True` skips hashing when this process already verified the folder and no file's size
    or mtime changed since.
    """
    manifest = load_manifest(name, models_dir=models_dir)
    folder = manifest.root
    rels = sorted(manifest.files)
    for rel in rels:
        path = folder / rel
        if not path.is_file():
            raise InputError(f"model: {display_path(path)} is missing (incomplete); {_hint(name, True)}")
    signature = _signature(folder, rels)
    hit = _VERIFIED.get(folder)
    if cached and hit is not None and hit[0] == signature:
        return hit[1]
    # Sizes first: a truncated file is reported without hashing gigabytes.
    for rel in rels:
        path = folder / rel
        if path.stat().st_size != manifest.files[rel].bytes:
            raise InputError(f"model: {display_path(path)} size mismatch (corrupt); {_hint(name, True)}")
    for rel in rels:
        path = folder / rel
        if sha256_file(path) != manifest.files[rel].sha256:
            raise InputError(f"model: {display_path(path)} sha256 mismatch (corrupt); {_hint(name, True)}")
    _VERIFIED[folder] = (signature, manifest)
    return manifest


def shapes_from_gguf(path: Path) -> ModelShapes:
    """Shapes from a GGUF file's metadata (n_params: sum of its tensors' elements)."""
    try:
        return ModelShapes(**gguf_shape_fields(path))
    except (ValueError, OSError) as exc:
        raise InputError(f"model.gguf_path: {path} is not a usable GGUF file: {exc}") from None


def _safetensors_params(folder: Path) -> int:
    # The header is 8 bytes of little-endian length then JSON: shapes without loading any weights.
    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header: dict[str, Any] = json.loads(f.read(size))
        for key, info in header.items():
            if key != "__metadata__":
                n = 1
                for d in info["shape"]:
                    n *= int(d)
                total += n
    return total


def shapes_from_hf(folder: Path) -> ModelShapes:
    """Shapes from a Hugging Face `config.json` (n_params: from the safetensors headers)."""
    path = folder / "config.json"
    try:
        cfg: dict[str, Any] = json.loads(path.read_text())
        hidden = int(cfg["hidden_size"])
        n_heads = int(cfg["num_attention_heads"])
        return ModelShapes(
            architecture=str(cfg.get("model_type", "unknown")),
            n_layers=int(cfg["num_hidden_layers"]),
            hidden_size=hidden,
            n_heads=n_heads,
            n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads),
            head_dim=int(cfg.get("head_dim") or hidden // n_heads),
            ffn_size=int(cfg.get("intermediate_size") or 0),
            vocab_size=int(cfg["vocab_size"]),
            context_length=int(cfg.get("max_position_embeddings") or 0),
            n_params=_safetensors_params(folder),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"model.hf_path: {path} is not a usable config.json: {exc!r}") from None


def is_synthetic(spec: ModelSpec, *, models_dir: Path | None = None) -> bool:
    """Whether `spec` names a prepared model with synthetic weights (user paths never are)."""
    if spec.hf_path is not None or spec.gguf_path is not None:
        return False
    return load_manifest(spec.name, models_dir=models_dir).synthetic

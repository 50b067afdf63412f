"""A reference run: a stored study copied compactly into the repository (`data/reference/<name>/`),
so a reader can compare their run with the project's (`cliffbench compare`, the whitepaper).

The copy keeps the study's layout, so it reads exactly like a stored study (`load_reference`,
`decide.compare.open_study` on its folder):

```
data/reference/<name>/manifest.json      the study as run, the machine, the versions (as stored)
data/reference/<name>/export.json        what was copied, from where, when (`ReferenceExport`)
data/reference/<name>/levels/<key>/{level.json, requests.parquet}
data/reference/<name>/searches/*.json    the cliff searches, where the study ran any
```
Left out: the per-token and memory tables (`tokens.parquet`, `memory.parquet`; a comparison reads
the levels and the requests only) and progress.json. The requests are rewritten with zstd, and each
level.json's checksums name the files the copy holds, so a damaged copy is caught on reading as a
stored study's would be. The copy is written atomically and refused beyond `max_mb`: a reference
lives in git, and the issue's budget is a few MB.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from cliffbench.bench.store.levels import (
    LEVEL_FILE,
    Results,
    StoredFile,
    level_problem,
    load_results,
    read_level,
    read_manifest,
    study_dir,
)
from cliffbench.bench.store.provenance import git_sha
from cliffbench.config import DATA_DIR, InputError
from cliffbench.files import atomic_dir

__all__ = [
    "EXPORT_FILE",
    "REFERENCE_DIR",
    "ReferenceExport",
    "export_reference",
    "find_reference",
    "load_reference",
    "read_export",
]

REFERENCE_DIR = DATA_DIR / "reference"
EXPORT_FILE = "export.json"
KEPT_TABLES = ("requests",)
DEFAULT_MAX_MB = 5.0


class ReferenceExport(BaseModel):
    """What `export.json` holds: where the copy came from and what it left out."""

    name: str = Field(description="the reference's folder name under data/reference/")
    study: str = Field(description="the study's name, as its manifest states it")
    source: str = Field(description="the stored study folder it was copied from")
    exported_at: str = Field(description="UTC, ISO 8601 to the second")
    exported_git_sha: str = Field(description="the kit's revision that made the copy")
    levels: int = Field(description="level folders copied (every repeat its own)")
    request_rows: int
    tables: list[str] = Field(description="the per-level tables kept")
    left_out: list[str] = Field(description="what the stored study held that the copy does not")
    size_bytes: int = Field(description="the copy's size on disk, export.json aside")


def _tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _copy_level(src: Path, dst: Path) -> int:
    """One level folder: level.json with checksums of the files kept, the requests in zstd.
    Returns the requests' row count."""
    info = read_level(src)
    problem = level_problem(src, info, KEPT_TABLES)
    if problem:
        raise InputError(f"study: level {src.name}: {problem}; measure it again before exporting")
    dst.mkdir(parents=True)
    files: dict[str, StoredFile] = {}
    rows = 0
    for name in KEPT_TABLES:
        if f"{name}.parquet" not in info.files and not (src / f"{name}.parquet").is_file():
            continue  # a level that never ran stored no table
        df = pd.read_parquet(src / f"{name}.parquet")
        path = dst / f"{name}.parquet"
        _write_compact(df, path)
        files[path.name] = StoredFile(rows=len(df), sha256=_sha256_of(path))
        rows += len(df)
    info = info.model_copy(update={"files": files})
    (dst / LEVEL_FILE).write_text(info.model_dump_json())  # compact: 100-odd of them go into git
    return rows


def _write_compact(df: pd.DataFrame, path: Path) -> None:
    """zstd, without pandas' schema metadata and column statistics: two thirds of a small level's
    file (11 kB for 4 requests, 4 kB without). The plain columns of a requests table read back the
    same without that metadata; where one would not, the file is written with it."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path, compression="zstd", write_statistics=False)
    if not pd.read_parquet(path).equals(df.reset_index(drop=True)):
        df.to_parquet(path, index=False, compression="zstd")


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_reference(
    study: str,
    to: Path | None = None,
    root: Path | None = None,
    max_mb: float = DEFAULT_MAX_MB,
) -> ReferenceExport:
    """Copy stored study `study` (under `root`, data/results by default) to `to` (default
    data/reference/<study>), replacing an older copy. InputError (nothing written) when the study
    is missing, a level is damaged, or the copy exceeds `max_mb`."""
    src = study_dir(study, root)
    levels = sorted(p for p in (src / "levels").glob("[!.]*") if (p / LEVEL_FILE).is_file())
    if not levels:
        raise InputError(f"study: no stored levels for {study!r} under {src.parent}")
    manifest = read_manifest(study, root)
    name_in_manifest = manifest.spec.name
    dest = (to or REFERENCE_DIR / study).resolve()
    rows = 0
    with atomic_dir(dest) as tmp:
        shutil.copy2(src / "manifest.json", tmp / "manifest.json")
        for level in levels:
            try:
                rows += _copy_level(level, tmp / "levels" / level.name)
            except InputError:
                raise
            except ValueError as exc:  # level.json unreadable
                raise InputError(f"study: level {level.name}: {str(exc).splitlines()[0]}") from None
        if (src / "searches").is_dir():
            shutil.copytree(src / "searches", tmp / "searches")
        size = _tree_bytes(tmp)
        if size > max_mb * 2**20:
            raise InputError(
                f"--max-mb: the copy of {study!r} is {size / 2**20:.1f} MiB, over {max_mb:g} MiB; nothing written"
            )
        record = ReferenceExport(
            name=dest.name,
            study=name_in_manifest,
            source=str(src.resolve()),
            exported_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            exported_git_sha=git_sha(),
            levels=len(levels),
            request_rows=rows,
            tables=list(KEPT_TABLES),
            left_out=["tokens.parquet (per-token times)", "memory.parquet (memory samples)", "progress.json"],
            size_bytes=size,
        )
        (tmp / EXPORT_FILE).write_text(record.model_dump_json(indent=2) + "\n")
    return record


def read_export(folder: Path) -> ReferenceExport | None:
    """A reference folder's export record (None: a study folder, or a copy made by hand)."""
    path = folder / EXPORT_FILE
    return ReferenceExport.model_validate_json(path.read_text()) if path.is_file() else None


def find_reference(study: str, root: Path | None = None) -> Path | None:
    """The shipped reference of study `study`: data/reference/<study>/, else a reference whose
    export record names that study (exported `--to` another name); None when none is shipped."""
    base = root or REFERENCE_DIR
    if (base / study / "levels").is_dir():
        return base / study
    if not base.is_dir():
        return None
    for folder in sorted(p for p in base.iterdir() if (p / "levels").is_dir()):
        record = read_export(folder)
        if record is not None and record.study == study:
            return folder
    return None


def load_reference(folder: Path) -> Results:
    """A reference copy read exactly as a stored study: its levels and requests (the per-token
    tables it does not hold are empty)."""
    folder = folder.resolve()
    return load_results(folder.name, folder.parent, tables=KEPT_TABLES)

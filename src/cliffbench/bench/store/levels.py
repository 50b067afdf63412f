"""Tidy results on disk: one folder per study, one atomically written folder per level.

```
data/results/<study>/manifest.json
data/results/<study>/levels/<engine>__<set>__c0004/{level.json, requests.parquet,
                                                    tokens.parquet, memory.parquet}
```
A level folder is written under a temporary name and renamed into place, so a level is either
complete or absent: a crash mid-level never leaves a half level, and never touches the others.
`load_results(study)` concatenates the levels into the four tidy tables, with the sweep
parameters (engine, kind, level set, concurrency, rate) as columns of every table.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from cliffbench.bench.load.driver import ClientInfo
from cliffbench.bench.metrics.phases import TRANSIENT_COLUMNS, SteadyWindow
from cliffbench.bench.metrics.summary import LevelSummary
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.node import NodeInfo
from cliffbench.bench.store.provenance import StudyManifest
from cliffbench.bench.store.schema import SCHEMA_VERSION, upgrade_level, upgrade_manifest
from cliffbench.config import RESULTS_DIR, InputError
from cliffbench.engines.specs import EngineSpec
from cliffbench.files import atomic_dir, atomic_file, remove_stale

__all__ = [
    "LevelInfo",
    "Results",
    "StoredFile",
    "level_done",
    "level_key",
    "level_problem",
    "list_studies",
    "load_results",
    "ok_levels",
    "ok_requests",
    "read_level",
    "read_level_tables",
    "read_manifest",
    "spec_hash",
    "stored_levels",
    "study_dir",
    "study_lock",
    "write_level",
    "write_manifest",
]

logger = logging.getLogger(__name__)
LEVEL_FILE = "level.json"
TABLES = ("requests", "tokens", "memory")
SWEEP_COLUMNS = [
    "engine",
    "engine_kind",
    "level_set",
    "workload",
    "concurrency",
    "rate_rps",
    "repeat",
    "probe",
    "level_key",
]


class StoredFile(BaseModel):
    """What a level's Parquet file held when it was written: checked on every read."""

    rows: int
    sha256: str


class LevelInfo(BaseModel):
    """What `level.json` holds: the level's identity, its summary metrics and honesty checks."""

    # NaN is data here (a level with no successful request): keep it NaN on disk, not null
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    schema_version: int = SCHEMA_VERSION
    study: str
    level_key: str
    engine: str
    engine_kind: str
    engine_hash: str
    level_set: str
    workload: str
    level_index: int
    concurrency: int | None = None
    rate_rps: float | None = None
    repeat: int = Field(0, ge=0, description="0-based repeat of the level")
    probe: bool = Field(False, description="measured by a cliff search (bench/search/bracket.py), not the grid")
    seed: int
    status: str = Field(description="'ok', or 'failed' when the engine or the level crashed")
    error: str = ""
    started_at: str
    wall_s: float
    lag_p99_s: float
    thread_wait_p99_s: float = Field(
        float("nan"), description="p99 of how late a probe thread woke holding the GIL (NaN: stored before it existed)"
    )
    loop_cpu_share: float
    lag_flagged: bool
    foreign_cores: float = Field(
        float("nan"), description="CPU used by processes outside the kit during the level, in cores"
    )
    steal_cores: float = Field(float("nan"), description="CPU the hypervisor took during the level, in cores")
    loadavg_1m: float = float("nan")
    busy_flagged: bool = Field(False, description="foreign_cores above the study's busy.max_foreign_cores")
    attempts: int = Field(1, ge=1, description="measurements taken (a busy level is measured again)")
    summary: LevelSummary | None = Field(
        None,
        description="over the steady window (bench/metrics/phases.py); the whole level when `steady` is None; "
        "None: the level never ran (its engine did not start)",
    )
    steady: SteadyWindow | None = Field(None, description="the steady window; None: stored before phases existed")
    transient: LevelSummary | None = Field(
        None, description="the summary over the ramp and drain requests (None: no phases)"
    )
    engine_config: dict[str, object] = Field(default_factory=dict, description="the engine's `describe()`")
    files: dict[str, StoredFile] = Field(
        default_factory=dict, description="row count and sha256 of each Parquet file (empty: stored before checks)"
    )
    clients: list[ClientInfo] = Field(
        default_factory=list,
        description="one entry per client process (load.client_processes > 1): clock offset and harness "
        "checks of each; the level's lag, GIL-wait and loop-CPU fields are then the worst client's",
    )
    node: NodeInfo | None = Field(None, description="the Ray node it ran on (`run --cluster`); None: a local run")


@dataclass
class Results:
    """The tidy tables of one study."""

    requests: pd.DataFrame
    tokens: pd.DataFrame
    levels: pd.DataFrame
    memory: pd.DataFrame
    manifest: StudyManifest
    damaged: dict[str, str] = field(default_factory=dict)  # level key -> what is wrong (left out)

    @property
    def study(self) -> StudySpec:
        """The study as it was run (from the manifest)."""
        return self.manifest.spec

    @property
    def engine_specs(self) -> dict[str, EngineSpec]:
        """Engine label -> its spec, as the study ran it."""
        return {e.name: e for e in self.study.engines}


def ok_levels(levels: pd.DataFrame, level_set: str | None = None) -> pd.DataFrame:
    """The levels that finished ('ok'), of `level_set` when given; rows keep their order."""
    ok = levels["status"] == "ok"
    if level_set is not None:
        ok &= levels["level_set"] == level_set
    return levels[ok]


def ok_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """The measured requests that succeeded (warm-up requests left out)."""
    return requests[(requests["status"] == "ok") & ~requests["warmup"].astype(bool)]


def spec_hash(data: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def level_key(engine: str, level_set: str, concurrency: int | None, rate_rps: float | None, repeat: int = 0) -> str:
    """`<engine>__<set>__c0008`; repeats after the first add `-rep2`, `-rep3`... (1-based), so a
    study stored before repeats existed reads as its first repeat."""
    load = f"c{concurrency:04d}" if concurrency is not None else f"r{rate_rps:g}"
    return f"{engine}__{level_set}__{load}" + (f"-rep{repeat + 1}" if repeat else "")


def study_dir(study: str, root: Path | None = None) -> Path:
    return (root or RESULTS_DIR) / study


@contextlib.contextmanager
def study_lock(study: str, root: Path | None = None) -> Iterator[None]:
    """Hold the study's run lock: a second run of the same study while this one runs would
    measure while the first eats the cores, and both would write the same levels. InputError
    names the pid that holds it. The kernel drops the lock when its holder dies (flock), so the
    lock of a killed run is free again, whatever its file still says."""
    path = (root or RESULTS_DIR) / ".locks" / f"{study}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise InputError(f"study: {study!r} is being run by pid {holder}; wait for it or stop it") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def level_done(study: str, key: str, root: Path | None = None, *, keep_failed: bool = False) -> bool:
    """Stored and ok (or stored at all with `keep_failed`): a resumed run skips it. A failed level,
    or one whose level.json cannot be read, is measured again."""
    folder = study_dir(study, root) / "levels" / key
    if not (folder / LEVEL_FILE).is_file():
        return False
    try:
        info = read_level(folder)
    except ValueError:
        return False
    if level_problem(folder, info):
        return False  # damaged on disk: measured again
    return keep_failed or info.status == "ok"


def read_level(folder: Path) -> LevelInfo:
    """A stored level's `level.json`, whatever version of the kit wrote it (bench/store/schema.py).
    ValueError (pydantic's, json's, or InputError) where it cannot be read."""
    return LevelInfo.model_validate(upgrade_level((folder / LEVEL_FILE).read_text()))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def level_problem(folder: Path, info: LevelInfo, only: Collection[str] | None = None) -> str | None:
    """What is wrong with a stored level's files (missing, truncated, altered), or None; with
    `only`, of those tables alone (`requests`: a compact copy may leave the per-token tables out)."""
    for name, want in info.files.items():
        if only is not None and name.removesuffix(".parquet") not in only:
            continue
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if _sha256(f) != want.sha256:
            return f"{name} does not match its checksum (truncated or altered)"
    return None


def write_level(
    info: LevelInfo,
    requests: pd.DataFrame,
    tokens: pd.DataFrame,
    memory: pd.DataFrame,
    root: Path | None = None,
    before_rename: Callable[[], None] | None = None,
) -> Path:
    """Write one level atomically (temp folder + rename); replaces an older copy of the level.
    `before_rename` is called once every file is in the temporary folder (bench/progress/run_phases.py's `store`)."""
    final = study_dir(info.study, root) / "levels" / info.level_key
    remove_stale(final.parent, final.name)  # what a writer killed mid-write left of this level
    files: dict[str, StoredFile] = {}
    with atomic_dir(final) as tmp:
        for name, df in (("requests", requests), ("tokens", tokens), ("memory", memory)):
            path = tmp / f"{name}.parquet"
            df.to_parquet(path, index=False)
            files[path.name] = StoredFile(rows=len(df), sha256=_sha256(path))
        info = info.model_copy(update={"files": files})
        (tmp / LEVEL_FILE).write_text(info.model_dump_json(indent=2))
        if before_rename is not None:
            before_rename()
    return final


def stored_levels(study: str, engine: str, level_set: str, root: Path | None = None) -> list[LevelInfo]:
    """The stored, undamaged levels (ok or failed) of `engine` in `level_set`, in key order."""
    out = []
    for folder in sorted((study_dir(study, root) / "levels").glob(f"{engine}__{level_set}__*")):
        if level_done(study, folder.name, root, keep_failed=True):
            info = read_level(folder)
            if info.engine == engine and info.level_set == level_set:
                out.append(info)
    return out


def read_level_tables(study: str, key: str, root: Path | None = None) -> dict[str, pd.DataFrame]:
    """A stored level's tables, by name (requests, tokens, memory)."""
    folder = study_dir(study, root) / "levels" / key
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES}


def write_manifest(study: str, manifest: StudyManifest, root: Path | None = None) -> Path:
    """Write the manifest atomically. A write that fails (a full disk) leaves the old manifest
    whole, and no study folder where there was none: InputError, one line."""
    path = study_dir(study, root) / "manifest.json"
    created = not path.parent.exists()
    try:
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        raise InputError(f"results: could not write {path}: {exc.strerror or exc}") from exc
    return path


def read_manifest(study: str, root: Path | None = None) -> StudyManifest:
    """The study's manifest, whatever version of the kit wrote it (bench/store/schema.py); an
    empty one where none is stored yet."""
    p = study_dir(study, root) / "manifest.json"
    if not p.is_file():
        return StudyManifest()
    return StudyManifest.model_validate(upgrade_manifest(p.read_text()))


def list_studies(root: Path | None = None) -> list[str]:
    base = root or RESULTS_DIR
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "levels").is_dir())


def _level_row(info: LevelInfo) -> dict[str, object]:
    """The `levels` table's row of a level: its fields, then its summaries' flat columns (the one
    place the table is built from the typed records)."""
    nested = {"schema_version", "summary", "engine_config", "files", "clients", "node", "steady", "transient"}
    row: dict[str, object] = info.model_dump(exclude=nested)
    row["node_host"] = info.node.host if info.node else None
    row["client_processes"] = max(1, len(info.clients))
    row.update(info.summary.columns() if info.summary else {})
    if info.steady is not None:
        row.update(info.steady.columns())
        transient = info.transient.columns() if info.transient else {}
        row.update({f"transient_{k}": transient.get(k, float("nan")) for k in TRANSIENT_COLUMNS})
    for k, v in info.engine_config.items():
        row[f"cfg_{k}"] = v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)
    return row


def load_results(study: str, root: Path | None = None, tables: Collection[str] = TABLES) -> Results:
    """Read a stored study into tidy DataFrames (sweep parameters as columns of every table). With
    `tables` a subset, the others are empty and only the files read are checked: a comparison needs
    the requests, not the per-token rows (which a compact reference copy leaves out)."""
    d = study_dir(study, root) / "levels"
    # a dot-folder is a level being written, or what a killed writer left of one: never a level
    folders = sorted(p for p in d.glob("[!.]*") if (p / LEVEL_FILE).is_file()) if d.is_dir() else []
    if not folders:
        known = ", ".join(list_studies(root)) or "none"
        raise InputError(f"study: no results for {study!r} under {d.parent}; stored studies: {known}")
    infos, kept, damaged = [], [], {}
    for p in folders:
        try:
            info = read_level(p)
        except ValueError as exc:
            damaged[p.name] = f"{LEVEL_FILE} unreadable: {str(exc).splitlines()[0]}"
            continue
        problem = level_problem(p, info, tables)
        if problem:
            damaged[p.name] = problem
            continue
        infos.append(info)
        kept.append(p)
    for key, problem in damaged.items():
        logger.warning("level %s of study %s left out: %s (cliffbench run measures it again)", key, study, problem)
    if not infos:
        raise InputError(f"study: every stored level of {study!r} is damaged: {damaged}")
    folders = kept
    levels = pd.DataFrame([_level_row(i) for i in infos])
    sweep = levels[SWEEP_COLUMNS]

    def table(name: str) -> pd.DataFrame:
        parts = []
        if name not in tables:
            return pd.DataFrame(columns=SWEEP_COLUMNS)
        for p, info in zip(folders, infos, strict=True):
            f = p / f"{name}.parquet"
            if f.is_file():
                df = pd.read_parquet(f)
                df["level_key"] = info.level_key
                parts.append(df)
        if not parts:
            return pd.DataFrame(columns=SWEEP_COLUMNS)
        return pd.concat(parts, ignore_index=True).merge(sweep, on="level_key", how="left")

    return Results(table("requests"), table("tokens"), levels, table("memory"), read_manifest(study, root), damaged)

"""The worker side of `run --cluster` (bench/cluster/driver.py): one engine's block of levels, run on a
Ray node by the sweep itself (`run_study_async` with `only` the block's level keys) into a
temporary study folder on the node. Each level, once stored there, is read back and put on the
driver's queue, with the node it ran on; the driver stores it in the study's own folder. A block
whose engine searches its cliff (bench/search/run.py) is sent the levels of the searched level sets
the driver already holds (`Seed`): the search on the node reuses them as probes paid for, as a
local run reuses its store, and its record comes back as `SearchStored`. Nothing here imports Ray:
the queue is anything with `put`."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import psutil

from cliffbench.bench.load.driver import RequestRecord
from cliffbench.bench.plan import Level, probe_level
from cliffbench.bench.probes import LocalHardware
from cliffbench.bench.progress.reporter import LevelTask
from cliffbench.bench.progress.run_phases import OnPhase
from cliffbench.bench.search.bracket import CliffFound, read_searches, write_search
from cliffbench.bench.search.plan import probe_set, search_judge, searched_engines
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import (
    LevelInfo,
    read_level_tables,
    read_manifest,
    stored_levels,
    study_dir,
    write_level,
    write_manifest,
)
from cliffbench.bench.store.node import NodeInfo, this_node
from cliffbench.bench.store.provenance import StudyManifest
from cliffbench.bench.sweep import run_study_async
from cliffbench.engines.specs import EngineSpec

__all__ = [
    "LevelStarted",
    "LevelStored",
    "Outbox",
    "SearchStored",
    "Seed",
    "probe_of",
    "run_block",
    "search_seeds",
]

PREFIX = "cliffbench-block-"  # + the worker's pid: a folder whose worker is gone is an orphan


class Outbox(Protocol):
    def put(self, item: Any) -> None: ...


@dataclass
class LevelStarted:
    block: int
    key: str
    n_requests: int
    node: NodeInfo


@dataclass
class LevelStored:
    """A finished level (ok or failed), its tables and what the node's manifest holds so far
    (the engine's description, model hashes, the node's hardware probe)."""

    block: int
    info: LevelInfo
    tables: dict[str, pd.DataFrame]
    manifest: StudyManifest


@dataclass
class SearchStored:
    """A cliff search that ended on the node: its record, for the driver's `searches/` folder."""

    block: int
    found: CliffFound


@dataclass
class Seed:
    """What the driver holds of one engine's searched level sets: its stored levels (grid and
    probes, ok or failed) and search records."""

    levels: list[tuple[LevelInfo, dict[str, pd.DataFrame]]]
    searches: list[CliffFound]


def search_seeds(spec: StudySpec, es: EngineSpec, root: Path | None, measure: Collection[str]) -> Seed | None:
    """Engine `es`'s stored levels and search records of the level sets it searches (None: it
    searches none), but the levels the block is sent to measure (`measure`: they run as new)."""
    sets = [ls.name for ls in spec.level_sets if searched_engines(spec, ls, [es])]
    if not sets:
        return None
    levels = [
        (info, read_level_tables(spec.name, info.level_key, root))
        for name in sets
        for info in stored_levels(spec.name, es.name, name, root)
        if info.level_key not in measure
    ]
    found = [f for f in read_searches(study_dir(spec.name, root)) if f.engine == es.name and f.level_set in sets]
    return Seed(levels, found)


_LOAD = re.compile(r"__(?:c(\d+)|r([0-9.e+-]+))(?:-rep(\d+))?$")


def probe_of(spec: StudySpec, es: EngineSpec, key: str) -> Level | None:
    """The probe level of engine `es` that `key` names (None: not a level of a searched set), as
    the search measures it (bench/search/run.py): to store it failed when its block is lost."""
    m = _LOAD.search(key)
    for ls in spec.level_sets:
        if m and ls.load.search is not None and key.startswith(f"{es.name}__{ls.name}__"):
            x = float(m.group(1) or m.group(2))
            pset = probe_set(ls, search_judge(spec, ls.load.search))
            return probe_level(spec, pset, x, int(m.group(3) or 1) - 1)
    return None


class _Shipper:
    """A sweep reporter that hands each stored level on to the driver's queue."""

    def __init__(self, outbox: Outbox, block: int, root: Path, node: NodeInfo) -> None:
        self.outbox, self.block, self.root, self.node = outbox, block, root, node
        self.sent = 0

    def study_planned(self, tasks: list[LevelTask]) -> None: ...

    def level_started(self, key: str, n_requests: int) -> None:
        self.outbox.put(LevelStarted(self.block, key, n_requests, self.node))

    def request_done(self, record: RequestRecord) -> None: ...

    def level_skipped(self, key: str) -> None: ...

    def level_finished(self, info: LevelInfo) -> None:
        tables = read_level_tables(info.study, info.level_key, self.root)
        info = info.model_copy(update={"node": self.node, "files": {}})
        # put returns once the queue holds the level: a task lost after it has it stored
        self.outbox.put(LevelStored(self.block, info, tables, read_manifest(info.study, self.root)))
        self.sent += 1


def _remove_orphans() -> None:
    """The block folders of workers killed mid-block (a cancel, a lost task): no one else removes them."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = folder.name.removeprefix(PREFIX).split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def run_block(
    spec_data: dict[str, Any],
    keys: list[str],
    outbox: Outbox,
    block: int,
    hardware_probe: LocalHardware | None = None,
    ray_node_id: str = "",
    seed: Seed | None = None,
    force: bool = False,
    keep_failed: bool = False,
    on_phase: OnPhase | None = None,
) -> int:
    """Measure the levels `keys` of the study's one engine (`spec_data`: the study with that
    engine only) in the sweep's order, then its cliff searches from `seed` on; returns how many
    levels it handed on. `hardware_probe`: the roofline to use instead of probing this node
    (tests); None probes it once per block. `force`, `keep_failed`, `on_phase`: as the driver was
    given them (`on_phase` called here, on the node: bench/progress/run_phases.py)."""
    spec = StudySpec.model_validate(spec_data)
    _remove_orphans()
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-") as tmp:
        root = Path(tmp)
        shipper = _Shipper(outbox, block, root, this_node(ray_node_id))
        if hardware_probe is not None:
            write_manifest(spec.name, StudyManifest(hardware_probe=hardware_probe), root)
        folder = study_dir(spec.name, root)
        for info, tables in seed.levels if seed else []:
            write_level(info, tables["requests"], tables["tokens"], tables["memory"], root)
        for found in seed.searches if seed else []:
            write_search(folder, found)
        run = run_study_async(
            spec, force=force, reporter=shipper, root=root, only=keys, keep_failed=keep_failed, on_phase=on_phase
        )
        asyncio.run(run)
        for found in read_searches(folder) if seed else []:
            outbox.put(SearchStored(block, found))
    return shipper.sent

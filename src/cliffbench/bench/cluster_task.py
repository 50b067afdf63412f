"""The worker side of `run --cluster` (bench/cluster.py): one engine's block of levels, run on a
Ray node by the sweep itself (`run_study_async` with `only` the block's level keys) into a
temporary study folder on the node. Each level, once stored there, is read back and put on the
driver's queue, with the node it ran on; the driver stores it in the study's own folder. Nothing
here imports Ray: the queue is anything with `put`."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import psutil

from cliffbench.bench.cluster_node import NodeInfo, this_node
from cliffbench.bench.faults import pausing
from cliffbench.bench.loadgen import RequestRecord
from cliffbench.bench.progress import LevelTask
from cliffbench.bench.store import LevelInfo, read_manifest, study_dir, write_manifest
from cliffbench.bench.study import StudySpec
from cliffbench.bench.sweep import run_study_async

__all__ = ["TABLES", "LevelStarted", "LevelStored", "Outbox", "run_block"]

TABLES = ("requests", "tokens", "memory")
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
    manifest: dict[str, Any]


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
        folder = study_dir(info.study, self.root) / "levels" / info.level_key
        tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES}
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
    hardware_probe: dict[str, Any] | None = None,
    ray_node_id: str = "",
) -> int:
    """Measure the levels `keys` of the study's one engine (`spec_data`: the study with that
    engine only) in the sweep's order; returns how many it handed on. `hardware_probe`: the
    roofline to use instead of probing this node (tests); None probes it once per block."""
    spec = StudySpec.model_validate(spec_data)
    _remove_orphans()
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-") as tmp:
        root = Path(tmp)
        shipper = _Shipper(outbox, block, root, this_node(ray_node_id))
        if hardware_probe is not None:
            write_manifest(spec.name, {"hardware_probe": hardware_probe}, root)
        asyncio.run(run_study_async(spec, force=True, reporter=pausing(shipper), root=root, only=keys))
    return shipper.sent

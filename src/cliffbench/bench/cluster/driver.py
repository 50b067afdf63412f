"""`cliffbench run STUDY --cluster ray://HOST:PORT | HOST:PORT | auto | local`: a study on a Ray cluster.

Each engine's block of levels (its level sets, levels and repeats, in the local sweep's order)
runs as one Ray task (bench/cluster/task.py) on a node with the resources its spec needs: GPUs by
count, their type where the study names its hardware, and one unit of the custom resource
`cliffbench_bench` that every node the kit may use advertises once (`ray start
--resources='{"cliffbench_bench": 1}'`): at most one benchmark per node at a time, so no level
shares a machine with another. `local` starts a one-node cluster on this machine.

The driver decides what is left to run (stored ok levels are skipped, as locally), holds the
study's lock, and stores each level as its task hands it back (the store's atomic writes): a
level already back stays stored whatever happens to the node later. A task that is lost (its
worker or node dies) leaves the level it was measuring stored failed with the reason, as an
engine that dies mid-level does locally, and the block's later levels run as a fresh task. Ctrl-C
or SIGTERM on the driver cancels every task (KeyboardInterrupt in the task, so the sweep stops its
engine; the worker is killed after `cancel_grace_s` if it has not stopped by then); each task's
worker exits when its task ends (`max_calls=1`), so no engine outlives its block. Ray is imported
only here, inside functions: the package imports without the `cluster` extra.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cliffbench.bench.cluster.task import (
    LevelStarted,
    LevelStored,
    Outbox,
    SearchStored,
    Seed,
    probe_of,
    run_block,
    search_seeds,
)
from cliffbench.bench.plan import Level, engine_order, ordered_work, plan_levels
from cliffbench.bench.probes import LocalHardware
from cliffbench.bench.progress.reporter import Reporter, search_finished
from cliffbench.bench.progress.run_phases import OnPhase
from cliffbench.bench.search.bracket import write_search
from cliffbench.bench.search.plan import searched_engines
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import level_done, read_manifest, study_dir, study_lock, write_manifest
from cliffbench.bench.store.node import NodeInfo
from cliffbench.bench.store.provenance import ClusterNode, StudyManifest, collect_provenance
from cliffbench.bench.sweep import level_tasks, store_failed, store_level
from cliffbench.config import InputError
from cliffbench.engines.specs import EngineSpec

__all__ = ["BENCH_RESOURCE", "block_resources", "block_task", "connect", "parse_target", "run_study_cluster"]

BENCH_RESOURCE = "cliffbench_bench"
HEAD_RESOURCE = "node:__internal_head__"  # every Ray head node has one
INSTALL_HINT = "pip install -e '.[cluster]'"
# the study's `hardware` key -> the accelerator type Ray detects on a node (resource
# `accelerator_type:<type>`); keys not here place a block on any node with enough GPUs
ACCELERATOR_TYPE = {
    "a100-40gb": "A100",
    "a100-80gb": "A100",
    "h100-sxm": "H100",
    "h100-pcie": "H100",
    "h200": "H200",
    "l4": "L4",
    "l40s": "L40S",
}
_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:(\d{1,5})$")


def parse_target(value: str) -> str:
    """The `--cluster` value, checked: 'local', 'auto', 'ray://HOST:PORT' (a Ray client server, port
    10001 by default) or 'HOST:PORT' (the head's GCS, from a driver inside the cluster)."""
    value = value.strip()
    m = _ADDRESS.match(value)
    if value in ("local", "auto") or (m and 0 < int(m.group(2)) < 65536):
        return value
    raise InputError(f"--cluster: must be local, auto, ray://HOST:PORT or HOST:PORT, not {value!r}")


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--cluster: Ray is not installed; {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def connect(target: str, local_cpus: int = 2) -> Iterator[Any]:
    """Ray, connected to `target` (reused if this process is already connected; a connection made
    here is closed on the way out, and with it the cluster `local` started)."""
    if (m := _ADDRESS.match(target)) is not None:  # Ray waits a minute or more on an address that is not there
        host = target.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
        try:
            socket.create_connection((host, int(m.group(2))), timeout=10.0).close()
        except OSError as exc:
            raise InputError(f"--cluster: could not connect to {target}: {exc.strerror or exc}") from None
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        if target == "local":
            ray.init(
                num_cpus=local_cpus, resources={BENCH_RESOURCE: 1}, include_dashboard=False, logging_level="warning"
            )
        else:
            ray.init(address=target, logging_level="warning")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(f"--cluster: could not connect to {target}: {str(exc).splitlines()[0]}") from None
    finally:
        if on_term is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)  # ray.init's own handler exits 15: the CLI's exits 143
    try:
        yield ray
    finally:
        ray.shutdown()


def block_resources(spec: StudySpec, es: EngineSpec, cluster_gpus: float) -> dict[str, float]:
    """What engine `es`'s block asks a node for: one `cliffbench_bench` (the node to itself), a
    CPU for the harness, its GPUs (and their type where the study names its hardware), and, on a
    CPU, the host memory it reserves by a setting, in bytes."""
    need = {BENCH_RESOURCE: 1.0, "CPU": 1.0}
    if gpus := es.node_gpus(cluster_gpus):
        need["GPU"] = float(gpus)
        if (kind := ACCELERATOR_TYPE.get(spec.hardware or "")) is not None:
            need[f"accelerator_type:{kind}"] = 0.001
    if not gpus and (reserve_gib := es.host_reserve_gib()):  # vLLM's CPU KV cache; on a GPU it is GPU memory
        need["memory"] = reserve_gib * 2**30
    return need


def _misfit(ray: Any, name: str, need: dict[str, float]) -> str | None:
    """Why no live node can take engine `name`'s block (None: one can)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(all(res.get(k, 0.0) >= v for k, v in need.items()) for res in nodes):
        return None
    have = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(r.items()) if "node:" not in k) for r in nodes)
    return f"no node has what engine {name} needs ({need}); nodes: {have or 'none'}"


def block_task(
    spec_data: dict[str, Any],
    keys: list[str],
    outbox: Outbox,
    block: int,
    probes: dict[str, LocalHardware],
    hardware_probe: LocalHardware | None,
    seed: Seed | None = None,
    flags: tuple[bool, bool] = (False, False),
    on_phase: OnPhase | None = None,
) -> int:
    """The Ray task of one engine block (runs on the node): `cluster_task.run_block`, with the
    node's hardware probe from `probes` (node id -> probe, those the study stored) if it has one;
    `flags`: force, keep_failed; `on_phase`: the driver's, pickled with the task."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    probe = hardware_probe or probes.get(node_id)
    force, keep_failed = flags
    return run_block(spec_data, keys, outbox, block, probe, node_id, seed, force, keep_failed, on_phase)


@dataclass
class _Block:
    es: EngineSpec
    todo: list[Level]  # in the sweep's order; a level leaves it when it is stored
    searches: set[str]  # the level sets whose cliff search has not come back yet
    flags: tuple[bool, bool] = (False, False)  # force, keep_failed for its next task
    ref: Any = None
    node: NodeInfo | None = None
    started: str | None = None  # the level in flight on the node
    losses: int = 0


class _Driver:
    on_phase: OnPhase | None = None  # sent with each block's task, called on its node (bench/progress/run_phases.py)

    def __init__(self, ray: Any, spec: StudySpec, root: Path | None, reporter: Reporter | None, probe: Any) -> None:
        self.ray, self.spec, self.root, self.reporter, self.probe = ray, spec, root, reporter, probe
        self.blocks: dict[int, _Block] = {}
        self.manifest = read_manifest(spec.name, root)
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        self.need = {es.name: block_resources(spec, es, gpus) for es in spec.engines}
        self.remote = ray.remote(max_calls=1, max_retries=0)(block_task)
        from ray.util.queue import Queue

        # on the head node, which lives as long as the cluster: a lost node must not take the
        # levels in flight to the driver with it (Ray Train pins its state actor the same way)
        self.queue = Queue(actor_options={"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}})

    def submit(self, bid: int) -> None:
        b = self.blocks[bid]
        keys = [lv.key(b.es.name) for lv in b.todo]
        seed = search_seeds(self.spec, b.es, self.root, keys) if b.searches else None
        data = self.spec.model_copy(update={"engines": [b.es]}).model_dump(mode="json")
        need = dict(self.need[b.es.name])
        opts: dict[str, Any] = {"num_cpus": need.pop("CPU"), "num_gpus": need.pop("GPU", 0.0)}
        if "memory" in need:
            opts["memory"] = need.pop("memory")
        probes = {k: v.hardware_probe for k, v in self.manifest.cluster_nodes.items() if v.hardware_probe}
        task = self.remote.options(**opts, resources=need)
        b.ref = task.remote(data, keys, self.queue, bid, probes, self.probe, seed, b.flags, self.on_phase)
        b.flags = (False, True)  # a resubmitted block keeps what it measured, failed levels too (as locally)

    def handle(self, msg: Any) -> None:
        b = self.blocks[msg.block]
        if isinstance(msg, SearchStored):
            write_search(study_dir(self.spec.name, self.root), msg.found)
            b.searches.discard(msg.found.level_set)
            search_finished(self.reporter, b.es.name, msg.found.level_set)
            return
        if isinstance(msg, LevelStarted):
            b.node, b.started = msg.node, msg.key  # where the block runs now (a lost block's level names it)
            if self.reporter:
                self.reporter.level_started(msg.key, msg.n_requests)
            return
        assert isinstance(msg, LevelStored)
        info = msg.info
        requests, tokens, memory = (msg.tables[n] for n in ("requests", "tokens", "memory"))
        store_level(info, requests, tokens, memory, self.root)
        b.todo = [lv for lv in b.todo if lv.key(b.es.name) != info.level_key]
        b.node, b.started = info.node, None
        self._merge(msg.manifest, info.node)
        if self.reporter:
            self.reporter.level_finished(info)

    def _merge(self, node_manifest: StudyManifest, node: NodeInfo | None) -> None:
        m = self.manifest
        m.engines.update(node_manifest.engines)
        m.models.update(node_manifest.models)
        m.model_files.update(node_manifest.model_files)
        probe = node_manifest.hardware_probe
        if node is not None:
            m.cluster_nodes[node.ray_node_id or node.host] = ClusterNode(**node.model_dump(), hardware_probe=probe)
        if m.hardware_probe is None:
            m.hardware_probe = probe  # the report's roofline: the first node's
        write_manifest(self.spec.name, m, self.root)

    def drain(self, wait_s: float) -> None:
        from ray.util.queue import Empty

        with contextlib.suppress(Empty):
            self.handle(self.queue.get(block=True, timeout=wait_s))
            while True:
                self.handle(self.queue.get_nowait())

    def ended(self, bid: int) -> None:
        """Block `bid`'s task ended: every level it stored is handled (drain() first)."""
        b = self.blocks[bid]
        ref, b.ref, lost = b.ref, None, None
        try:
            self.ray.get(ref)
        except InputError as exc:  # bad input found on the node (a model that does not fit)
            raise InputError(str(getattr(exc, "cause", exc)).splitlines()[0]) from None
        except Exception as exc:  # the worker or its node died
            lost = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"
        if not b.todo and not b.searches:
            return
        where = f" on node {b.node.host}" if b.node else ""
        why = f"engine block lost{where} during the level: {lost or 'the task ended without it'}"
        probe = probe_of(self.spec, b.es, b.started) if not b.todo and b.started else None
        if b.todo or probe is not None:
            lost_level = b.todo.pop(0) if b.todo else probe
            assert lost_level is not None
            info = store_failed(self.spec, b.es, lost_level, why, self.root, probe=probe is not None)
            if self.reporter:
                self.reporter.level_finished(info)
        b.started, b.losses = None, b.losses + 1
        if not b.todo and b.losses > 2:  # a search whose probes keep losing their node: give up on it
            b.searches = set()
        if (b.todo or b.searches) and (gone := _misfit(self.ray, b.es.name, self.need[b.es.name])):
            for level in b.todo:  # the node died and no other can take the block: nothing to wait for
                info = store_failed(self.spec, b.es, level, f"engine block lost: {gone}", self.root)
                if self.reporter:
                    self.reporter.level_finished(info)
            b.todo, b.searches = [], set()
        if b.todo or b.searches:
            self.submit(bid)  # its later levels on a fresh worker, as locally on a fresh engine

    def run(self) -> None:
        for bid in self.blocks:
            self.submit(bid)
        while running := {b.ref: bid for bid, b in self.blocks.items() if b.ref is not None}:
            self.drain(0.5)
            done, _ = self.ray.wait(list(running), num_returns=len(running), timeout=0)
            if done:
                self.drain(0.0)  # what the ended tasks put before they ended
                for ref in done:
                    self.ended(running[ref])

    def cancel(self, grace_s: float) -> None:
        refs = [b.ref for b in self.blocks.values() if b.ref is not None]
        for ref in refs:
            self.ray.cancel(ref, force=False)  # KeyboardInterrupt in the task: the sweep stops its engine
        _, left = self.ray.wait(refs, num_returns=len(refs), timeout=grace_s)
        for ref in left:
            self.ray.cancel(ref, force=True)  # the worker killed (its engine with it)
        if left:
            self.ray.wait(left, num_returns=len(left), timeout=10.0)
        with contextlib.suppress(Exception):
            self.drain(0.0)  # levels finished just before the cancel stay stored

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.queue.shutdown(force=True)


def run_study_cluster(
    spec: StudySpec,
    target: str,
    *,
    force: bool = False,
    reporter: Reporter | None = None,
    root: Path | None = None,
    keep_failed: bool = False,
    hardware_probe: LocalHardware | None = None,
    cancel_grace_s: float = 30.0,
    on_phase: OnPhase | None = None,
) -> None:
    """Run the study's levels not stored yet (as `sweep.run_study`) on the Ray cluster `target`
    (`parse_target`), one task per engine block. `hardware_probe`: the roofline the nodes store
    instead of probing themselves (tests); `on_phase`: sent with each block, called on its node
    (bench/progress/run_phases.py)."""
    target = parse_target(target)
    ray_module()
    with study_lock(spec.name, root):
        work = ordered_work(spec, plan_levels(spec))
        stored = {
            lv.key(es.name)
            for es, lv in work
            if not force and level_done(spec.name, lv.key(es.name), root, keep_failed=keep_failed)
        }
        if reporter:  # the plan without its requests (the nodes build them): level counts, no token-based ETA
            reporter.study_planned(level_tasks(spec, work, {lv.key(es.name) for es, lv in work} - stored, {}))
            for es, lv in work:
                if lv.key(es.name) in stored:
                    reporter.level_skipped(lv.key(es.name))
        blocks = [
            _Block(
                es,
                [lv for e, lv in work if e.name == es.name and lv.key(es.name) not in stored],
                {ls.name for ls in spec.level_sets if searched_engines(spec, ls, [es])},
                (force, keep_failed),
            )
            for es in engine_order(spec, 0)
        ]
        if not any(b.todo or b.searches for b in blocks):
            return
        fresh = not study_dir(spec.name, root).exists()
        with connect(target) as ray:
            driver = _Driver(ray, spec, root, reporter, hardware_probe)
            driver.on_phase = on_phase
            try:
                driver.blocks = {i: b for i, b in enumerate(b for b in blocks if b.todo or b.searches)}
                for b in driver.blocks.values():
                    if why := _misfit(ray, b.es.name, driver.need[b.es.name]):
                        start = f"ray start --resources='{{\"{BENCH_RESOURCE}\": 1}}'"
                        raise InputError(f"--cluster: {why}. Start each node with {start}")
                driver.manifest = driver.manifest.stamped(collect_provenance())
                driver.manifest.study, driver.manifest.cluster = spec, target
                write_manifest(spec.name, driver.manifest, root)
                try:
                    driver.run()
                except BaseException:
                    driver.cancel(cancel_grace_s)
                    raise
            except InputError:
                # bad input found on a node (a model that does not fit): as locally, a study this run
                # created holds nothing measured, so nothing half-written is left behind
                if fresh and not any(study_dir(spec.name, root).glob("levels/*/*")):
                    shutil.rmtree(study_dir(spec.name, root), ignore_errors=True)
                raise
            finally:
                driver.close()

"""`run --cluster` (bench/cluster/driver.py) on a Ray cluster of two simulated nodes on this machine
(ray.cluster_utils.Cluster, one CPU and one `cliffbench_bench` each), shared by the module and
shut down at its end with no Ray process left. The real llama.cpp engine on the bundled model:
the levels stored equal a local run's in schema, each records its node, no two engine blocks
overlap on a node; a Ctrl-C on the driver stops the task mid-level and its worker exits; a worker
killed mid-level leaves that level stored failed, the block's other levels measured, exit 1.
The argument checks at the top start nothing (fast tier)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import yaml
from typer.testing import CliRunner

from cliffbench.bench.cluster.driver import block_resources, parse_target, ray_module, run_study_cluster
from cliffbench.bench.search.bracket import read_searches
from cliffbench.bench.spec.search import SearchSpec
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import LevelInfo, load_results
from cliffbench.bench.sweep import run_study
from cliffbench.cli import app
from cliffbench.config import InputError
from cliffbench.engines.specs import FakeSpec, LlamaCppSerialSpec, VllmSpec
from cliffbench.report.params import BenchmarkParams, validate_params
from tests.conftest import FIXED_PROBE, fix_probe
from tests.faults import Recorder, level_files, paused_cli_process, project_root
from tests.faults.paused_cli import PAUSED

RAY_PROCESSES = ("raylet", "gcs_server")


# -- arguments (no Ray started) ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["local", "auto", "ray://head:10001", "ray://10.0.0.5:10001", "10.0.0.5:6379"])
def test_targets_accepted(value: str) -> None:
    assert parse_target(value) == value


@pytest.mark.parametrize("value", ["", "head", "ray://head", "http://head:10001", "ray://head:0", "ray://h:99999"])
def test_bad_target_one_line(value: str) -> None:
    with pytest.raises(InputError, match=r"^--cluster: must be local, auto, ray://HOST:PORT or HOST:PORT"):
        parse_target(value)


def test_bad_target_exits_2_before_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--engine", "llamacpp-serial", "--cluster", "head:port"])
    assert result.exit_code == 2, result.output
    assert "--cluster: must be local, auto" in " ".join(result.output.split())


def test_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(InputError, match=r"--cluster: Ray is not installed; pip install -e '\.\[cluster\]'"):
        ray_module()
    result = CliRunner().invoke(app, ["run", "--engine", "llamacpp-serial", "--cluster", "local"])
    assert result.exit_code == 2 and "pip install -e '.[cluster]'" in result.output


@pytest.mark.parametrize("target", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_unreachable_cluster_one_line_nothing_stored(tmp_path: Path, target: str) -> None:
    pytest.importorskip("ray")
    spec = StudySpec(name="nowhere", engines=[{"kind": "fake"}], tokenizer="fake")
    with pytest.raises(InputError, match=rf"^--cluster: could not connect to {target}: Connection refused$"):
        run_study_cluster(spec, target, root=tmp_path)
    assert not (tmp_path / "nowhere").exists()


def test_report_parameter_cluster_is_checked_before_any_notebook() -> None:
    assert validate_params(BenchmarkParams, {"cluster": "ray://head:10001"}).cluster == "ray://head:10001"
    assert validate_params(BenchmarkParams, {}).cluster == ""  # this machine
    with pytest.raises(InputError, match=r"^parameter cluster: .*must be local, auto, ray://HOST:PORT or HOST:PORT"):
        validate_params(BenchmarkParams, {"cluster": "head"})


def test_block_resources() -> None:
    spec = StudySpec(name="s", engines=[{"kind": "fake"}], hardware="h100-sxm")
    assert block_resources(spec, FakeSpec(), 8.0) == {"cliffbench_bench": 1.0, "CPU": 1.0}
    assert block_resources(spec, LlamaCppSerialSpec(), 8.0) == {"cliffbench_bench": 1.0, "CPU": 1.0}
    tp2 = VllmSpec(tensor_parallel_size=2)
    assert block_resources(spec, tp2, 8.0) == {
        "cliffbench_bench": 1.0,
        "CPU": 1.0,
        "GPU": 2.0,
        "accelerator_type:H100": 0.001,
    }
    on_cpu = block_resources(spec, VllmSpec(kv_cache_gib=2.0), 0.0)  # 'auto' on a CPU cluster: vLLM's CPU build
    assert "GPU" not in on_cpu and on_cpu["memory"] == 2.0 * 2**30  # its KV cache, in host memory
    offload = LlamaCppSerialSpec(n_gpu_layers=-1, split_mode="layer", tensor_split=[1, 1, 1])
    assert block_resources(spec, offload, 0.0)["GPU"] == 3.0


# -- a two-node cluster ------------------------------------------------------------------------------


def _ray_processes(since: float) -> list[str]:
    out = []
    for p in psutil.process_iter(["name", "create_time"]):
        if p.info["name"] in RAY_PROCESSES and p.info["create_time"] >= since:
            out.append(f"{p.pid} {p.info['name']}")
    return out


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A head and one more node, each `{"cliffbench_bench": 1}` and one CPU; this process connected."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    t0 = time.time() - 1
    bench: dict[str, Any] = {"num_cpus": 1, "resources": {"cliffbench_bench": 1}}
    c: Any = Cluster(initialize_head=True, head_node_args={**bench, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1, resources={"cliffbench_bench": 1})
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="warning")
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
    end = time.monotonic() + 15
    while (left := _ray_processes(t0)) and time.monotonic() < end:
        time.sleep(0.2)
    assert not left, f"Ray processes left running: {left}"


@pytest.fixture
def cluster(ray_cluster: Any) -> str:
    """The module cluster's address."""
    return str(ray_cluster.address)


def _study(name: str, engines: list[str], concurrency: list[int]) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "tokenizer": "fake",
            "busy": {"reruns": 0},
            "engines": [{"kind": "llamacpp-serial", "label": e, "n_ctx": 256, "n_threads": 1} for e in engines],
            "level_sets": [
                {
                    "name": "chat",
                    "workload": {"prompt": {"mean": 16}, "output": {"mean": 8}},
                    "load": {"concurrency": concurrency, "requests_per_level": 3, "warmup_requests": 0},
                }
            ],
        }
    )


def _search_study(name: str) -> StudySpec:
    """Engine `a` at 1 and 4 users, then its cliff searched from 1 to 4 users (every load meets)."""
    spec = _study(name, ["a"], [1, 4])
    chat = spec.level_sets[0]
    search = {"low": 1, "high": 4, "slo": {"ttft_p50": 60.0}, "max_repeats": 2}
    load = chat.load.model_copy(update={"search": SearchSpec.model_validate(search)})
    return spec.model_copy(update={"level_sets": [chat.model_copy(update={"load": load})]})


class _Timeline(Recorder):
    """The driver's view: (event, key, node id) in the order the levels came back."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []

    def level_started(self, key: str, n_requests: int) -> None:
        self.events.append(("started", key))

    def level_finished(self, info: LevelInfo) -> None:
        super().level_finished(info)
        self.events.append(("finished", info.level_key))


def _schema(root: Path, study: str) -> dict[str, Any]:
    levels = root / study / "levels"
    out: dict[str, Any] = {}
    for folder in sorted(levels.iterdir()):
        info = json.loads((folder / "level.json").read_text())
        out[folder.name] = {
            "files": sorted(p.name for p in folder.iterdir()),
            "fields": sorted(k for k in info if k != "node"),
            "status": info["status"],
            **{
                n: list(pd.read_parquet(folder / f"{n}.parquet").dtypes.astype(str).items())
                for n in ("requests", "tokens", "memory")
            },
        }
    return out


@pytest.mark.engine
def test_cluster_run_equals_local_and_keeps_one_block_per_node(
    cluster: str, model: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")
    spec = _study("cluster-three", ["a", "b", "c"], [1, 2])
    fix_probe(monkeypatch)
    run_study(spec, root=tmp_path / "local")
    seen = _Timeline()
    probe = FIXED_PROBE
    run_study_cluster(spec, cluster, reporter=seen, root=tmp_path / "ray", hardware_probe=probe)

    local, remote = _schema(tmp_path / "local", spec.name), _schema(tmp_path / "ray", spec.name)
    assert list(remote) == list(local) and len(remote) == 6
    assert remote == local  # same files, LevelInfo fields, columns and dtypes, all ok
    assert {v["status"] for v in remote.values()} == {"ok"}
    lv = load_results(spec.name, root=tmp_path / "ray").levels
    assert list(lv.columns) == list(load_results(spec.name, root=tmp_path / "local").levels.columns)

    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    node_of = {i.level_key: i.node.ray_node_id for i in seen.finished if i.node is not None}
    assert len(node_of) == 6 and set(node_of.values()) <= node_ids
    for engine in "abc":  # a block runs on one node
        assert len({n for k, n in node_of.items() if k.startswith(f"{engine}__")}) == 1
    # one benchmark per node: on each node, one block's levels all come back before the next starts
    for node in set(node_of.values()):
        order = [k.split("__")[0] for ev, k in seen.events if node_of.get(k) == node]
        blocks = [e for i, e in enumerate(order) if i == 0 or order[i - 1] != e]
        assert len(blocks) == len(set(blocks)), f"blocks interleaved on node {node}: {order}"
    manifest = json.loads((tmp_path / "ray" / spec.name / "manifest.json").read_text())
    assert set(manifest["engines"]) == {"a", "b", "c"} and manifest["cluster"] == cluster
    assert set(manifest["cluster_nodes"]) <= node_ids

    again = Recorder()  # resumed: every level stored, nothing submitted
    run_study_cluster(spec, cluster, reporter=again, root=tmp_path / "ray", hardware_probe=probe)
    assert sorted(again.skipped) == sorted(local) and not again.finished


@pytest.mark.engine
def test_cliff_search_runs_on_the_cluster_and_resumes(
    cluster: str, model: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block's search runs on the node after its grid: its probes come back stored and marked
    like a local run's, its record lands in the driver's searches/; a resumed run sends the stored
    levels to the node, which measures nothing and leaves the record as it was."""
    spec = _search_study("cluster-search")
    fix_probe(monkeypatch)
    run_study(spec, root=tmp_path / "local")
    probe = FIXED_PROBE
    seen = _Timeline()
    run_study_cluster(spec, cluster, reporter=seen, root=tmp_path / "ray", hardware_probe=probe)

    local, remote = _schema(tmp_path / "local", spec.name), _schema(tmp_path / "ray", spec.name)
    assert remote == local  # the grid (1, 4 users) and the probe at 2 users, the same files and fields
    assert "a__chat__c0002" in remote
    probes = [i for i in seen.finished if i.probe]
    # the grid's 3 requests a level hold no interval of p50: the search adds repeats to 1 and 4 users too
    assert "a__chat__c0002" in {i.level_key for i in probes} and all(i.node is not None for i in probes)
    (found,) = read_searches(tmp_path / "ray" / spec.name)
    (mine,) = read_searches(tmp_path / "local" / spec.name)
    assert (found.engine, found.meets_up_to, found.first_miss) == ("a", 4.0, None) == (mine.engine, 4.0, None)
    assert found.probes_measured == len(probes) == mine.probes_measured
    record = next((tmp_path / "ray" / spec.name / "searches").glob("*.json")).read_text()

    again = Recorder()
    run_study_cluster(spec, cluster, reporter=again, root=tmp_path / "ray", hardware_probe=probe)
    assert not again.finished and len(_schema(tmp_path / "ray", spec.name)) == len(remote)
    assert next((tmp_path / "ray" / spec.name / "searches").glob("*.json")).read_text() == record


@pytest.mark.engine
def test_bad_input_found_on_a_node_is_one_line_nothing_stored(cluster: str, model: object, tmp_path: Path) -> None:
    spec = _study("cluster-too-long", ["a"], [1])
    spec = spec.model_copy(update={"engines": [LlamaCppSerialSpec(label="a", n_ctx=65536, n_threads=1)]})
    with pytest.raises(InputError, match=r"n_ctx: .*exceeds the model's context length \(8192"):
        run_study_cluster(spec, cluster, root=tmp_path, hardware_probe=FIXED_PROBE)
    assert not (tmp_path / spec.name).exists()


class _PausedClusterCli:
    """`cliffbench run STUDY --cluster auto` against the module's cluster, its block told to pause
    at `phase` (the pause line comes back through Ray's worker log, with the worker's pid)."""

    def __init__(self, root: Path, cluster: str, study: Path, phase: str, pause_s: float) -> None:
        env = {**os.environ, "CLIFFBENCH_ROOT": str(root), "RAY_ADDRESS": cluster}
        args = ("run", str(study), "--wait-quiet-s", "0", "--cluster", "auto")
        self.proc = paused_cli_process(phase, pause_s, *args, env=env)
        self.lines: list[str] = []
        self.worker_pid: int | None = None
        self.paused = threading.Event()
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if f"{PAUSED} " in line and self.worker_pid is None:
                self.worker_pid = int(line.rsplit("pid=", 1)[1].split()[0])
                self.paused.set()

    def wait_paused(self, timeout_s: float) -> int:
        end = time.monotonic() + timeout_s
        while not self.paused.wait(0.5):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.proc.kill()
                self.finish(10.0)
                raise AssertionError("never paused:\n" + "".join(self.lines)[-3000:])
        assert self.worker_pid is not None
        return self.worker_pid

    def finish(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def output(self) -> str:
        return "".join(self.lines)


def _gone(pid: int, within_s: float) -> bool:
    end = time.monotonic() + within_s
    while psutil.pid_exists(pid) and time.monotonic() < end:
        time.sleep(0.2)
    try:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _write(tmp_path: Path, spec: StudySpec) -> tuple[Path, Path]:
    root = project_root(tmp_path)
    results = root / "data" / "results"
    ray = pytest.importorskip("ray")
    probe = FIXED_PROBE.model_dump(mode="json")
    nodes = {n["NodeID"]: {"host": "node", "hardware_probe": probe} for n in ray.nodes() if n["Alive"]}
    (results / spec.name).mkdir()  # each node's hardware probe, stored: the nodes do not probe
    (results / spec.name / "manifest.json").write_text(json.dumps({"hardware_probe": probe, "cluster_nodes": nodes}))
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return study, results / spec.name / "levels"


@pytest.mark.engine
@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_on_the_driver_stops_the_block(
    cluster: str, model: object, tmp_path: Path, sig: signal.Signals, exit_code: int
) -> None:
    spec = _study("cluster-cancel", ["a"], [1, 2])
    study, levels = _write(tmp_path, spec)
    run = _PausedClusterCli(tmp_path / "root", cluster, study, "level@a__chat__c0002", pause_s=4.0)
    worker = run.wait_paused(timeout_s=120.0)
    before = level_files(levels / "a__chat__c0001")
    assert psutil.pid_exists(worker)
    run.proc.send_signal(sig)
    code = run.finish(timeout_s=90.0)
    out = run.output()[-4000:]
    assert code == exit_code, out
    assert sig == signal.SIGTERM or "interrupted: engines stopped; finished levels are stored" in out
    assert _gone(worker, 20.0), f"the block's worker {worker} is still running"
    assert level_files(levels / "a__chat__c0001") == before
    assert sorted(p.name for p in levels.iterdir()) == ["a__chat__c0001"]  # the level cut short: absent


@pytest.mark.engine
def test_worker_killed_mid_level_stores_it_failed(cluster: str, model: object, tmp_path: Path) -> None:
    spec = _study("cluster-killed", ["a"], [1, 2, 3])
    study, levels = _write(tmp_path, spec)
    run = _PausedClusterCli(tmp_path / "root", cluster, study, "level@a__chat__c0002", pause_s=120.0)
    worker = run.wait_paused(timeout_s=120.0)
    before = level_files(levels / "a__chat__c0001")
    psutil.Process(worker).kill()
    code = run.finish(timeout_s=150.0)
    out = run.output()[-4000:]
    assert code == 1, out  # the study ran to its end, one level failed
    assert "1 level(s) failed: a__chat__c0002" in out, out
    assert level_files(levels / "a__chat__c0001") == before
    lv = load_results(spec.name, root=levels.parent.parent).levels.set_index("level_key")
    assert lv["status"].to_dict() == {"a__chat__c0001": "ok", "a__chat__c0002": "failed", "a__chat__c0003": "ok"}
    assert str(lv.loc["a__chat__c0002", "error"]).startswith("engine block lost on node ")
    assert lv.loc["a__chat__c0001", "node_host"] and lv.loc["a__chat__c0003", "node_host"]
    # the killed worker's block folder, removed by the block that ran next on this machine
    assert not list(Path(tempfile.gettempdir()).glob(f"cliffbench-block-{worker}-*"))


@pytest.mark.engine
def test_worker_killed_mid_probe_stores_it_failed_and_the_search_goes_on(
    cluster: str, model: object, tmp_path: Path
) -> None:
    """A search's probe (2 users, between the grid's 1 and 4) loses its worker: the probe is stored
    failed (marked `probe`), the search goes on in a fresh task, counts it as a miss and ends."""
    spec = _search_study("cluster-killed-probe")
    study, levels = _write(tmp_path, spec)
    run = _PausedClusterCli(tmp_path / "root", cluster, study, "level@a__chat__c0002", pause_s=120.0)
    worker = run.wait_paused(timeout_s=120.0)
    psutil.Process(worker).kill()
    code = run.finish(timeout_s=150.0)
    out = run.output()[-4000:]
    assert code == 1 and "a__chat__c0002" in out, out
    info = LevelInfo.model_validate_json((levels / "a__chat__c0002" / "level.json").read_text())
    assert (info.status, info.probe) == ("failed", True) and info.error.startswith("engine block lost on node ")
    (found,) = read_searches(levels.parent)
    assert (found.meets_up_to, found.first_miss) == (1.0, 2.0), found.path_text()


@pytest.mark.engine
def test_node_lost_mid_level(ray_cluster: Any, model: object, tmp_path: Path) -> None:
    """The node running a block dies mid-level (its raylet and workers killed: the module's last
    test, the cluster is one node after it): that level is stored failed naming the node, the
    level before stays stored, and the block's last level runs on the node that is left."""
    ray = pytest.importorskip("ray")
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head_id = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"])
    other = next(n for n in ray_cluster.worker_nodes)

    class _Holder:  # defined here: pickled by value, the workers need not import the tests
        def ready(self) -> bool:
            return True

    # the head's benchmark slot held, so the block starts on the other node
    hold = (
        ray.remote(num_cpus=0, resources={"cliffbench_bench": 1})(_Holder)
        .options(scheduling_strategy=NodeAffinitySchedulingStrategy(head_id, soft=False))
        .remote()
    )
    ray.get(hold.ready.remote())
    spec = _study("cluster-node-lost", ["a"], [1, 2, 3])
    started = threading.Event()

    class _Watch(Recorder):
        def level_started(self, key: str, n_requests: int) -> None:
            if key == "a__chat__c0002":
                started.set()

    seen = _Watch()
    probe = FIXED_PROBE
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            run_study_cluster(spec, ray_cluster.address, reporter=seen, root=tmp_path, hardware_probe=probe)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        assert started.wait(120.0), "level a__chat__c0002 never started"
        ray_cluster.remove_node(other)
        ray.kill(hold)  # the head may take the block's last level now
    finally:
        driver.join(timeout=150.0)
    assert not driver.is_alive() and not errors, errors
    lv = load_results(spec.name, root=tmp_path).levels.set_index("level_key")
    assert lv["status"].to_dict() == {"a__chat__c0001": "ok", "a__chat__c0002": "failed", "a__chat__c0003": "ok"}
    assert str(lv.loc["a__chat__c0002", "error"]).startswith("engine block lost on node ")
    nodes = {i.level_key: i.node.ray_node_id for i in seen.finished if i.node is not None}
    assert nodes["a__chat__c0001"] != head_id and nodes["a__chat__c0003"] == head_id

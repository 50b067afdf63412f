"""Fault injection: what a study does when the things around it break (a server that stalls,
garbles or drops its stream; a full disk; a second run or a stale lock; malformed study files).

Every test here checks the same four things: the levels stored before the fault are intact, the
failure is recorded with its reason, no process or thread of the run is left, and the CLI's exit
code where a CLI is involved. Most use `fake` engines, the `fake` tokenizer and a stub of an
OpenAI-compatible server; an engine killed mid-level (test_engine_dies.py) and the CLI killed at
each phase (test_kill_phases.py) use the real llama.cpp and vLLM engines on the bundled model.
`test_zz_no_processes_left.py` runs last.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from cliffbench.bench.progress.reporter import LevelTask
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import LevelInfo
from cliffbench.config import DATA_DIR
from tests.conftest import cli_process
from tests.faults.paused_cli import PAUSED

# `busy.reruns: 0`: a level measured while the machine is busy is stored flagged, not measured
# again, so the tests' timings do not depend on what else runs on the machine
NO_RERUNS: dict[str, Any] = {"reruns": 0}


def fake_engine(label: str = "wide", **kw: Any) -> dict[str, Any]:
    return {"kind": "fake", "label": label, "ttft_s": 0.005, "itl_s": 0.002, "max_batch": 8, **kw}


def study(name: str, *engines: dict[str, Any], concurrency: list[int] | None = None, **load: Any) -> StudySpec:
    """A study of `engines` (default: one fast `fake`) on the `fake` tokenizer: 16-token prompts,
    10-token answers, 4 requests per level, no warm-up."""
    load = {"concurrency": concurrency or [1, 2, 4], "requests_per_level": 4, "warmup_requests": 0, **load}
    return StudySpec.model_validate(
        {
            "name": name,
            "tokenizer": "fake",
            "busy": NO_RERUNS,
            "engines": list(engines) or [fake_engine()],
            "level_sets": [
                {"name": "chat", "workload": {"prompt": {"mean": 16}, "output": {"mean": 10}}, "load": load}
            ],
        }
    )


class Recorder:
    """A sweep reporter that keeps the finished and skipped levels; `on_finished` runs after each
    finished level (the stub server's fault is switched on there)."""

    def __init__(self, on_finished: Callable[[LevelInfo], None] | None = None) -> None:
        self.finished: list[LevelInfo] = []
        self.skipped: list[str] = []
        self.on_finished = on_finished

    def study_planned(self, tasks: list[LevelTask]) -> None: ...

    def level_started(self, key: str, n_requests: int) -> None: ...

    def request_done(self, record: Any) -> None: ...

    def level_finished(self, info: LevelInfo) -> None:
        self.finished.append(info)
        if self.on_finished is not None:
            self.on_finished(info)

    def level_skipped(self, key: str) -> None:
        self.skipped.append(key)


def run_study_on_thread(
    spec: StudySpec, root: Path, reporter: Any, timeout_s: float
) -> tuple[float, list[BaseException], threading.Thread]:
    """Run the study on a thread, waiting at most `timeout_s`: (seconds waited, what the run raised,
    the thread, still alive if it outran the timeout) so that a hang fails a test instead of it."""
    from cliffbench.bench import sweep

    errors: list[BaseException] = []

    def run() -> None:
        try:
            sweep.run_study(spec, root=root, reporter=reporter)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="sweep")
    t0 = time.monotonic()
    thread.start()
    thread.join(timeout=timeout_s)
    return time.monotonic() - t0, errors, thread


def level_files(folder: Path) -> dict[str, bytes]:
    """Every file of a stored level, by name: to check that a level stays byte for byte."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def leftovers(levels: Path) -> list[str]:
    """Temporary level folders (`.tmp-*`, `.old-*` of files.atomic_dir) left under `levels`."""
    return sorted(p.name for p in levels.glob(".*")) if levels.is_dir() else []


def assert_nothing_left(threads_before: set[threading.Thread], children_before: set[int]) -> None:
    """No thread started since `threads_before` is still alive (each gets 5 s to finish), and no
    child process of this one that was not there before."""
    for t in set(threading.enumerate()) - threads_before:
        t.join(timeout=5)
        assert not t.is_alive(), f"thread left running: {t.name}"
    children = {p.pid: p for p in psutil.Process().children(recursive=True)}
    new = [f"{p.pid} {p.name()}" for pid, p in children.items() if pid not in children_before]
    assert not new, f"processes left running: {new}"


def snapshot() -> tuple[set[threading.Thread], set[int]]:
    """The threads and child processes before a run (for `assert_nothing_left`)."""
    return set(threading.enumerate()), {p.pid for p in psutil.Process().children(recursive=True)}


def project_root(tmp_path: Path) -> Path:
    """A project root for a CLI run (CLIFFBENCH_ROOT) whose data/ is this one's (the prepared
    model, the corpus) but for data/results, which is empty and its own."""
    root = tmp_path / "root"
    (root / "data" / "results").mkdir(parents=True)
    for entry in DATA_DIR.iterdir():
        if entry.name != "results":
            (root / "data" / entry.name).symlink_to(entry)
    return root


PAUSED_CLI = Path(__file__).with_name("paused_cli.py")


def paused_cli_process(phase: str, pause_s: float, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`cliffbench ARGS` (`cli_process`) told to pause for `pause_s` at `phase` (`PHASE[@WHERE]`)
    of its run: tests/faults/paused_cli.py."""
    return cli_process(*args, env=env, entry=(str(PAUSED_CLI), phase, str(pause_s)))


class PausedCli:
    """`cliffbench run STUDY` in the background under `root`, told to pause at `phase`
    (`paused_cli_process`). `wait_paused()` returns once it is paused there; the output is read on
    a thread of its own so that the CLI never blocks on a full pipe."""

    def __init__(self, root: Path, study: Path, phase: str, pause_s: float = 60.0) -> None:
        env = {**os.environ, "CLIFFBENCH_ROOT": str(root)}
        self.proc = paused_cli_process(phase, pause_s, "run", str(study), "--wait-quiet-s", "0", env=env)
        self.lines: list[str] = []
        self.paused = threading.Event()
        self.seen: dict[int, psutil.Process] = {}  # every descendant seen, to check none is left
        self._reader = threading.Thread(target=self._read, name=f"cli-output-{self.proc.pid}")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(f"{PAUSED} "):
                self.paused.set()

    def watch(self) -> None:
        """Note the CLI's descendants alive now."""
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def wait_paused(self, timeout_s: float = 120.0) -> None:
        end = time.monotonic() + timeout_s
        while not self.paused.is_set() and self.proc.poll() is None and time.monotonic() < end:
            self.watch()
            self.paused.wait(0.1)
        self.watch()
        assert self.paused.is_set(), f"the CLI never paused:\n{self.output()[-3000:]}"

    def finish(self, timeout_s: float = 60.0) -> int:
        """Wait for the CLI to exit (killing it if it does not) and return its exit code."""
        try:
            self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        return self.proc.returncode

    def output(self) -> str:
        return "".join(self.lines)

    def left_after(self, grace_s: float = 10.0) -> list[str]:
        """The descendants seen during the run still alive `grace_s` after the CLI exited (each
        is killed then, so that a failed test leaves nothing behind either)."""
        end = time.monotonic() + grace_s
        while True:
            alive = [p for p in self.seen.values() if _running(p)]
            if not alive or time.monotonic() > end:
                break
            time.sleep(0.2)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        return [f"{p.pid} {_cmdline(p)[:100]}" for p in alive]


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()) or p.name()
    except psutil.Error:
        return ""


# what the kit's engines and servers carry in their command line: vLLM's engine core and workers
# (their process titles), the reference servers (llama-server, `vllm serve`, llama-cpp-python's)
ENGINE_MARKERS = ("VLLM::", "llama-server", "vllm serve", "llama_cpp.server")


def _kit(p: psutil.Process, engines_only: bool = False) -> bool:
    """An engine or server of the kit, or (unless `engines_only`) a `cliffbench` CLI or a notebook
    kernel of `cliffbench report`. Told by whole arguments, not substrings: a checkout in a folder
    named cliffbench puts that name in every path."""
    try:
        argv = p.cmdline() or [p.name()]
    except psutil.Error:
        return False
    if any(m in " ".join(argv) for m in ENGINE_MARKERS):
        return True
    cli = any(a == "cliffbench" or a.endswith("/cliffbench") or a.startswith("cliffbench.") for a in argv)
    return not engines_only and (cli or any("ipykernel" in a for a in argv))


def _orphaned(p: psutil.Process) -> bool:
    """Re-parented away from the kit: to init, or to a subreaper that is no Python process."""
    try:
        parent = p.parent()
        return parent is None or parent.pid == 1 or not any(m in _cmdline(parent) for m in ("python", "VLLM::"))
    except psutil.Error:
        return False


def kit_processes(*, held: bool = False) -> list[str]:
    """`pid cmdline` of each kit process the tests may have left running: a descendant of this
    pytest process, or an orphaned engine or server started since this session began (a killed
    parent's). `held`: also the vLLM processes under this pytest process, which belong to an
    in-process engine a session fixture may still hold (tests/conftest.py checks them at the very
    end). Anything else on the machine (a `make report` beside the tests, with its own engines
    under its own parent) is not this suite's and is left out."""
    me = psutil.Process()
    found: dict[int, psutil.Process] = {}
    for p in me.children(recursive=True):
        if _kit(p) and (held or "VLLM::" not in _cmdline(p)) and _running(p):
            found[p.pid] = p
    for p in psutil.process_iter(["create_time"]):
        try:
            recent = (p.info["create_time"] or 0) >= me.create_time()
        except (psutil.Error, KeyError):
            continue
        if recent and _kit(p, engines_only=True) and _running(p) and _orphaned(p):
            found[p.pid] = p
    return [f"{pid} {_cmdline(p)[:120]}" for pid, p in sorted(found.items()) if _cmdline(p)]


def wait_no_kit_processes(grace_s: float = 5.0, *, held: bool = False) -> list[str]:
    """kit_processes() once those being stopped right now have had `grace_s` to exit."""
    end = time.monotonic() + grace_s
    left = kit_processes(held=held)
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = kit_processes(held=held)
    return left

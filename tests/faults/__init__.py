"""Fault injection: what a study does when the things around it break (a server that stalls,
garbles or drops its stream; a full disk; a second run or a stale lock; malformed study files).

Every test here checks the same four things: the levels stored before the fault are intact, the
failure is recorded with its reason, no process or thread of the run is left, and the CLI's exit
code where a CLI is involved. No model and no real engine: `fake` engines, the `fake` tokenizer
and an in-process stub of an OpenAI-compatible server. `test_zz_no_processes_left.py` runs last.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from cliffbench.bench.progress import LevelTask
from cliffbench.bench.store import LevelInfo
from cliffbench.bench.study import StudySpec

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

"""The terminal view of a study run by notebook 10: its progress file turned into the bar's text,
and the watcher `cliffbench report` runs beside papermill (plain lines when not on a terminal)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from cliffbench.bench.progress.reporter import LevelTask, ProgressFile
from cliffbench.bench.progress.terminal import (
    StudyWatcher,
    clock_text,
    displayed_eta_s,
    progress_description,
    read_progress,
)
from tests.conftest import level_info

STATE: dict[str, Any] = {
    "started_at": "2025-01-01T00:00:00+00:00",
    "updated_at": 1000.0,
    "n_levels": 96,
    "done": 6,
    "running": True,
    "index": 7,
    "key": "vllm__chat__c0016-rep2",
    "engine": "vllm",
    "level_set": "chat",
    "users": 16,
    "rate_rps": None,
    "repeat": 2,
    "repeats": 3,
    "tok_s": 412.3,
    "elapsed_s": 120.0,
    "eta_s": 754.0,
    "level_left_s": 30.0,
    "history": [],
    "eta_error": None,
}


def test_description_of_a_running_level() -> None:
    assert progress_description(STATE) == "level 7/96  vllm  chat  16 users  repeat 2/3  412 tok/s"


def test_description_between_levels_and_at_the_end() -> None:
    starting = {**STATE, "running": False, "tok_s": None, "users": 1}
    assert progress_description(starting) == "level 7/96  vllm  chat  1 user  repeat 2/3  starting"
    rate = {**STATE, "users": None, "rate_rps": 2.5, "tok_s": None}
    assert progress_description(rate) == "level 7/96  vllm  chat  2.5 req/s  repeat 2/3"
    assert progress_description({**STATE, "done": 96}) == "study done: 96 levels"


def test_displayed_eta_counts_down_the_running_level_only() -> None:
    assert displayed_eta_s(STATE, 1000.0) == 754.0
    assert displayed_eta_s(STATE, 1010.0) == 744.0
    assert displayed_eta_s(STATE, 1100.0) == 724.0  # no further than the level's predicted share
    assert displayed_eta_s({**STATE, "running": False}, 1100.0) == 754.0
    assert displayed_eta_s({**STATE, "eta_s": None}, 1000.0) is None
    assert (clock_text(754), clock_text(3723.4), clock_text(5)) == ("12:34", "1:02:03", "0:05")


def test_read_progress_skips_missing_half_written_and_stale_files(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    assert read_progress(path) is None
    path.write_text('{"n_levels": 96, "upd')
    assert read_progress(path) is None
    path.write_text(json.dumps(STATE))
    assert read_progress(path, since_unix=999.0) == STATE
    assert read_progress(path, since_unix=1001.0) is None  # left by an earlier run


def _task(key: str, engine: str) -> LevelTask:
    return LevelTask(key, engine, "chat", 1, None, 0, 2, 100, False)


def test_watcher_prints_a_line_per_finished_level_off_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "study" / "progress.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**STATE, "updated_at": 1.0}))  # an earlier run's file: ignored
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    assert not console.is_terminal
    tasks = [_task("a__chat__c0001", "a"), _task("b__chat__c0001", "b")]
    with StudyWatcher(path, console=console, interval_s=0.01) as watcher:
        pf = ProgressFile(path, background=False)
        pf.study_planned(tasks)
        for t in tasks:
            pf.level_started(t.key, 2)
            time.sleep(0.02)
            pf.level_finished(level_info(t.key))
        deadline = time.monotonic() + 5
        while watcher.printed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert watcher.thread is not None and not watcher.thread.is_alive()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("level 1/2 done: a__chat__c0001  0:00 elapsed  ETA 0:00  (1/2 ended)"), lines
    assert lines[1].startswith("level 2/2 done: b__chat__c0001"), lines
    assert lines[2].startswith("study took 0:00; the ETA at 0:00 said 0:00"), lines
    assert len(lines) == 3

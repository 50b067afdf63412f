"""The study's progress outside the sweep: the ETA model, the progress file another process shows,
the tee of reporters and the measured error of the ETA. No engine, no clock: times are given."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from cliffbench.bench.load.driver import RequestRecord
from cliffbench.bench.progress.reporter import (
    Eta,
    LevelTask,
    ProgressFile,
    StudyTracker,
    TeeReporter,
    eta_error,
    progress_path,
)
from cliffbench.bench.store.levels import LevelInfo
from cliffbench.config import RESULTS_DIR
from tests.conftest import level_info

ENGINES = ("a", "b", "c")
USERS = (1, 4)
TOKENS = {1: 100, 4: 400}


def _key(engine: str, users: int, repeat: int) -> str:
    return f"{engine}__chat__c{users:04d}" + (f"-rep{repeat + 1}" if repeat else "")


def _tasks(stored: frozenset[str] = frozenset()) -> list[LevelTask]:
    """3 engines x 2 levels x 2 repeats, repeat by repeat as the sweep runs them."""
    return [
        LevelTask(
            key=_key(e, u, r),
            engine=e,
            level_set="chat",
            concurrency=u,
            rate_rps=None,
            repeat=r,
            n_requests=4,
            planned_tokens=TOKENS[u],
            stored=_key(e, u, r) in stored,
        )
        for r in range(2)
        for e in ENGINES
        for u in USERS
    ]


def _by_key(tasks: list[LevelTask]) -> dict[str, LevelTask]:
    return {t.key: t for t in tasks}


def test_eta_is_unknown_before_anything_finished() -> None:
    tasks = _tasks()
    eta = Eta(tasks)
    assert eta.remaining_s() is None
    assert eta.remaining_s(tasks[0].key, 5.0) is None
    assert all(eta.predict(t) is None for t in tasks)


def test_eta_uses_earlier_repeat_then_engine_rate_then_overall_rate() -> None:
    tasks = _tasks()
    t = _by_key(tasks)
    eta = Eta(tasks)
    eta.finished(_key("a", 1, 0), 10.0)  # a: 100 tokens in 10 s
    # the same level in the next repeat: its measured wall
    assert eta.predict(t[_key("a", 1, 1)]) == pytest.approx(10.0)
    # another level of engine a: its planned tokens at a's rate (10 tok/s)
    assert eta.predict(t[_key("a", 4, 0)]) == pytest.approx(40.0)
    # engine b finished nothing: the rate over all finished levels
    assert eta.predict(t[_key("b", 4, 0)]) == pytest.approx(40.0)

    eta.finished(_key("a", 4, 0), 20.0)  # a now: 500 tokens in 30 s
    eta.finished(_key("b", 1, 0), 5.0)  # b: 100 tokens in 5 s (20 tok/s)
    assert eta.predict(t[_key("a", 4, 1)]) == pytest.approx(20.0)  # its own wall, not a's rate (24 s)
    assert eta.predict(t[_key("a", 1, 1)]) == pytest.approx(10.0)
    assert eta.predict(t[_key("b", 4, 0)]) == pytest.approx(400 / 20)  # b's rate, not the overall one
    overall = 600 / 35
    assert eta.predict(t[_key("c", 1, 0)]) == pytest.approx(100 / overall)
    assert eta.predict(t[_key("c", 4, 1)]) == pytest.approx(400 / overall)

    remaining = [x for x in tasks if x.key not in {_key("a", 1, 0), _key("a", 4, 0), _key("b", 1, 0)}]
    expected = sum(eta.predict(x) or 0.0 for x in remaining)
    assert eta.remaining_s() == pytest.approx(expected)
    # the level in progress counts what is left of it, floored at 0
    current = _key("b", 4, 0)
    assert eta.remaining_s(current, 5.0) == pytest.approx(expected - 5.0)
    assert eta.remaining_s(current, 500.0) == pytest.approx(expected - 20.0)
    assert eta.level_left_s(current, 500.0) == 0.0


def test_eta_leaves_out_stored_and_skipped_levels() -> None:
    stored = frozenset({_key("c", 1, 1), _key("c", 4, 1)})
    tasks = _tasks(stored)
    eta = Eta(tasks)
    eta.finished(_key("a", 1, 0), 10.0)
    eta.skipped(_key("a", 4, 0))
    left = [t for t in tasks if not t.stored and t.key not in {_key("a", 1, 0), _key("a", 4, 0)}]
    assert eta.remaining_s() == pytest.approx(sum(eta.predict(t) or 0.0 for t in left))
    # a level with no wall (an engine that failed to start at once) measures no rate
    only_failed = Eta(tasks)
    only_failed.finished(_key("a", 1, 0), 0.0)
    assert only_failed.predict(_by_key(tasks)[_key("b", 1, 0)]) is None
    assert only_failed.predict(_by_key(tasks)[_key("a", 1, 1)]) == 0.0


def test_tracker_walls_run_from_start_to_finish() -> None:
    tasks = _tasks()
    tr = StudyTracker()
    tr.planned(tasks, 100.0)
    assert (tr.n, tr.done, tr.repeats) == (12, 0, 2)
    assert tr.task() == tasks[0] and tr.eta_s(100.0) is None
    tr.started(tasks[0].key, 130.0)  # 30 s of engine start before it
    tr.started(tasks[0].key, 135.0)  # measured again (busy): still the same level
    tr.finished(tasks[0].key, 140.0)
    assert tr.eta.walls[tasks[0].key] == pytest.approx(10.0)
    assert tr.task() == tasks[1] and tr.index(tasks[1].key) == 2
    assert tr.elapsed_s(150.0) == pytest.approx(50.0)
    tr.finished(tasks[1].key, 145.0)  # finished without starting: the time since the last level
    assert tr.eta.walls[tasks[1].key] == pytest.approx(5.0)
    assert tr.done == 2


def _record(t0: float, n_tokens: int, itl_s: float = 0.1) -> RequestRecord:
    return RequestRecord(
        request_id=0,
        warmup=False,
        prompt_tokens=10,
        max_tokens=n_tokens,
        t_submit_s=t0,
        token_times_s=[t0 + itl_s * (i + 1) for i in range(n_tokens)],
    )


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_progress_file_fields_and_history(tmp_path: Path) -> None:
    clock = _Clock()
    path = tmp_path / "study" / "progress.json"
    pf = ProgressFile(path, clock=clock, wall_clock=lambda: 1e9 + clock.t, background=False)
    tasks = _tasks(frozenset({_key("a", 1, 0)}))
    pf.study_planned(tasks)
    state = _read(path)
    assert state["n_levels"] == 12 and state["done"] == 0 and state["eta_s"] is None
    assert state["running"] is False and state["index"] == 2  # the next level to run (1 is stored)
    assert state["started_at"].startswith("2001-09-09T01:46:40")
    pf.level_skipped(_key("a", 1, 0))
    clock.t = 2.0
    pf.level_started(_key("a", 4, 0), 4)
    clock.t = 3.0
    pf.request_done(_record(0.0, 10))
    state = _read(path)
    assert state["running"] is True
    assert (state["index"], state["engine"], state["level_set"], state["users"]) == (2, "a", "chat", 4)
    assert (state["repeat"], state["repeats"], state["done"]) == (1, 2, 1)
    assert state["tok_s"] == pytest.approx(10.0)
    assert state["elapsed_s"] == pytest.approx(3.0)
    clock.t = 12.0
    pf.level_finished(level_info(_key("a", 4, 0)))
    state = _read(path)
    assert state["done"] == 2 and state["running"] is False and state["tok_s"] is None
    assert state["index"] == 3 and state["engine"] == "b"
    # a: 400 planned tokens in 10 s; everything left predicted from that rate
    left = sum(t.planned_tokens for t in tasks[2:]) / 40.0 + 10.0  # a's second repeat of c4: its wall
    left -= 400 / 40.0
    assert state["eta_s"] == pytest.approx(left)
    assert state["history"] == [
        {"key": _key("a", 4, 0), "index": 2, "elapsed_s": 12.0, "eta_s_before_next": pytest.approx(left), "done": 2}
    ]
    assert state["eta_error"] is None


def test_progress_file_throttles_request_writes(tmp_path: Path) -> None:
    clock = _Clock()
    path = tmp_path / "progress.json"
    pf = ProgressFile(path, clock=clock, wall_clock=lambda: 1e9 + clock.t, background=False)
    pf.study_planned(_tasks())
    pf.level_started(_key("a", 1, 0), 4)
    written = _read(path)["updated_at"]
    for t in (0.3, 0.6, 0.9):
        clock.t = t
        pf.request_done(_record(0.0, 5))
        assert _read(path)["updated_at"] == written  # within a second of the last write: not written
    clock.t = 1.05
    pf.request_done(_record(0.0, 5))
    assert _read(path)["updated_at"] == pytest.approx(1e9 + 1.05)
    clock.t = 1.2
    pf.level_finished(level_info(_key("a", 1, 0)))  # level events are always written
    assert _read(path)["updated_at"] == pytest.approx(1e9 + 1.2)


def test_progress_file_reports_eta_error_at_the_end(tmp_path: Path) -> None:
    clock = _Clock()
    path = tmp_path / "progress.json"
    pf = ProgressFile(path, clock=clock, background=False)
    tasks = _tasks()
    pf.study_planned(tasks)
    for t in tasks:
        pf.level_started(t.key, 4)
        clock.t += t.planned_tokens / 10.0  # every level at 10 tok/s: the ETA is exact
        pf.level_finished(level_info(t.key))
    state = _read(path)
    assert state["done"] == state["n_levels"] == 12 and state["eta_s"] == 0.0
    err = state["eta_error"]
    assert err["actual_total_s"] == pytest.approx(clock.t)
    assert err["error_s"] == pytest.approx(0.0, abs=1e-6)


def test_progress_file_survives_an_unwritable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    pf = ProgressFile(blocker / "progress.json", background=False)  # its folder is a file
    pf.study_planned(_tasks())
    pf.level_started(_key("a", 1, 0), 4)
    assert pf.warned


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def study_planned(self, tasks: list[LevelTask]) -> None:
        self.calls.append(("planned", len(tasks)))

    def level_started(self, key: str, n_requests: int) -> None:
        self.calls.append(("started", (key, n_requests)))

    def request_done(self, record: RequestRecord) -> None:
        self.calls.append(("request", record.request_id))

    def level_finished(self, info: LevelInfo) -> None:
        self.calls.append(("finished", info.level_key))

    def level_skipped(self, key: str) -> None:
        self.calls.append(("skipped", key))


def test_tee_forwards_every_call_to_each() -> None:
    one, two = _Recorder(), _Recorder()
    tee = TeeReporter(one, two)
    tee.study_planned(_tasks())
    tee.level_skipped("x")
    tee.level_started("y", 3)
    tee.request_done(_record(0.0, 2))
    tee.level_finished(level_info("y"))
    expected = [("planned", 12), ("skipped", "x"), ("started", ("y", 3)), ("request", 0), ("finished", "y")]
    assert one.calls == two.calls == expected


def test_eta_error_picks_the_first_entry_past_the_fraction() -> None:
    history: list[dict[str, Any]] = [
        {"elapsed_s": 10.0, "eta_s_before_next": 50.0, "done": 1},
        {"elapsed_s": 20.0, "eta_s_before_next": 100.0, "done": 2},
        {"elapsed_s": 25.0, "eta_s_before_next": None, "done": 3},  # past 25 %, but no ETA
        {"elapsed_s": 30.0, "eta_s_before_next": 80.0, "done": 4},
        {"elapsed_s": 60.0, "eta_s_before_next": 30.0, "done": 5},
    ]
    e = eta_error(history, 100.0)
    assert e == {
        "at_elapsed_s": 30.0,
        "predicted_total_s": 110.0,
        "actual_total_s": 100.0,
        "error_s": 10.0,
        "error_pct": 10.0,
    }
    assert eta_error(history, 100.0, at_fraction=0.5)["predicted_total_s"] == 90.0
    with pytest.raises(ValueError):
        eta_error(history, 100.0, at_fraction=0.9)


def test_progress_path_is_in_the_study_folder() -> None:
    assert progress_path("tiny") == RESULTS_DIR / "tiny" / "progress.json"


def test_background_writer_keeps_the_latest_state(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    pf = ProgressFile(path)
    assert pf.writer is not None
    for i in range(50):  # faster than the disk: older states may be dropped, never the last
        pf.writer.put(json.dumps({"i": i}))
    pf.close()
    assert json.loads(path.read_text()) == {"i": 49}
    assert pf.writer is None and not [t for t in threading.enumerate() if t.name == "cliffbench-progress-file"]

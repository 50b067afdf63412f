"""The study lock under faults: a second run of a study while the first runs is refused with one
line naming the pid (InputError; `cliffbench run` exits 2) and touches nothing of the first; a lock
file left by a dead process (its pid still written in it, no flock held) does not block a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cliffbench.bench import sweep
from cliffbench.bench.store import levels as store
from cliffbench.bench.store.levels import load_results, study_lock
from cliffbench.cli import commands as cli
from cliffbench.config import InputError
from tests.faults import Recorder, assert_nothing_left, leftovers, snapshot, study

pytestmark = pytest.mark.usefixtures("fixed_probe")

KEYS = ["wide__chat__c0001", "wide__chat__c0002"]


class _Held(Recorder):
    """Holds the sweep inside its first level until `release` is set: a run that is running."""

    def __init__(self) -> None:
        super().__init__()
        self.running, self.release = threading.Event(), threading.Event()

    def level_started(self, key: str, n_requests: int) -> None:
        if not self.running.is_set():
            self.running.set()
            assert self.release.wait(timeout=30), "the test never released the first run"


def test_second_run_of_a_running_study_is_refused_naming_the_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    monkeypatch.setattr(store, "RESULTS_DIR", results)  # the CLI's run stores under RESULTS_DIR
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # `run` installs a SIGTERM handler: not in pytest
    monkeypatch.setattr(cli, "_wait_quiet", lambda *_: None)  # the start check sleeps a second
    spec = study("locked", concurrency=[1, 2])
    path = tmp_path / "locked.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    before = snapshot()
    first = _Held()
    errors: list[BaseException] = []

    def run_first() -> None:
        try:
            sweep.run_study(spec, reporter=first)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run_first, name="first-run")
    thread.start()
    try:
        assert first.running.wait(timeout=30), errors
        want = f"study: 'locked' is being run by pid {os.getpid()}; wait for it or stop it"
        with pytest.raises(InputError) as raised:
            sweep.run_study(spec, reporter=(second := Recorder()))
        assert str(raised.value) == want and not second.finished
        result = CliRunner().invoke(cli.app, ["run", str(path), "--wait-quiet-s", "0"])
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit)
        assert result.stderr.strip().splitlines() == [f"error: {want}"]
        levels = results / "locked" / "levels"
        assert not levels.exists() or not any(levels.iterdir())  # neither wrote a level
    finally:
        first.release.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and not errors, errors
    # the first run was not disturbed: every level stored ok, nothing temporary left
    assert [i.level_key for i in first.finished] == KEYS
    res = load_results("locked")
    assert not res.damaged and res.levels["status"].eq("ok").all() and (res.levels["n_ok"] == 4).all()
    assert not leftovers(results / "locked" / "levels")
    assert (results / ".locks" / "locked.lock").read_text() == ""  # released, no pid left in it
    assert_nothing_left(*before)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("content", ["dead-pid", "not a pid\n"])
def test_stale_lock_file_of_a_dead_process_does_not_block_a_run(tmp_path: Path, content: str) -> None:
    lock = tmp_path / ".locks" / "stale.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(_dead_pid()) if content == "dead-pid" else content)
    seen: list[str] = []
    rec = Recorder(on_finished=lambda info: seen.append(lock.read_text()))
    before = snapshot()
    sweep.run_study(study("stale", concurrency=[1, 2]), root=tmp_path, reporter=rec)
    assert [i.level_key for i in rec.finished] == KEYS
    assert seen == [str(os.getpid())] * 2  # the run took the lock over: its own pid, nothing else
    assert lock.read_text() == ""
    assert load_results("stale", root=tmp_path).levels["status"].eq("ok").all()
    with study_lock("stale", tmp_path):  # free again
        pass
    assert_nothing_left(*before)

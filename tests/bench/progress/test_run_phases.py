"""The `on_phase` seam (bench/progress/run_phases.py) of a sweep of `fake` engines: each phase is called where
its docstring says, in the run's order, on the run's own thread; a stored level calls nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cliffbench.bench.progress.run_phases import PHASES
from cliffbench.bench.sweep import run_study
from tests.faults import fake_engine, study

pytestmark = pytest.mark.usefixtures("fixed_probe")


class Watch:
    """An `on_phase` that notes each call, the thread it came on, and what the level's folder held
    at the `store` phase (the temporary folder's files; whether the level was in place yet)."""

    def __init__(self, levels: Path) -> None:
        self.levels = levels
        self.calls: list[tuple[str, str]] = []
        self.threads: set[int] = set()
        self.at_store: dict[str, tuple[list[str], bool]] = {}

    def __call__(self, phase: str, where: str) -> None:
        self.calls.append((phase, where))
        self.threads.add(threading.get_ident())
        if phase == "store":
            (tmp,) = self.levels.glob(f".tmp-{where}-*")
            self.at_store[where] = (sorted(p.name for p in tmp.iterdir()), (self.levels / where).exists())


def test_each_phase_in_the_runs_order(tmp_path: Path) -> None:
    spec = study("phases", fake_engine("a"), fake_engine("b"), concurrency=[1, 2], warmup_requests=1)
    watch = Watch(tmp_path / "phases" / "levels")
    run_study(spec, root=tmp_path, on_phase=watch)
    assert {p for p, _ in watch.calls} == set(PHASES)
    assert len(watch.threads) == 1  # the sweep's own thread: a pause there pauses the run
    starts = [i for i, (p, _) in enumerate(watch.calls) if p == "engine-start"]
    order = [watch.calls[i][1] for i in starts]
    assert sorted(order) == ["a", "b"]  # each engine started once (kept loaded)
    for engine in order:
        for key in (f"{engine}__chat__c0001", f"{engine}__chat__c0002"):
            mine = [p for p, where in watch.calls if where == key]
            # one warm-up request, then the 4 measured ones, then the store write
            assert mine == ["warmup"] + ["level"] * 4 + ["store"], (key, mine)
            assert watch.calls.index(("warmup", key)) > watch.calls.index(("engine-start", engine))
            # at `store` every file is in the temporary folder, and nothing is in place yet
            names, in_place = watch.at_store[key]
            assert names == ["level.json", "memory.parquet", "requests.parquet", "tokens.parquet"]
            assert not in_place and (watch.levels / key / "level.json").is_file()

    again = Watch(watch.levels)
    run_study(spec, root=tmp_path, on_phase=again)  # every level stored: no engine starts, nothing runs
    assert again.calls == []

"""The points in the middle of a study's run where a watcher is called: the `on_phase` seam that
`run_study`, `run_study_cluster` and `cliffbench run` (`cli.main(on_phase)`) take. (The phases of
one request within a level, ramp/steady/drain, are another thing: bench/metrics/phases.py.)

A `Reporter` hears what a run has done; `on_phase` is called, on the run's own thread, in the
middle of the work, where a process stopped or killed leaves half-done work behind: the place to
check what the store does with it (the fault tests pause a `cliffbench run` there and kill it:
tests/faults/paused_cli.py). Each phase is called with where the run is:

- `engine-start` (the engine's label): an engine has just started, before its first level
- `warmup` (the level key): a warm-up request of the level is done, the level goes on
- `level` (the level key): a measured request of the level is done, the level goes on
- `store` (the level key): a measured level's files are all in its temporary folder, not yet
  renamed into place

The run blocks while `on_phase` runs (a pause there is a step of real work: SIGTERM and SIGKILL act
at once, a Ctrl-C when it returns). None, the default, costs nothing. An `on_phase` given to a
cluster run travels to the nodes with each engine block (pickled by Ray) and is called there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

from cliffbench.bench.load.driver import RequestRecord
from cliffbench.bench.progress.reporter import Reporter

__all__ = ["PHASES", "OnPhase", "Phase", "on_request"]

Phase: TypeAlias = Literal["engine-start", "warmup", "level", "store"]
PHASES: tuple[Phase, ...] = ("engine-start", "warmup", "level", "store")
OnPhase: TypeAlias = Callable[[Phase, str], None]


def on_request(reporter: Reporter | None, on_phase: OnPhase | None, key: str) -> Callable[[RequestRecord], None] | None:
    """What the load generator calls with each finished request of level `key`: the reporter's
    `request_done`, then `on_phase` at the `warmup` or `level` phase (None where neither is given)."""
    if on_phase is None:
        return reporter.request_done if reporter else None

    def done(record: RequestRecord) -> None:
        if reporter:
            reporter.request_done(record)
        on_phase("warmup" if record.warmup else "level", key)

    return done

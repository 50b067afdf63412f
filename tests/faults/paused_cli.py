"""`cliffbench`, paused once at a phase of `run`, so that a fault test can kill it there:

    python tests/faults/paused_cli.py PHASE[@WHERE] PAUSE_S run STUDY ...

runs the CLI (`cliffbench.cli.main`) with a `Pause` as its `on_phase` (cliffbench.bench.progress.run_phases): the
first time the run reaches PHASE (at WHERE if given: an engine label for `engine-start`, a level
key otherwise) it prints one line `cliffbench-fault-pause PHASE WHERE pid=PID` on stderr and sleeps
PAUSE_S seconds before it goes on. The pause sleeps on the run's thread, as a step of real work
would: SIGTERM and SIGKILL act at once, a Ctrl-C (which asyncio turns into a cancel) when it ends.

Run by path, this file is `__main__`, so Ray pickles the `Pause` by value into a cluster run's tasks
(`run --cluster`): the nodes pause without importing the tests. Its users: tests/faults/__init__.py
(`PausedCli`) and tests/bench/test_cluster.py.
"""

from __future__ import annotations

import os
import sys
import time

from cliffbench.bench.progress.run_phases import PHASES
from cliffbench.cli import main as cli_main

PAUSED = "cliffbench-fault-pause"  # the line's first word, which the tests wait for


class Pause:
    """An `on_phase` that pauses the run once, at `phase` (at `where` if it is not empty)."""

    def __init__(self, phase: str, where: str, pause_s: float) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase: one of {', '.join(PHASES)}, not {phase!r}")
        self.phase, self.where, self.pause_s = phase, where, pause_s
        self.done = False  # each copy (a process, a cluster task) pauses once

    def __call__(self, phase: str, where: str) -> None:
        if self.done or phase != self.phase or (self.where and where != self.where):
            return
        self.done = True
        print(f"{PAUSED} {phase} {where} pid={os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(self.pause_s)


def main(argv: list[str]) -> None:
    want, pause_s, *args = argv
    phase, _, where = want.partition("@")
    sys.argv = ["cliffbench", *args]  # what typer reads
    cli_main(Pause(phase, where, float(pause_s)))


if __name__ == "__main__":
    main(sys.argv[1:])

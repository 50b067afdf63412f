"""A test-only hook to stop the kit at a chosen phase, so that a fault test can kill it there.

`CLIFFBENCH_FAULT_PAUSE=<phase>[@<where>]` makes the kit, the first time it reaches that phase
(at `where` if given: an engine label for `engine-start`, a level key otherwise), print one line
`cliffbench-fault-pause <phase> <where> pid=<pid>` on stderr and sleep
`CLIFFBENCH_FAULT_PAUSE_S` seconds (default 30) before it goes on. Phases:

- `engine-start`: an engine has just started (loaded, its processes up), before its first level
- `warmup`: the first warm-up request of a level is done, the others still run
- `level`: the first measured request of a level is done, the others still run
- `store`: a level's files are all written to its temporary folder, not yet renamed into place

The pause sleeps in the event loop's thread, as a step of real work would: SIGTERM and SIGKILL
act at once, a Ctrl-C (which asyncio turns into a cancel) at the end of the pause. Unset, each
call costs one environment lookup. tests/faults/test_kill_phases.py is its user.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

__all__ = ["ENV", "PHASES", "pause", "pausing"]

ENV = "CLIFFBENCH_FAULT_PAUSE"
PHASES = ("engine-start", "warmup", "level", "store")
_done: set[str] = set()  # each phase pauses once per process


def pause(phase: str, where: str) -> None:
    """Pause here if CLIFFBENCH_FAULT_PAUSE asks for `phase` (at `where`)."""
    want = os.environ.get(ENV)
    if not want or phase in _done:
        return
    name, _, at = want.partition("@")
    if name != phase or (at and at != where):
        return
    _done.add(phase)
    print(f"cliffbench-fault-pause {phase} {where} pid={os.getpid()}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get(f"{ENV}_S", "30")))


class _Pausing:
    """A sweep reporter that pauses at the `warmup` and `level` phases and hands every call on
    (its types left open: the store imports this module)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.key = ""

    def study_planned(self, tasks: Any) -> None:
        self.inner.study_planned(tasks)

    def level_started(self, key: str, n_requests: int) -> None:
        self.key = key
        self.inner.level_started(key, n_requests)

    def request_done(self, record: Any) -> None:
        self.inner.request_done(record)
        pause("warmup" if record.warmup else "level", self.key)

    def level_finished(self, info: Any) -> None:
        self.inner.level_finished(info)

    def level_skipped(self, key: str) -> None:
        self.inner.level_skipped(key)


def pausing(reporter: Any) -> Any:
    """`reporter`, wrapped to pause at the warm-up and level phases when CLIFFBENCH_FAULT_PAUSE is set."""
    return _Pausing(reporter) if os.environ.get(ENV) else reporter

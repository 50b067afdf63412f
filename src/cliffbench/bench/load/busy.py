"""How much CPU do processes outside the kit use? A guard against measuring on a busy machine.

On a 2-core VM a level (seconds to a minute of load) measured while another process eats a core
is worth nothing: the engine loses half the machine and the level reads as a cliff that is not
there. So the kit measures *foreign* load: the system's busy CPU seconds (psutil.cpu_times: all
but idle and iowait; hypervisor steal is counted on its own) minus the CPU seconds of the kit's
own process tree, per wall second. The tree matters: engines run in-process, but vLLM spawns
child processes (its engine core), and their work is the benchmark, not a disturbance.

The own-tree count is this process (all threads) plus its reaped children, plus every live
descendant and that descendant's reaped children. A descendant that exits between two snapshots
and is reaped by no process of the tree (a daemon re-parented to init) takes its CPU seconds with
it: they read as foreign. That errs on the side of flagging a level, never of passing a busy one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

__all__ = ["CpuSnapshot", "ForeignLoad", "cpu_snapshot", "foreign_since", "measure_foreign", "wait_quiet"]

# psutil.cpu_times fields that are not work: idle, waiting on I/O, and steal (the hypervisor's,
# reported on its own). guest and guest_nice are already inside user and nice on Linux.
_NOT_BUSY = ("idle", "iowait", "steal", "guest", "guest_nice")


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU counters at one moment; two of them give the load in between (`foreign_since`)."""

    wall_s: float  # time.monotonic()
    busy_s: float  # system-wide busy CPU seconds, all cores
    steal_s: float  # system-wide steal seconds
    own_s: float  # CPU seconds of this process's tree


def _times(p: psutil.Process) -> float:
    """A process's own CPU seconds plus its reaped children's (a live process's children_* hold
    only those: no double count with the live descendants)."""
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_snapshot() -> CpuSnapshot:
    """Read the system-wide and own-tree CPU counters now.

    The tree walk (a read of every /proc entry) comes first, the counters after it, close
    together: under a busy GIL each read can wait a switch interval, and a walk between the own
    and the system reads would skew the two.
    """
    me = psutil.Process()
    tree = me.children(recursive=True)
    own = _times(me)
    for child in tree:
        try:
            own += _times(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, or not ours to read
            continue
    sys_t = psutil.cpu_times()
    wall = time.monotonic()
    busy = sum(v for k, v in sys_t._asdict().items() if k not in _NOT_BUSY)
    return CpuSnapshot(wall_s=wall, busy_s=busy, steal_s=float(getattr(sys_t, "steal", 0.0)), own_s=own)


@dataclass(frozen=True)
class ForeignLoad:
    """The load of processes outside the kit's tree over a span of wall time."""

    foreign_cores: float  # CPU seconds of others per wall second, >= 0
    steal_cores: float  # hypervisor steal per wall second
    loadavg_1m: float  # os.getloadavg()[0] at the end of the span
    wall_s: float  # the span

    def line(self) -> str:
        """`1.02 cores (load average 1.50)`, with steal when there is some."""
        steal = f", steal {self.steal_cores:.2f}" if self.steal_cores >= 0.05 else ""
        return f"{self.foreign_cores:.2f} cores (load average {self.loadavg_1m:.2f}{steal})"


def foreign_since(start: CpuSnapshot, end: CpuSnapshot | None = None) -> ForeignLoad:
    """Foreign load between `start` and `end` (default: now); the module docstring says what is own."""
    end = end or cpu_snapshot()
    wall = max(end.wall_s - start.wall_s, 1e-6)
    foreign = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
    return ForeignLoad(
        foreign_cores=max(foreign / wall, 0.0),
        steal_cores=max((end.steal_s - start.steal_s) / wall, 0.0),
        loadavg_1m=os.getloadavg()[0],
        wall_s=wall,
    )


def measure_foreign(seconds: float) -> ForeignLoad:
    """Foreign load over the next `seconds` (this thread sleeps meanwhile)."""
    start = cpu_snapshot()
    time.sleep(max(seconds, 0.0))
    return foreign_since(start)


def wait_quiet(
    max_wait_s: float,
    threshold_cores: float,
    *,
    sample_s: float = 2.0,
    on_sample: Callable[[ForeignLoad, float], None] | None = None,
) -> ForeignLoad:
    """Sample foreign load every `sample_s` until it is <= `threshold_cores` or `max_wait_s` passed.

    Returns the last sample either way: the caller decides (the kit goes on and flags the levels).
    The first sample is always taken, in full (so `max_wait_s=0` is one look); later ones are cut
    to the time left (at least 0.5 s). `on_sample(load, waited_s)` is called after each.
    """
    t0 = time.monotonic()
    span = sample_s
    while True:
        load = measure_foreign(span)
        waited = time.monotonic() - t0
        if on_sample is not None:
            on_sample(load, waited)
        if load.foreign_cores <= threshold_cores or waited >= max_wait_s:
            return load
        span = min(sample_s, max(max_wait_s - waited, 0.5))

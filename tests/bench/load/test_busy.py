"""busy: a CPU hog outside the kit's tree is foreign load; the kit's own threads and children are not.

Relative and deterministic: the tests start their own hogs (one core each) instead of trusting the
machine to be quiet. Every hog is killed in a finally block.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import pytest

from cliffbench.bench.load.busy import ForeignLoad, cpu_snapshot, foreign_since, measure_foreign, wait_quiet

pytestmark = pytest.mark.slow  # seconds each; they spawn interpreters

SPIN = "while True: pass"


def _kill(p: psutil.Process) -> None:
    """Kill and wait until it is gone or a zombie (one that is not our child is reaped by init,
    which may take a second or two; a zombie uses no CPU)."""
    try:
        p.kill()
        deadline = time.monotonic() + 5
        while p.is_running() and p.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
    except psutil.NoSuchProcess:
        pass


@contextmanager
def foreign_hog() -> Iterator[psutil.Process]:
    """A one-core hog that is not our descendant: sh starts it in the background and exits, so
    the hog is re-parented (to init or a subreaper above us)."""
    sh = subprocess.run(
        ["sh", "-c", '"$0" -c "$1" </dev/null >/dev/null 2>&1 & echo $!', sys.executable, SPIN],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    hog = psutil.Process(int(sh.stdout.strip()))
    try:
        assert hog.pid not in {c.pid for c in psutil.Process().children(recursive=True)}
        time.sleep(0.2)  # let the interpreter start spinning
        yield hog
    finally:
        _kill(hog)


@contextmanager
def own_hog(kind: str) -> Iterator[Callable[[], float]]:
    """A one-core hog inside our tree: a thread, a child, or a grandchild (vLLM's engine core).
    Yields a function that reads the hog's CPU seconds so far."""
    if kind == "thread":
        stop = threading.Event()

        def spin() -> None:
            while not stop.is_set():
                pass

        t = threading.Thread(target=spin, daemon=True)
        t.start()

        def thread_s() -> float:
            return next(th.user_time + th.system_time for th in psutil.Process().threads() if th.id == t.native_id)

        try:
            yield thread_s
        finally:
            stop.set()
            t.join(timeout=5)
        return
    # `; :` keeps sh alive as the middle process (no exec of the last command)
    cmd = [sys.executable, "-c", SPIN] if kind == "child" else ["sh", "-c", '"$0" -c "$1"; :', sys.executable, SPIN]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    tree: list[psutil.Process] = []
    try:
        time.sleep(0.2)
        tree = psutil.Process(proc.pid).children(recursive=True)
        hog = psutil.Process(proc.pid) if kind == "child" else tree[0]
        yield lambda: sum(hog.cpu_times()[:2])
    finally:
        proc.kill()  # sh first: killed before its child, it has nobody to report "Killed" about
        proc.wait(timeout=5)
        for p in tree:
            _kill(p)


def test_foreign_hog_is_foreign() -> None:
    with foreign_hog():
        load = measure_foreign(1.5)
    print(f"foreign hog: {load}")
    assert load.foreign_cores >= 0.7
    assert 1.5 <= load.wall_s < 3.0  # snapshots are slow on a loaded machine
    assert load.loadavg_1m >= 0 and load.steal_cores >= 0
    assert "cores (load average" in load.line()


@pytest.mark.parametrize("kind", ["thread", "child", "grandchild"])
def test_own_work_is_not_foreign(kind: str) -> None:
    # relative, not "foreign < 0.5": another job on a shared machine may hold a core the whole time
    # (seen here: another pytest), and that load *is* foreign; under it the hog also gets less than
    # a core. What must hold: every CPU second the hog used is counted as ours, none as foreign.
    # the hog's clock is read inside the snapshots' interval, so what it counts ran between them: a thread
    # hog holds the GIL, and a clock read after the end snapshot once counted 0.2 s more than the interval
    with own_hog(kind) as hog_s:
        start = cpu_snapshot()
        h0 = hog_s()
        time.sleep(1.5)
        h1 = hog_s()
        end = cpu_snapshot()
    load = foreign_since(start, end)
    wall = end.wall_s - start.wall_s
    own, busy, hog = (end.own_s - start.own_s) / wall, (end.busy_s - start.busy_s) / wall, (h1 - h0) / wall
    print(f"own {kind} hog: foreign {load.foreign_cores:.2f}, own {own:.2f}, hog {hog:.2f}, busy {busy:.2f}")
    assert hog >= 0.05  # it ran (little, on a machine that other jobs keep full)
    assert own >= hog - 0.05  # 0.05: clock ticks of 10 ms, and a snapshot reads its processes one by one
    assert load.foreign_cores <= max(busy - hog, 0.0) + 0.05
    assert load.foreign_cores == pytest.approx(max(busy - own, 0.0))


def test_wait_quiet_returns_at_once_under_a_generous_threshold() -> None:
    t0 = time.monotonic()
    load = wait_quiet(30.0, 10.0, sample_s=1.0)
    assert time.monotonic() - t0 < 3.0
    assert load.foreign_cores <= 10.0


def test_wait_quiet_gives_up_after_max_wait_with_a_hog() -> None:
    seen: list[tuple[ForeignLoad, float]] = []
    record: Callable[[ForeignLoad, float], None] = lambda load, waited: seen.append((load, waited))  # noqa: E731
    with foreign_hog():
        t0 = time.monotonic()
        load = wait_quiet(3.0, 0.3, sample_s=1.0, on_sample=record)
        took = time.monotonic() - t0
    print(f"wait_quiet with a foreign hog: {load}, {len(seen)} samples in {took:.2f} s")
    assert 2.9 <= took < 4.5
    assert load.foreign_cores > 0.3 and load is seen[-1][0]
    assert len(seen) == 3 and seen[-1][1] >= 3.0 - 0.05


def test_wait_quiet_zero_takes_one_sample() -> None:
    seen: list[float] = []
    t0 = time.monotonic()
    wait_quiet(0.0, -1.0, sample_s=0.5, on_sample=lambda _, waited: seen.append(waited))
    assert len(seen) == 1 and time.monotonic() - t0 < 1.5

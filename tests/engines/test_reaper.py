"""The reaper: processes a kit started die with it, even when the kit is killed outright."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time

import psutil
import pytest

from cliffbench.engines.reaper import Reaper, ensure_reaper

# A stand-in for the kit: it starts its reaper first, then a long-lived child with a grandchild
# (as vLLM starts its engine core and worker), prints their pids and waits to be killed.
OWNER = """
import subprocess, sys, time
from cliffbench.engines.reaper import Reaper
Reaper(grace_s=1.0)
child = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
    " print(g.pid, flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
grandchild = int(child.stdout.readline())
time.sleep(1.0)  # the reaper polls 4 times a second
print(child.pid, grandchild, flush=True)
time.sleep(600)
"""


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow  # spawns an owner process and its children
def test_descendants_die_when_their_owner_is_killed() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert owner.stdout is not None
        pids = [int(x) for x in owner.stdout.readline().split()]
        assert len(pids) == 2 and not any(_gone(p, 0.3) for p in pids)  # alive while their owner lives
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert all(_gone(p, 10.0) for p in pids), "a descendant outlived its killed owner"
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def test_clean_close_stops_the_reaper_and_spares_the_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        reaper = Reaper()
        proc = reaper.proc
        assert proc is not None and reaper.alive()
        time.sleep(0.5)
        reaper.close()
        assert proc.poll() is not None and reaper.proc is None and not reaper.alive()
        assert child.poll() is None  # a clean stop is the engine's job, not the reaper's
    finally:
        child.kill()
        child.wait()


def test_one_reaper_per_process() -> None:
    first = ensure_reaper()
    assert ensure_reaper() is first and first.alive()

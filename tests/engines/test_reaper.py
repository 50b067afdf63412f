"""The reaper: processes a kit started die with it, even when the kit is killed outright."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time

import psutil

from cliffbench.engines.reaper import Reaper, new_children

# A stand-in for the kit: it starts a long-lived child (as vLLM starts its engine core), guards it
# with a Reaper, prints the child's pid and waits to be killed.
OWNER = """
import subprocess, sys, time
from cliffbench.engines.reaper import Reaper
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
Reaper([child.pid], grace_s=1.0)
print(child.pid, flush=True)
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


def test_guarded_child_dies_when_its_owner_is_killed() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        assert not _gone(child, 0.5)  # alive while its owner lives
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert _gone(child, 10.0), "the guarded child outlived its killed owner"
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        if child:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(child).kill()


def test_clean_close_stops_the_reaper_and_spares_the_child() -> None:
    before = [c.pid for c in psutil.Process().children(recursive=True)]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert new_children(before) == [child.pid]
        reaper = Reaper([child.pid])
        assert reaper.proc is not None
        proc = reaper.proc
        reaper.close()
        assert proc.poll() is not None and reaper.proc is None
        assert child.poll() is None  # a clean stop is the engine's job, not the reaper's
    finally:
        child.kill()
        child.wait()


def test_no_pids_no_reaper() -> None:
    reaper = Reaper([])
    assert reaper.proc is None
    reaper.close()

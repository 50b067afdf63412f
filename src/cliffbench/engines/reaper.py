"""Processes an engine spawns die with the kit, however the kit dies.

vLLM runs its engine core (and on CPU a worker) in child processes. A clean stop shuts them down,
but a kit killed with SIGKILL, or a notebook kernel that its manager kills, runs no cleanup, and
the children were seen living on, holding cores and gigabytes, re-parented to init. A reaper is a
small separate process, started before the first engine spawns anything: it records every
descendant of the kit's process as it appears (polling, 4 times a second) and, when the kit is
gone, terminates those still alive (SIGTERM, then SIGKILL after a grace period). Started before
the engine, it also covers a kit killed while the engine is still starting.
"""

from __future__ import annotations

import atexit
import subprocess
import sys

import psutil

__all__ = ["REAPER_SCRIPT", "Reaper", "ensure_reaper"]

# Runs in its own interpreter: psutil only, so it starts in a fraction of a second.
REAPER_SCRIPT = """
import os, sys, time, psutil
owner, grace_s = int(sys.argv[1]), float(sys.argv[2])
me = os.getpid()
def alive(p):
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
try:
    kit = psutil.Process(owner)
except psutil.NoSuchProcess:
    sys.exit(0)
seen = {}
while alive(kit):
    try:
        for c in kit.children(recursive=True):
            if c.pid != me:
                seen.setdefault(c.pid, c)
    except psutil.NoSuchProcess:
        break
    time.sleep(0.25)
victims = [p for p in seen.values() if alive(p)]
for p in victims:
    try:
        p.terminate()
    except psutil.NoSuchProcess:
        pass
_, left = psutil.wait_procs(victims, timeout=grace_s)
for p in left:
    try:
        p.kill()
    except psutil.NoSuchProcess:
        pass
"""


class Reaper:
    """Every descendant of this process is terminated when this process dies."""

    def __init__(self, grace_s: float = 5.0) -> None:
        # own session: a Ctrl-C aimed at the kit's process group must not kill the reaper first
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", REAPER_SCRIPT, str(psutil.Process().pid), str(grace_s)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop watching (the kit stops its engines itself)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


_REAPER: Reaper | None = None


def ensure_reaper() -> Reaper:
    """This process's reaper, started on first use and kept for the process's life (it leaves by
    itself when the process exits, once it has stopped any descendant still running)."""
    global _REAPER
    if _REAPER is None or not _REAPER.alive():
        _REAPER = Reaper()
        atexit.register(_outlive, _REAPER)
    return _REAPER


def _outlive(reaper: Reaper) -> None:
    # the reaper outlives this process on purpose (it stops what is left once we are gone); a
    # Popen still running at exit would be reported as a leak
    if reaper.proc is not None and reaper.proc.poll() is None:
        reaper.proc.returncode = 0

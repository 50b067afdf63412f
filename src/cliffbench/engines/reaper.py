"""Processes an engine spawns die with the kit, however the kit dies.

vLLM runs its engine core (and on CPU a worker) in child processes. A clean stop shuts them down,
but a kit killed with SIGKILL, or a notebook kernel that its manager kills, runs no cleanup, and
the children were seen living on, holding cores and gigabytes, re-parented to init. A reaper is a
small separate process started beside them: it polls the kit's pid and, when the kit is gone,
terminates the guarded processes and their descendants (SIGTERM, then SIGKILL after a grace
period). It leaves by itself once the guarded processes are gone, so a clean stop costs nothing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

import psutil

__all__ = ["REAPER_SCRIPT", "Reaper", "new_children"]

# Runs in its own interpreter: psutil only, so it starts in a fraction of a second.
REAPER_SCRIPT = """
import sys, time, psutil
owner, grace_s, pids = int(sys.argv[1]), float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
def alive(p):
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
procs = []
for pid in pids:
    try:
        procs.append(psutil.Process(pid))
    except psutil.NoSuchProcess:
        pass
try:
    me = psutil.Process(owner)
except psutil.NoSuchProcess:
    me = None
while me is not None and alive(me) and any(alive(p) for p in procs):
    time.sleep(0.25)
if any(alive(p) for p in procs):
    victims = []
    for p in procs:
        try:
            victims += [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
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


def new_children(before: Iterable[int]) -> list[int]:
    """This process's descendants that are not in `before` (pids taken before a start)."""
    known = set(before)
    return [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in known]


class Reaper:
    """Guard `pids` (processes this kit started): they are terminated when this process dies."""

    def __init__(self, pids: list[int], grace_s: float = 5.0) -> None:
        self.pids = pids
        self.proc: subprocess.Popen[bytes] | None = None
        if pids:
            # own session: a Ctrl-C aimed at the kit's process group must not kill the reaper first
            self.proc = subprocess.Popen(
                [sys.executable, "-c", REAPER_SCRIPT, str(psutil.Process().pid), str(grace_s), *map(str, pids)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    def close(self) -> None:
        """The guarded processes were stopped cleanly: the reaper is no longer needed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

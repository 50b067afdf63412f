"""The client processes of `load.client_processes` (cliffbench.bench.load.clients splits and merges the
load): each runs `run_level` against its own HTTP client to the level's server.

The parent hands each client a job, waits until every client has built its HTTP client, measures
each client's clock against its own by a ping exchange over the pipe (the sample of least round
trip gives the offset, within half that round trip), then gives every client one common start
time, each in its own clock: a start barrier. Clients are spawned on the first such level and kept
for the next ones (a spawned client imports the kit: seconds, more with K of them on 2 cores);
idle ones end after IDLE_EXIT_S, with this process, or by `close_clients()`. A client that fails
or dies fails the level; a failed or cancelled level terminates its clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from cliffbench.bench.load.driver import LevelRun, run_level
from cliffbench.engines.base import EngineError, GenRequest
from cliffbench.engines.http import OpenAIHttpEngine
from cliffbench.engines.specs import OpenAIHttpSpec

__all__ = ["CLOCK_PINGS", "ClientPool", "ClientResult", "Clients", "Job", "close_clients", "level_pool"]

CLOCK_PINGS = 16  # round trips per client; the least one sets the offset
READY_TIMEOUT_S = 120.0  # a spawned client imports the kit (seconds on a busy 2-core machine)
IDLE_EXIT_S = 120.0  # a pooled client that gets no level for this long ends
START_MARGIN_S = 0.05  # the common start lies this far after the last client was told it
_JOIN_S = 10.0


@dataclass(frozen=True)
class Job:
    index: int
    spec: dict[str, Any]  # the OpenAIHttpSpec of the client's engine (JSON form)
    requests: list[GenRequest]
    warmup: list[GenRequest]
    load: dict[str, Any]  # run_level's keyword arguments for this client


@dataclass
class ClientResult:
    index: int
    pid: int
    host: str
    run: LevelRun
    retried: int


# -- the client process -----------------------------------------------------------------------


def _enough_files(connections: int) -> None:
    """Raise the soft open-file limit to the hard one where a client's connections need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < connections + 256:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _client_main(conn: Connection) -> None:
    """A pooled client: runs one level per job until told to exit, left idle IDLE_EXIT_S, or its
    parent is gone; a client that failed or was called off mid-level exits (never reused)."""
    # Ctrl-C reaches the whole process group; the parent ends its clients itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while conn.poll(IDLE_EXIT_S):
            msg = conn.recv()
            if msg[0] != "job":
                return
            job: Job = msg[1]
            try:
                result = asyncio.run(_client(conn, job))
            except BaseException as exc:  # every failure goes back to the parent, which fails the level
                conn.send(("error", f"client process {job.index}: {type(exc).__name__}: {exc}"))
                return
            if result is None:
                return
            conn.send(("result", result))
    except (EOFError, OSError):
        pass  # the parent is gone
    finally:
        conn.close()


async def _client(conn: Connection, job: Job) -> ClientResult | None:
    spec = OpenAIHttpSpec.model_validate(job.spec)
    _enough_files(spec.max_connections)
    engine = OpenAIHttpEngine(spec)
    await engine.start()
    try:
        conn.send(("ready", os.getpid(), socket.gethostname()))
        while True:  # nothing else runs yet: blocking on the pipe holds up nothing
            msg = conn.recv()
            if msg[0] == "ping":
                conn.send(("pong", time.perf_counter()))
            elif msg[0] == "go":
                start_at = float(msg[1])
                break
            else:
                return None  # the parent called the level off
        # to the common start: nothing else runs here yet, so a blocking wait delays nothing, and
        # spinning the last 2 ms avoids the whole-millisecond rounding of a timer
        time.sleep(max(0.0, start_at - time.perf_counter() - 0.002))
        while time.perf_counter() < start_at:
            pass
        run = await run_level(engine, job.requests, warmup=job.warmup, **job.load)
    finally:
        await engine.stop()
    return ClientResult(job.index, os.getpid(), socket.gethostname(), run, engine.stats["retried"])


# -- the parent -------------------------------------------------------------------------------


@dataclass
class _Member:
    proc: BaseProcess
    conn: Connection


class ClientPool:
    """Client processes kept from one level to the next: a spawned client imports the kit, which
    takes seconds (more with K of them on 2 cores), so each is started once, not per level. Each
    level builds its own HTTP client in them from the level's job."""

    def __init__(self) -> None:
        self.members: list[_Member] = []
        self.lock = threading.Lock()  # one level at a time uses the pool

    def take(self, k: int) -> list[_Member]:
        for m in [m for m in self.members if not m.proc.is_alive()]:
            self.discard([m])
        ctx = mp.get_context("spawn")  # fork would copy a parent's threads' locks mid-use
        while len(self.members) < k:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_client_main, args=(child_end,), name="cliffbench-client", daemon=True)
            proc.start()
            child_end.close()
            self.members.append(_Member(proc, parent_end))
        return self.members[:k]

    def discard(self, members: list[_Member]) -> None:
        """End `members` now (a failed or cancelled level leaves them in an unknown state)."""
        for m in members:
            if m.proc.is_alive():
                m.proc.terminate()
        for m in members:
            m.proc.join(_JOIN_S)
            if m.proc.is_alive():
                m.proc.kill()
                m.proc.join()
            m.conn.close()
            if m in self.members:
                self.members.remove(m)

    def close(self) -> None:
        for m in self.members:
            with contextlib.suppress(OSError):
                m.conn.send(("exit",))
        for m in self.members:
            m.proc.join(_JOIN_S)
        self.discard(list(self.members))


_POOL = ClientPool()


@contextlib.contextmanager
def level_pool() -> Iterator[ClientPool]:
    """The pool a level takes its clients from: the shared one, or a private one (closed after the
    level) while another level of this process holds the shared one (two sweeps at once)."""
    if not _POOL.lock.acquire(blocking=False):
        own = ClientPool()
        try:
            yield own
        finally:
            own.close()
        return
    try:
        yield _POOL
    finally:
        _POOL.lock.release()


def close_clients() -> None:
    """End the pooled client processes now (idle ones also end by themselves after IDLE_EXIT_S,
    and with this process)."""
    with _POOL.lock:
        _POOL.close()


class Clients:
    """The client processes of one level, driven from a worker thread of the parent."""

    def __init__(self, jobs: list[Job], pool: ClientPool) -> None:
        self.jobs = jobs
        self.pool = pool
        self.members: list[_Member] = []
        self.cancelled = False

    @property
    def procs(self) -> list[BaseProcess]:
        return [m.proc for m in self.members]

    def _recv(self, i: int, timeout_s: float | None, what: str) -> Any:
        proc, conn = self.members[i].proc, self.members[i].conn
        ready = wait([conn, proc.sentinel], timeout_s)
        if conn in ready:
            try:
                msg = conn.recv()
            except EOFError:
                msg = None
            if msg is not None and msg[0] == "error":
                raise EngineError(msg[1])
            if msg is not None:
                return msg
        if not ready:
            raise EngineError(f"client process {i} sent nothing in {timeout_s:g} s while {what}")
        proc.join(1.0)
        raise EngineError(f"client process {i} exited (code {proc.exitcode}) while {what}")

    def drive(self) -> tuple[float, list[tuple[float, float]], list[ClientResult]]:
        """Start, synchronize and run the clients: (common start in the parent's clock,
        (clock offset, round trip) per client, results in client order)."""
        self.members = self.pool.take(len(self.jobs))
        if self.cancelled:  # called off while they were starting
            self.pool.discard(self.members)
            raise EngineError("the level was called off")
        for m, job in zip(self.members, self.jobs, strict=True):
            m.conn.send(("job", job))
        for i in range(len(self.jobs)):
            self._recv(i, READY_TIMEOUT_S, "starting")  # ("ready", pid, host): both come back with the result
        clocks = [self._clock(i) for i in range(len(self.jobs))]
        start = time.perf_counter() + START_MARGIN_S
        for m, (offset, _) in zip(self.members, clocks, strict=True):
            m.conn.send(("go", start + offset))
        return start, clocks, self._results()

    def _results(self) -> list[ClientResult]:
        """Every client's result, in client order; the first client to fail or die fails the level
        at once (waiting on all of them, not one after another)."""
        out: dict[int, ClientResult] = {}
        while len(out) < len(self.jobs):
            pending = [i for i in range(len(self.jobs)) if i not in out]
            wait([h for i in pending for h in (self.members[i].conn, self.members[i].proc.sentinel)])
            for i in pending:
                if self.members[i].conn.poll() or not self.members[i].proc.is_alive():
                    out[i] = self._recv(i, 0, "running the level")[1]
        return [out[i] for i in range(len(self.jobs))]

    def _clock(self, i: int) -> tuple[float, float]:
        """(client clock - parent clock, round trip) from the ping of least round trip."""
        best = (math.nan, math.inf)
        for _ in range(CLOCK_PINGS):
            t1 = time.perf_counter()
            self.members[i].conn.send(("ping",))
            _, t_client = self._recv(i, READY_TIMEOUT_S, "timing its clock")
            t2 = time.perf_counter()
            if t2 - t1 < best[1]:
                best = (t_client - (t1 + t2) / 2, t2 - t1)
        return best

    def kill(self) -> None:
        """End this level's clients now (a failed or cancelled level)."""
        self.cancelled = True
        self.pool.discard(list(self.members))

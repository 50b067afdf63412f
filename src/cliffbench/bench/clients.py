"""One level's load from several client processes (`load.client_processes: K`).

One asyncio loop saturates long before a fleet behind `openai-http` does: against an instant server
its loop lag and GIL wait grow past the token gaps it measures (benchmarks/loadgen_precision.py,
benchmarks/multi_client.py). So the users of a level (closed loop) or its rate (open loop: K
independent Poisson streams of rate/K add up to one Poisson stream of the rate) are split over K
processes, each running the same `run_level` against its own HTTP client to the same server.

The parent spawns the clients (each builds its engine, then reports ready), measures each
client's clock against its own by a ping exchange over the pipe (the sample of least round trip
gives the offset, within half that round trip), then gives every client one common start time,
each in its own clock: a start barrier. Records come back with times relative to each client's
start, are shifted onto the parent's clock and merged into one level (request ids stay unique: the
requests are split, not copied). Each client's harness checks (loop lag, GIL wait, loop CPU,
achieved concurrency) are kept per client in `LevelRun.clients`.

The client processes are spawned on the first such level and kept for the next ones (a spawned
client imports the kit: seconds, more with K of them on 2 cores); each level builds its own HTTP
client in them. Idle ones end after IDLE_EXIT_S, with this process, or by `close_clients()`.
A client that fails, or dies, fails the level (the sweep stores it failed with the message); a
failed or cancelled level (Ctrl-C) terminates its clients.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from cliffbench.bench.loadgen import MEMORY_COLUMNS, ClientInfo, LevelRun, MemorySample, RequestRecord, run_level
from cliffbench.config import InputError
from cliffbench.engines.base import Engine, EngineError, GenRequest
from cliffbench.engines.http import OpenAIHttpEngine
from cliffbench.engines.specs import OpenAIHttpSpec

__all__ = ["CLOCK_PINGS", "close_clients", "run_split", "split_requests", "split_users"]

CLOCK_PINGS = 16  # round trips per client; the least one sets the offset
READY_TIMEOUT_S = 120.0  # a spawned client imports the kit (seconds on a busy 2-core machine)
IDLE_EXIT_S = 120.0  # a pooled client that gets no level for this long ends
START_MARGIN_S = 0.05  # the common start lies this far after the last client was told it
_JOIN_S = 10.0


@dataclass(frozen=True)
class _Job:
    index: int
    spec: dict[str, Any]  # the OpenAIHttpSpec of the client's engine (JSON form)
    requests: list[GenRequest]
    warmup: list[GenRequest]
    load: dict[str, Any]  # run_level's keyword arguments for this client


@dataclass
class _Result:
    index: int
    pid: int
    host: str
    run: LevelRun
    retried: int


def split_users(users: int, processes: int) -> list[int]:
    """Users per client: user slot s goes to client s % processes (so counts differ by at most one).
    Clients that would get no user are left out."""
    k = min(users, processes)
    return [users // k + (i < users % k) for i in range(k)]


def split_requests(requests: Sequence[GenRequest], users: int, processes: int) -> list[list[GenRequest]]:
    """Request j goes to the client that owns user slot j % users (slot s: client s % k), so each
    client's share is proportional to its users and each share interleaves the whole list."""
    k = min(users, processes)
    out: list[list[GenRequest]] = [[] for _ in range(k)]
    for j, r in enumerate(requests):
        out[(j % users) % k].append(r)
    return out


def _child_spec(engine: Engine, processes: int) -> dict[str, Any]:
    """The started engine's spec, pointed at the server it talks to, for a client to rebuild: no
    managed server of its own, the discovered model and flavor, its share of the connections."""
    if not isinstance(engine, OpenAIHttpEngine):
        raise InputError(
            f"load.client_processes: {processes} client processes drive only openai-http engines, "
            f"{engine.name!r} runs in this process; allowed for it: 1"
        )
    spec = engine.spec.model_dump(mode="json")
    spec.update(
        url=engine.url,
        server=None,
        served_model=engine.served_model,
        flavor=engine.flavor if engine.flavor != "auto" else "generic",
        max_connections=math.ceil(engine.spec.max_connections / processes),
    )
    return spec


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
            job: _Job = msg[1]
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


async def _client(conn: Connection, job: _Job) -> _Result | None:
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
    return _Result(job.index, os.getpid(), socket.gethostname(), run, engine.stats["retried"])


# -- the parent -------------------------------------------------------------------------------


@dataclass
class _Member:
    proc: BaseProcess
    conn: Connection


class _Pool:
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


_POOL = _Pool()


def close_clients() -> None:
    """End the pooled client processes now (idle ones also end by themselves after IDLE_EXIT_S,
    and with this process)."""
    with _POOL.lock:
        _POOL.close()


class _Clients:
    """The client processes of one level, driven from a worker thread of the parent."""

    def __init__(self, jobs: list[_Job], pool: _Pool) -> None:
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

    def drive(self) -> tuple[float, list[tuple[float, float]], list[_Result]]:
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

    def _results(self) -> list[_Result]:
        """Every client's result, in client order; the first client to fail or die fails the level
        at once (waiting on all of them, not one after another)."""
        out: dict[int, _Result] = {}
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


def _shifted(rec: RequestRecord, by_s: float) -> RequestRecord:
    return RequestRecord(
        rec.request_id,
        rec.warmup,
        rec.prompt_tokens,
        rec.max_tokens,
        rec.t_submit_s + by_s,
        rec.status,
        rec.error,
        rec.t_scheduled_s + by_s,
        rec.t_done_s + by_s,
        [t + by_s for t in rec.token_times_s],
    )


def _client_concurrency(records: list[RequestRecord]) -> float:
    """Achieved concurrency of one client, over the window `summarize_level` uses for a level."""
    measured = [r for r in records if not r.warmup]
    ends = [r.token_times_s[-1] for r in measured if r.status == "ok" and r.token_times_s]
    if not measured or not ends:
        return math.nan
    # imported here: scipy (through metrics) would add a second to every client process's start
    from cliffbench.bench.metrics import achieved_concurrency

    w0 = min(r.t_submit_s for r in measured)
    return achieved_concurrency([r.t_submit_s for r in measured], [r.t_done_s for r in measured], (w0, max(ends)))


def _merge_memory(parts: list[list[MemorySample]]) -> list[MemorySample]:
    """Each client samples its own in-flight count; the level's is their sum at every sample time
    (each client's last sample at or before it, 0 before its first)."""
    parts = [p for p in parts if p]
    if not parts:
        return []
    times = np.unique(np.concatenate([np.asarray([s[0] for s in p]) for p in parts]))
    total = np.zeros((times.size, len(MEMORY_COLUMNS) - 1), dtype=np.int64)
    for p in parts:
        arr = np.asarray(p, dtype=np.float64)
        at = np.searchsorted(arr[:, 0], times, side="right") - 1
        vals = np.where(at[:, None] >= 0, arr[np.maximum(at, 0), 1:], 0.0)
        total += vals.astype(np.int64)
    return [(float(t), *(int(v) for v in row)) for t, row in zip(times, total, strict=True)]  # type: ignore[misc]


def _merge(
    start_s: float,
    clocks: list[tuple[float, float]],
    results: list[_Result],
    users: list[int] | None,
    rates: list[float] | None,
) -> LevelRun:
    records: list[RequestRecord] = []
    memory: list[list[MemorySample]] = []
    infos: list[ClientInfo] = []
    end_s = 0.0
    for res, (offset, rtt) in zip(results, clocks, strict=True):
        run = res.run
        # a client time t (relative to its own start t0) is t0 + t - offset in the parent's clock
        late = run.t0_s - offset - start_s
        mine = [_shifted(r, late) for r in run.records]
        records.extend(mine)
        memory.append([(s[0] + late, *s[1:]) for s in run.memory])
        end_s = max(end_s, late + run.wall_s)
        infos.append(
            ClientInfo(
                index=res.index,
                pid=res.pid,
                host=res.host,
                users=None if users is None else users[res.index],
                rate_rps=None if rates is None else rates[res.index],
                requests=sum(not r.warmup for r in run.records),
                clock_offset_s=offset,
                clock_rtt_s=rtt,
                start_late_s=late,
                wall_s=run.wall_s,
                lag_p99_s=run.lag_p99_s,
                lag_samples=int(run.lag_s.size),
                thread_wait_p99_s=run.thread_wait_p99_s,
                loop_cpu_share=run.loop_cpu_share,
                achieved_concurrency=_client_concurrency(run.records),
                http_retried=res.retried,
            )
        )
    records.sort(key=lambda r: r.t_submit_s)
    return LevelRun(
        records,
        _merge_memory(memory),
        np.concatenate([r.run.lag_s for r in results]),
        np.concatenate([r.run.thread_wait_s for r in results]),
        sum(r.run.loop_cpu_s for r in results),
        end_s,
        start_s,
        infos,
    )


async def run_split(
    engine: Engine,
    requests: Sequence[GenRequest],
    *,
    processes: int = 1,
    concurrency: int | None = None,
    rate_rps: float | None = None,
    warmup: Sequence[GenRequest] = (),
    seed: int = 0,
    on_record: Callable[[RequestRecord], None] | None = None,
    **load: Any,
) -> LevelRun:
    """`run_level` with the load split over `processes` client processes (`processes == 1`: run in
    this process, exactly `run_level`). Other keyword arguments go to every client's `run_level`;
    `on_record` sees the merged records once the level is over."""
    if processes == 1:
        return await run_level(
            engine, requests, concurrency=concurrency, rate_rps=rate_rps, warmup=warmup, seed=seed,
            on_record=on_record, **load,
        )  # fmt: skip
    if (concurrency is None) == (rate_rps is None):
        raise ValueError("give exactly one of concurrency or rate_rps")
    spec = _child_spec(engine, processes)
    users: list[int] | None = None
    rates: list[float] | None = None
    if concurrency is not None:
        users = split_users(concurrency, processes)
        shares, warm = split_requests(requests, concurrency, processes), split_requests(warmup, concurrency, processes)
    else:
        assert rate_rps is not None
        rates = [rate_rps / processes] * processes
        shares = [list(requests[i::processes]) for i in range(processes)]
        warm = [list(warmup[i::processes]) for i in range(processes)]
    jobs = [
        _Job(
            i,
            spec,
            shares[i],
            warm[i],
            {
                **load,
                "concurrency": None if users is None else users[i],
                "rate_rps": None if rates is None else rates[i],
                "seed": seed + 1_000_003 * i,  # independent arrival and think-time draws per client
            },
        )
        for i in range(len(shares))
    ]
    # another level of this process holds the pool (two sweeps at once): this one starts its own
    own = not _POOL.lock.acquire(blocking=False)
    pool = _Pool() if own else _POOL
    clients = _Clients(jobs, pool)
    try:
        start_s, clocks, results = await asyncio.to_thread(clients.drive)
    except BaseException:
        await asyncio.to_thread(clients.kill)
        raise
    finally:
        if own:
            await asyncio.to_thread(pool.close)
        else:
            _POOL.lock.release()
    run = _merge(start_s, clocks, results, users, rates)
    if on_record is not None:
        for rec in run.records:
            on_record(rec)
    return run

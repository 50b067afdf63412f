"""One level's load from several client processes (`load.client_processes: K`).

One asyncio loop saturates long before a fleet behind `openai-http` does: against an instant server
its loop lag and GIL wait grow past the token gaps it measures (benchmarks/loadgen_precision.py,
benchmarks/multi_client.py). So the users of a level (closed loop) or its rate (open loop: K
independent Poisson streams of rate/K add up to one Poisson stream of the rate) are split over K
processes, each running the same `run_level` against its own HTTP client to the same server.

The clients start together (a start barrier, each client's clock measured against the parent's:
cliffbench.bench.load.client_pool). Records come back with times relative to each client's start, are
shifted onto the parent's clock and merged into one level (request ids stay unique: the requests
are split, not copied). Each client's harness checks (loop lag, GIL wait, loop CPU, achieved
concurrency) are kept per client in `LevelRun.clients`. A client that fails, or dies, fails the
level (the sweep stores it failed with the message).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cliffbench.bench.load.client_pool import ClientResult, Clients, Job, level_pool
from cliffbench.bench.load.driver import ClientInfo, LevelRun, RequestRecord, run_level
from cliffbench.bench.load.memory_probe import ENGINE_COUNTS, MemorySample
from cliffbench.config import InputError
from cliffbench.engines.base import Engine, GenRequest
from cliffbench.engines.http import OpenAIHttpEngine

__all__ = ["run_split", "split_requests", "split_users"]


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


def _shifted(rec: RequestRecord, by_s: float, client: int, clients: int) -> RequestRecord:
    """`rec` on the parent's clock, its user renumbered: a client's user j is the level's user slot
    client + j x clients (`split_users`)."""
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
        rec.user if rec.user < 0 else client + rec.user * clients,
    )


def _client_concurrency(records: list[RequestRecord]) -> float:
    """Achieved concurrency of one client, over the window `summarize_level` uses for a level."""
    measured = [r for r in records if not r.warmup]
    ends = [r.token_times_s[-1] for r in measured if r.status == "ok" and r.token_times_s]
    if not measured or not ends:
        return math.nan
    # imported here: scipy (through metrics) would add a second to every client process's start
    from cliffbench.bench.metrics.level import achieved_concurrency

    w0 = min(r.t_submit_s for r in measured)
    return achieved_concurrency([r.t_submit_s for r in measured], [r.t_done_s for r in measured], (w0, max(ends)))


def _merge_memory(parts: list[list[MemorySample]]) -> list[MemorySample]:
    """Each client samples its own engine's counters (in flight...); the level's are their sums at
    every sample time (each client's last sample at or before it, 0 before its first). A server's
    /metrics is the same whichever client reads it: one client's readings, not their sum."""
    parts = [p for p in parts if p]
    if not parts:
        return []
    scraped = [p for p in parts if p[0].state_source == "metrics"]
    if scraped:
        return list(scraped[0])
    times = np.unique(np.concatenate([np.asarray([s.t_s for s in p]) for p in parts]))
    total = np.zeros((times.size, len(ENGINE_COUNTS)), dtype=np.int64)
    for p in parts:
        t_s = np.asarray([s.t_s for s in p], dtype=np.float64)
        arr = np.asarray([[getattr(s, c) for c in ENGINE_COUNTS] for s in p], dtype=np.float64)
        at = np.searchsorted(t_s, times, side="right") - 1
        vals = np.where(at[:, None] >= 0, arr[np.maximum(at, 0)], 0.0)
        total += vals.astype(np.int64)
    source = parts[0][0].state_source
    out = []
    for t, row in zip(times, total, strict=True):
        reserved, live, seqs, waiting, steps, decoding, preempted = (int(v) for v in row)  # ENGINE_COUNTS
        # the scraped fields have no sum: NaN and 0, as a sampler with no server to scrape leaves them
        nan = math.nan
        out.append(
            MemorySample(float(t), reserved, live, seqs, waiting, steps, decoding, preempted, nan, nan, 0, source)
        )
    return out


def _merge(
    start_s: float,
    clocks: list[tuple[float, float]],
    results: list[ClientResult],
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
        mine = [_shifted(r, late, res.index, len(results)) for r in run.records]
        records.extend(mine)
        memory.append([s._replace(t_s=s.t_s + late) for s in run.memory])
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
        ramp_s=max((r.run.ramp_s for r in results), default=0.0),
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
    # each client sees only its own users, so none can tell where the level's window ends: they wait
    load = {**load, "end_at_window": False}
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
        Job(
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
    with level_pool() as pool:
        clients = Clients(jobs, pool)
        try:
            start_s, clocks, results = await asyncio.to_thread(clients.drive)
        except BaseException:
            await asyncio.to_thread(clients.kill)
            raise
    run = _merge(start_s, clocks, results, users, rates)
    if on_record is not None:
        for rec in run.records:
            on_record(rec)
    return run

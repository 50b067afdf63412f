"""One sweep level: a precomputed schedule -> `engine.stream` -> per-request records.

Closed loop: N users share one request list; each user sends its next request when its previous
one ends (plus an optional think time). Open loop: requests are submitted at precomputed
offsets from an absolute start time (Poisson / gamma), however many are in flight.
Warm-up requests run first, at the level's concurrency, and are recorded with `warmup=True`.

The harness checks itself while it measures: an event-loop lag probe (how long a callback posted
from another thread waits for the loop, as a token event does),
the CPU time of the event-loop thread, and the achieved concurrency (from metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cliffbench.arrivals import closed_loop_think_times_s, poisson_offsets_s
from cliffbench.engines.base import Engine, GenRequest, RequestRejected

__all__ = ["LAG_PROBE_INTERVAL_S", "MEMORY_SAMPLE_INTERVAL_S", "LevelRun", "RequestRecord", "run_level"]

LAG_PROBE_INTERVAL_S = 0.005
MEMORY_SAMPLE_INTERVAL_S = 0.05


@dataclass(slots=True)
class RequestRecord:
    """Raw facts of one request; times are perf_counter seconds relative to the level start."""

    request_id: int
    warmup: bool
    prompt_tokens: int
    max_tokens: int
    t_submit_s: float
    status: str = "ok"
    error: str = ""
    t_scheduled_s: float = float("nan")
    token_times_s: list[float] = field(default_factory=list)

    @property
    def output_tokens(self) -> int:
        return len(self.token_times_s)


@dataclass
class LevelRun:
    records: list[RequestRecord]
    memory: list[tuple[float, int, int, int, int]]  # t_s, reserved, live, live_seqs, waiting
    lag_s: np.ndarray
    loop_cpu_s: float
    wall_s: float

    @property
    def loop_cpu_share(self) -> float:
        """CPU seconds of the event-loop thread per wall second (1.0 = one core busy)."""
        return self.loop_cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


async def _one(engine: Engine, req: GenRequest, t0: float, warmup: bool, timeout_s: float) -> RequestRecord:
    rec = RequestRecord(req.request_id, warmup, req.prompt_tokens, req.max_tokens, time.perf_counter() - t0)
    times = rec.token_times_s
    try:
        async with asyncio.timeout(timeout_s):
            async for ev in engine.stream(req):
                times.append(ev.t_s - t0)
                if ev.t_scheduled_s is not None and len(times) == 1:
                    rec.t_scheduled_s = ev.t_scheduled_s - t0
    except TimeoutError:
        rec.status, rec.error = "timeout", f"no completion within request_timeout_s={timeout_s}"
    except RequestRejected as exc:
        rec.status, rec.error = "rejected", str(exc)
    except asyncio.CancelledError:
        rec.status, rec.error = "failed", "cancelled"
        raise
    except Exception as exc:  # one request's failure is data, not a crash of the level
        rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
    else:
        if len(times) != req.max_tokens:
            rec.status = "failed"
            rec.error = f"engine returned {len(times)} tokens, asked for exactly {req.max_tokens}"
    return rec


class _LagProbe:
    """Event-loop lag as the engines see it: a thread posts a callback every
    LAG_PROBE_INTERVAL_S with `call_soon_threadsafe`, the path token events take from an engine
    thread, and the loop records how long the callback waited before it ran. A timer-based probe
    would also count epoll's rounding of timeouts up to whole milliseconds, which no token sees."""

    def __init__(self, loop: asyncio.AbstractEventLoop, out: list[float]) -> None:
        self._loop, self._out = loop, out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cliffbench-lag-probe", daemon=True)

    def _record(self, t_post: float) -> None:
        self._out.append(time.perf_counter() - t_post)

    def _run(self) -> None:
        while not self._stop.wait(LAG_PROBE_INTERVAL_S):
            try:
                self._loop.call_soon_threadsafe(self._record, time.perf_counter())
            except RuntimeError:  # the loop closed under us: nothing left to measure
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def _memory_probe(
    engine: Engine, t0: float, out: list[tuple[float, int, int, int, int]], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        m = engine.memory()
        out.append((time.perf_counter() - t0, m.reserved_bytes, m.live_bytes, m.live_seqs, m.waiting))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MEMORY_SAMPLE_INTERVAL_S)


async def run_level(
    engine: Engine,
    requests: Sequence[GenRequest],
    *,
    concurrency: int | None = None,
    rate_rps: float | None = None,
    burstiness: float = 1.0,
    think_time_s: float = 0.0,
    duration_s: float | None = None,
    warmup: Sequence[GenRequest] = (),
    request_timeout_s: float = 600.0,
    seed: int = 0,
    on_record: Callable[[RequestRecord], None] | None = None,
) -> LevelRun:
    """Run one level. Exactly one of `concurrency` (closed loop) or `rate_rps` (open loop).
    With `duration_s`, no request is submitted after that many seconds (in-flight ones finish)."""
    if (concurrency is None) == (rate_rps is None):
        raise ValueError("give exactly one of concurrency or rate_rps")
    rng = np.random.default_rng(seed)
    records: list[RequestRecord] = []
    memory: list[tuple[float, int, int, int, int]] = []
    lags: list[float] = []
    stop = asyncio.Event()
    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    probes = [asyncio.create_task(_memory_probe(engine, t0, memory, stop))]
    lag_probe = _LagProbe(asyncio.get_running_loop(), lags)
    lag_probe.start()

    def done(rec: RequestRecord) -> None:
        records.append(rec)
        if on_record is not None:
            on_record(rec)

    try:
        if warmup:
            n_warm = concurrency or max(1, len(warmup))
            await _closed_loop(engine, list(warmup), n_warm, t0, True, request_timeout_s, None, None, done)
        if concurrency is not None:
            think = closed_loop_think_times_s(concurrency, len(requests), think_time_s, rng)
            deadline = None if duration_s is None else time.perf_counter() + duration_s
            await _closed_loop(engine, list(requests), concurrency, t0, False, request_timeout_s, think, deadline, done)
        else:
            assert rate_rps is not None
            offsets = poisson_offsets_s(len(requests), rate_rps, burstiness, rng)
            await _open_loop(engine, list(requests), offsets, t0, request_timeout_s, duration_s, done)
    finally:
        stop.set()
        lag_probe.stop()
        await asyncio.gather(*probes, return_exceptions=True)
    wall = time.perf_counter() - t0
    return LevelRun(records, memory, np.asarray(lags), time.thread_time() - cpu0, wall)


async def _closed_loop(
    engine: Engine,
    reqs: list[GenRequest],
    n_users: int,
    t0: float,
    warmup: bool,
    timeout_s: float,
    think_s: np.ndarray | None,
    deadline: float | None,
    done: Callable[[RequestRecord], None],
) -> None:
    it = iter(enumerate(reqs))

    async def user() -> None:
        for i, req in it:  # a shared iterator: whichever user is free takes the next request
            if deadline is not None and time.perf_counter() >= deadline:
                return
            if think_s is not None and think_s[i] > 0:
                await asyncio.sleep(float(think_s[i]))
            done(await _one(engine, req, t0, warmup, timeout_s))

    await _gather_or_cancel([user() for _ in range(min(n_users, len(reqs)))])


async def _open_loop(
    engine: Engine,
    reqs: list[GenRequest],
    offsets_s: np.ndarray,
    t0: float,
    timeout_s: float,
    duration_s: float | None,
    done: Callable[[RequestRecord], None],
) -> None:
    start = time.perf_counter()  # absolute schedule: sleeping against `start` never drifts

    async def send(req: GenRequest, at_s: float) -> None:
        await _sleep_until(start + at_s)
        done(await _one(engine, req, t0, False, timeout_s))

    pairs = [(r, float(o)) for r, o in zip(reqs, offsets_s, strict=True)]
    if duration_s is not None:
        pairs = [(r, o) for r, o in pairs if o < duration_s]
    await _gather_or_cancel([send(r, o) for r, o in pairs])


# epoll rounds a timer's timeout up to whole milliseconds, so a plain sleep fires up to ~1 ms late:
# enough to bend Poisson inter-arrival gaps of a few ms. Sleep to just short of the target, then yield.
_SPIN_S = 0.002


async def _sleep_until(t: float) -> None:
    """Return at perf_counter time `t`, typically within tens of microseconds."""
    left = t - time.perf_counter()
    if left > _SPIN_S:
        await asyncio.sleep(left - _SPIN_S)
    while time.perf_counter() < t:
        await asyncio.sleep(0)  # yields to every ready callback, so the spin delays no token


async def _gather_or_cancel(coros: list[object]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]  # type: ignore[call-overload]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

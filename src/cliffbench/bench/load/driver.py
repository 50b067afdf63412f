"""One sweep level: a precomputed schedule -> `engine.stream` -> per-request records.

Closed loop: N users (bench/load/users.py), each sending the requests its script yields, the next when
its previous one ends (plus an optional think time); they start spread over `ramp_s` seconds.
Open loop: requests are submitted at precomputed offsets from an absolute start time (Poisson /
gamma), however many are in flight. Warm-up requests run first, at the level's concurrency, and
are recorded with `warmup=True`; `ramp_s="auto"` is the median duration of the ok warm-up
requests (bench/metrics/phases.py says why).

The harness checks itself while it measures: event-loop lag (how long a callback posted from
another thread waits for the loop, as a token event does), how late a thread gets the GIL (as an engine's
worker thread must before it hands a token over), the CPU time of the event-loop thread, and the
achieved concurrency (from metrics).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cliffbench.bench.load.arrivals import closed_loop_think_times_s, poisson_offsets_s
from cliffbench.bench.load.lag import LAG_PROBE_INTERVAL_S, LagProbe
from cliffbench.bench.load.memory_probe import MemorySample, sample_memory
from cliffbench.bench.load.sessions import SessionDraw
from cliffbench.bench.load.users import (
    OwnCancels,
    Sent,
    SharedDraw,
    User,
    WindowEnd,
    gather_or_cancel,
    ramp_offsets_s,
    run_users,
)
from cliffbench.bench.workload.reuse import SessionPlan, SessionRequests
from cliffbench.engines.base import Engine, GenRequest, RequestRejected

__all__ = [
    "LAG_PROBE_INTERVAL_S",
    "ClientInfo",
    "LevelRun",
    "Probes",
    "RequestRecord",
    "run_level",
]


@dataclass(frozen=True)
class Probes:
    """Which of the harness's self-checks run during a level (all of them in a study; the
    overhead benchmark switches each off in turn to price it)."""

    lag: bool = True  # the lag / GIL-wait probe thread
    memory: bool = True  # the KV-memory sampler


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
    t_done_s: float = float("nan")  # the stream closed (or failed): the client stops holding the request
    token_times_s: list[float] = field(default_factory=list)
    user: int = -1  # the closed-loop user that sent it (-1: open loop)
    token_ids: list[int] = field(default_factory=list)  # as generated: a session's next turn re-sends them
    cached_tokens: float = float("nan")  # prompt tokens served from the engine's cache (NaN: unknown)

    @property
    def output_tokens(self) -> int:
        return len(self.token_times_s)


class ClientInfo(BaseModel):
    """One client process of a level whose users were split over several (`load.client_processes`):
    its share of the load, its clock against the parent's, and the harness checks of its own loop."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    index: int = Field(ge=0)
    pid: int
    host: str
    users: int | None = Field(None, description="closed loop: the users this client ran")
    rate_rps: float | None = Field(None, description="open loop: this client's share of the rate")
    requests: int = Field(description="measured requests given to this client")
    clock_offset_s: float = Field(description="client perf_counter minus the parent's (min-RTT exchange)")
    clock_rtt_s: float = Field(description="round trip of the exchange that set the offset: error <= half of it")
    start_late_s: float = Field(description="the client's level start after the common start time, parent clock")
    wall_s: float
    lag_p99_s: float
    lag_samples: int
    thread_wait_p99_s: float
    loop_cpu_share: float
    achieved_concurrency: float = Field(description="time-weighted requests in flight of this client alone")
    http_retried: int = 0


@dataclass
class LevelRun:
    records: list[RequestRecord]
    memory: list[MemorySample]
    lag_s: np.ndarray
    thread_wait_s: np.ndarray
    loop_cpu_s: float
    wall_s: float
    t0_s: float = float("nan")  # perf_counter when the level started: record times count from it
    clients: list[ClientInfo] = field(default_factory=list)  # empty: the load ran in this process
    ramp_s: float = 0.0  # the users' starts spread over this (closed loop); the fill-up phase (open loop)
    window_end_s: float | None = None  # closed loop stopped at its steady window's end: when (from t0)

    # with several client processes the level is as good as its worst client: a lagging one delays
    # its own requests whatever the others do, so each check is the worst client's
    @property
    def lag_p99_s(self) -> float:
        return max(c.lag_p99_s for c in self.clients) if self.clients else _p99(self.lag_s)

    @property
    def thread_wait_p99_s(self) -> float:
        return max(c.thread_wait_p99_s for c in self.clients) if self.clients else _p99(self.thread_wait_s)

    @property
    def loop_cpu_share(self) -> float:
        """CPU seconds of the event-loop thread per wall second (1.0 = one core busy)."""
        if self.clients:
            return max(c.loop_cpu_share for c in self.clients)
        return self.loop_cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


STOPPED = "drain: stopped at the steady window's end"


def _p99(samples: np.ndarray) -> float:
    return float(np.percentile(samples, 99)) if samples.size else float("nan")


async def _one(
    engine: Engine,
    req: GenRequest,
    t0: float,
    warmup: bool,
    deadlines: _Deadlines,
    user: int = -1,
    end: WindowEnd | None = None,
) -> RequestRecord:
    rec = RequestRecord(req.request_id, warmup, req.prompt_tokens, req.max_tokens, time.perf_counter() - t0)
    rec.user = user
    times, ids = rec.token_times_s, rec.token_ids
    task = deadlines.enter()
    try:
        async for ev in engine.stream(req):
            times.append(ev.t_s - t0)
            ids.append(ev.token_id)
            if ev.cached_tokens is not None:
                rec.cached_tokens = ev.cached_tokens
            if ev.t_scheduled_s is not None and len(times) == 1:
                rec.t_scheduled_s = ev.t_scheduled_s - t0
    except RequestRejected as exc:
        rec.status, rec.error = "rejected", str(exc)
    except asyncio.CancelledError:
        if deadlines.expired(task):
            rec.status, rec.error = "timeout", deadlines.message
        elif end is not None and end.stopped(task):
            rec.status, rec.error = "stopped", STOPPED
        else:
            rec.status, rec.error = "failed", "cancelled"
            raise
    except Exception as exc:  # one request's failure is data, not a crash of the level
        if deadlines.expired(task):  # the engine turned the watchdog's cancel into its own error
            rec.status, rec.error = "timeout", deadlines.message
        elif end is not None and end.stopped(task):
            rec.status, rec.error = "stopped", STOPPED
        else:
            rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
    else:
        if len(times) != req.max_tokens:
            rec.status = "failed"
            rec.error = f"engine returned {len(times)} tokens, asked for exactly {req.max_tokens}"
    finally:
        rec.t_done_s = time.perf_counter() - t0
        deadlines.leave(task)
    return rec


class _Deadlines:
    """Per-request timeouts enforced by one watchdog task. `asyncio.timeout` costs about 9 us per
    request on CPython 3.11 (a timer handle pushed and cancelled each time): a tenth of an instant
    request, enough to show as missing concurrency. The watchdog wakes every `step_s` and cancels
    the tasks whose request is overdue, so a timeout fires up to `step_s` late."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.message = f"no completion within request_timeout_s={timeout_s}"
        self.step_s = min(timeout_s / 10, 0.25)
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired = OwnCancels()

    def enter(self) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None  # _one always runs inside a task
        self._due[task] = time.perf_counter() + self.timeout_s
        return task

    def leave(self, task: asyncio.Task[Any]) -> None:
        del self._due[task]
        if self._expired:  # a cancel that raced the request's end must not hit the next request
            self.expired(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """True (once) when the watchdog cancelled `task`; the cancellation is then consumed."""
        return self._expired.claim(task)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.step_s)
            now = time.perf_counter()
            for task, due_s in list(self._due.items()):
                if due_s <= now and task not in self._expired:
                    self._expired.cancel(task)


async def run_level(
    engine: Engine,
    requests: Sequence[GenRequest],
    *,
    concurrency: int | None = None,
    rate_rps: float | None = None,
    burstiness: float = 1.0,
    think_time_s: float = 0.0,
    ramp_s: float | Literal["auto"] = 0.0,
    duration_s: float | None = None,
    warmup: Sequence[GenRequest] = (),
    request_timeout_s: float = 600.0,
    seed: int = 0,
    on_record: Callable[[RequestRecord], None] | None = None,
    probes: Probes = Probes(),
    sessions: SessionPlan | None = None,
    end_at_window: bool = False,
) -> LevelRun:
    """Run one level. Exactly one of `concurrency` (closed loop) or `rate_rps` (open loop).
    With `duration_s`, no request is submitted after that many seconds (in-flight ones finish).
    `ramp_s`: closed loop, the users start spread over it (`ramp_offsets_s`); open loop, it only
    marks the fill-up phase. "auto": the median wall of the ok warm-up requests (0 without one).
    `sessions` (closed loop; taken from `requests` when it is a `SessionRequests`): the users hold
    these conversations (`requests` is `sessions.requests`),
    with the plan's think times between turns instead of `think_time_s`.
    `end_at_window` (closed loop): stop the level where its steady window ends (`WindowEnd`)."""
    if (concurrency is None) == (rate_rps is None):
        raise ValueError("give exactly one of concurrency or rate_rps")
    if sessions is None and isinstance(requests, SessionRequests):
        sessions = requests.plan
    rng = np.random.default_rng(seed)
    records: list[RequestRecord] = []
    memory: list[MemorySample] = []
    lags: list[float] = []
    waits: list[float] = []
    stop = asyncio.Event()
    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    deadlines = _Deadlines(request_timeout_s)
    samplers = [asyncio.create_task(sample_memory(engine, t0, memory, stop))] if probes.memory else []
    watchdog = asyncio.create_task(deadlines.watch())
    lag_probe = LagProbe(asyncio.get_running_loop(), lags, waits) if probes.lag else None
    if lag_probe is not None:
        lag_probe.start()

    def done(rec: RequestRecord) -> None:
        records.append(rec)
        if on_record is not None:
            on_record(rec)

    ramp = 0.0 if ramp_s == "auto" else ramp_s
    window_end: float | None = None
    try:
        if warmup:
            n_warm = concurrency or max(1, len(warmup))
            await _closed_loop(engine, list(warmup), n_warm, t0, True, deadlines, None, None, done)
            if ramp_s == "auto":
                ramp = _typical_wall_s([r for r in records if r.warmup])
        if concurrency is not None:
            draws = closed_loop_think_times_s(concurrency, len(requests), think_time_s, rng)
            # plain floats, and None without think time: this path runs between a user's requests
            think = draws.tolist() if think_time_s > 0 else None
            if sessions is not None:
                think = sessions.think_s
            deadline = None if duration_s is None else time.perf_counter() + duration_s
            starts = ramp_offsets_s(concurrency, ramp, rng) if ramp > 0 else None
            window_end = await _closed_loop(
                engine, list(requests), concurrency, t0, False, deadlines, think, deadline, done, starts, sessions,
                end_at_window,
            )  # fmt: skip
        else:
            assert rate_rps is not None
            offsets = poisson_offsets_s(len(requests), rate_rps, burstiness, rng)
            await _open_loop(engine, list(requests), offsets, t0, deadlines, duration_s, done)
    finally:
        stop.set()
        watchdog.cancel()
        if lag_probe is not None:
            lag_probe.stop()
        await asyncio.gather(*samplers, watchdog, return_exceptions=True)
    wall = time.perf_counter() - t0
    cpu_s = time.thread_time() - cpu0
    return LevelRun(
        records, memory, np.asarray(lags), np.asarray(waits), cpu_s, wall, t0, ramp_s=ramp, window_end_s=window_end
    )


def _typical_wall_s(records: list[RequestRecord]) -> float:
    """Median submit-to-close wall of the ok `records` (0.0 without one)."""
    walls = [r.t_done_s - r.t_submit_s for r in records if r.status == "ok"]
    return float(np.median(walls)) if walls else 0.0


async def _closed_loop(
    engine: Engine,
    reqs: list[GenRequest],
    n_users: int,
    t0: float,
    warmup: bool,
    deadlines: _Deadlines,
    think_s: list[float] | None,
    deadline: float | None,
    done: Callable[[RequestRecord], None],
    starts_s: np.ndarray | None = None,
    sessions: SessionPlan | None = None,
    end_at_window: bool = False,
) -> float | None:
    """`n_users` users (fewer when there are fewer requests) drawing from `reqs` (`SharedDraw`), or
    holding the conversations of `sessions`. With `end_at_window` they stop where the steady window
    ends (`WindowEnd`), and the return is when that was (from t0): the leaving user's last close."""
    draw: SharedDraw | SessionDraw = SharedDraw(reqs) if sessions is None else SessionDraw(sessions)
    n = min(n_users, len(reqs))
    end = WindowEnd(n) if end_at_window else None
    last_done: dict[int, float] = {}

    async def send(user: int, req: GenRequest) -> Sent:
        rec = await _one(engine, req, t0, warmup, deadlines, user, end)
        done(rec)
        last_done[user] = rec.t_done_s
        return Sent(req, rec.status, rec.output_tokens, tuple(rec.token_ids))

    offsets = [0.0] * n if starts_s is None else [float(x) for x in starts_s[:n]]
    users = [User(u, draw.script_for(u), offsets[u], think_s) for u in range(n)]
    await run_users(users, send, time.perf_counter(), deadline, end)
    return None if end is None or end.leaver is None else last_done.get(end.leaver)


async def _open_loop(
    engine: Engine,
    reqs: list[GenRequest],
    offsets_s: np.ndarray,
    t0: float,
    deadlines: _Deadlines,
    duration_s: float | None,
    done: Callable[[RequestRecord], None],
) -> None:
    start = time.perf_counter()  # absolute schedule: sleeping against `start` never drifts

    async def send(req: GenRequest, at_s: float) -> None:
        await _sleep_until(start + at_s)
        done(await _one(engine, req, t0, False, deadlines))

    pairs = [(r, float(o)) for r, o in zip(reqs, offsets_s, strict=True)]
    if duration_s is not None:
        pairs = [(r, o) for r, o in pairs if o < duration_s]
    await gather_or_cancel([send(r, o) for r, o in pairs])


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

"""The users of a closed-loop level: each owns the sequence of requests it sends.

A level's driver runs `User`s. A user starts at its offset in the ramp, then asks its script for
its next request, given what its previous request returned, sends it, and repeats until the
script has nothing more to send. What a user sends is the script's business alone: today's
workloads are independent single requests, so a user's sequence is what it draws from the level's
shared request list (`SharedDraw`), in the order users come free, exactly as the shared iterator
of a closed loop did before users existed. A multi-turn session is another script (its next turn
holds the previous answer's token ids, which `RequestRecord` hands back), with no change here or
in the load generator.

Users arrive spread out: over `ramp_s` seconds, in stratified seeded jitter (user u starts at a
uniform draw within the u-th of N equal slots of the ramp), so the starts are spread evenly with
no two users synchronised, and the same seed gives the same starts on every engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from cliffbench.bench.metrics.phases import leavers_at_close
from cliffbench.engines.base import GenRequest

__all__ = [
    "OwnCancels",
    "Sent",
    "SharedDraw",
    "User",
    "UserScript",
    "WindowEnd",
    "gather_or_cancel",
    "ramp_offsets_s",
    "run_users",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Sent:
    """What a user's previous request returned: its request, status, answer length and the answer's
    token ids as generated (-1s where the engine only sees text)."""

    request: GenRequest
    status: str
    output_tokens: int
    output_token_ids: tuple[int, ...] = ()


class UserScript(Protocol):
    """The requests one user sends. `next_request(None)` is its first; then the previous request's
    outcome is passed back. None: the user is done."""

    def next_request(self, previous: Sent | None) -> tuple[int, GenRequest] | None:
        """(index of the request in the level's list, the request), or None when done."""
        ...


class SharedDraw:
    """Independent single requests: every user draws the next request of one shared list when it
    comes free. Built once per level and handed to every user (`script_for`)."""

    def __init__(self, requests: Sequence[GenRequest]) -> None:
        self._it: Iterator[tuple[int, GenRequest]] = iter(enumerate(requests))

    def next_request(self, previous: Sent | None) -> tuple[int, GenRequest] | None:
        return next(self._it, None)

    def script_for(self, user: int) -> UserScript:
        return self  # nothing of a user's own: the list is shared


def ramp_offsets_s(n_users: int, ramp_s: float, rng: np.random.Generator) -> FloatArray:
    """Start offsets of `n_users` users over `ramp_s` seconds: user u uniformly within
    [u, u + 1) x ramp_s / n_users (stratified jitter), user 0 at 0. All zeros when `ramp_s` is 0
    (every user at once: the burst). Nothing is drawn for a burst, so the rng stream of a level
    without a ramp is what it was before ramps existed."""
    if n_users <= 0:
        raise ValueError(f"users: n_users must be > 0, got {n_users}")
    if not ramp_s >= 0:
        raise ValueError(f"users: ramp_s must be >= 0, got {ramp_s}")
    if ramp_s == 0:
        return np.zeros(n_users, dtype=np.float64)
    slot_s = ramp_s / n_users
    offsets: FloatArray = (np.arange(n_users) + rng.uniform(0.0, 1.0, size=n_users)) * slot_s
    offsets[0] = 0.0  # the level starts with its first user, so its wall holds no idle lead
    return offsets


# sends request `req` for user `user`, records it, and says what it returned
Send = Callable[[int, GenRequest], Awaitable[Sent]]


class OwnCancels:
    """The cancels one watcher made (a request's deadline, the window's end), each claimed once by the
    task it hit, so a task can tell a cancel it must turn into a record from one it must pass on."""

    def __init__(self) -> None:
        self._made: set[asyncio.Task[Any]] = set()

    def cancel(self, task: asyncio.Task[Any]) -> None:
        self._made.add(task)
        task.cancel()

    def __contains__(self, task: asyncio.Task[Any]) -> bool:
        return task in self._made

    def __bool__(self) -> bool:
        return bool(self._made)

    def claim(self, task: asyncio.Task[Any]) -> bool:
        """True (once) when this watcher cancelled `task`; the cancellation is then consumed."""
        if task not in self._made:
            return False
        self._made.discard(task)
        task.uncancel()
        return True


class WindowEnd:
    """Ends a closed-loop level where its steady window ends (bench/metrics/phases.py): when the
    (N - ceil(0.95 N) + 1)-th user leaves, fewer than 95% of the users are left, and every request
    still running, or sent later, is drain by definition. Waiting for them measured nothing the
    verdict reads and cost about one request's duration per level (a serial engine's whole queue:
    31 requests one after another at 32 users), so they are stopped: the engine aborts them, and
    `_one` records them with status "stopped". The steady requests are exactly those of a level
    that waits. `leaver`: the user whose leaving closed the window."""

    def __init__(self, n_users: int) -> None:
        self.leavers = leavers_at_close(n_users)
        self.tasks: list[asyncio.Task[None]] = []
        self.leaver: int | None = None  # the user whose leaving closed the window
        self._gone = 0
        self._stopped = OwnCancels()

    @property
    def reached(self) -> bool:
        return self.leaver is not None

    def left(self, user: int) -> None:
        """User `user` sent its last request; at the window's end every other user is stopped."""
        if self.reached:
            return
        self._gone += 1
        if self._gone < self.leavers:
            return
        self.leaver = user
        me = asyncio.current_task()
        for task in self.tasks:
            if task is not me and not task.done():
                self._stopped.cancel(task)

    def stopped(self, task: asyncio.Task[Any]) -> bool:
        """True (once) when the window's end cancelled `task`; the cancellation is then consumed."""
        return self._stopped.claim(task)


@dataclass
class User:
    """One user: starts `start_s` after the level's start, then sends what its script yields, one
    request at a time (after `think_s[i]` for request i, when given), until the script is done,
    `deadline` (perf_counter) has passed or the level's steady window ended (`end`)."""

    index: int
    script: UserScript
    start_s: float = 0.0
    think_s: list[float] | None = None
    sent: int = field(default=0, init=False)

    async def run(self, send: Send, t_start: float, deadline: float | None, end: WindowEnd | None = None) -> None:
        try:
            await self._run(send, t_start, deadline, end)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if end is None or task is None or not end.stopped(task):
                raise
            return  # stopped while waiting to start or thinking: nothing in flight
        if end is not None and not end.reached:
            end.left(self.index)

    async def _run(self, send: Send, t_start: float, deadline: float | None, end: WindowEnd | None) -> None:
        if self.start_s > 0:
            await asyncio.sleep(max(0.0, t_start + self.start_s - time.perf_counter()))
        previous: Sent | None = None
        while (nxt := self.script.next_request(previous)) is not None:
            i, req = nxt
            if deadline is not None and time.perf_counter() >= deadline:
                return
            if self.think_s is not None and self.think_s[i] > 0:
                await asyncio.sleep(self.think_s[i])
            previous = await send(self.index, req)
            self.sent += 1
            if end is not None and end.reached:
                return


async def run_users(
    users: Sequence[User], send: Send, t_start: float, deadline: float | None, end: WindowEnd | None = None
) -> None:
    """Run every user to its end (or to the steady window's end, with `end`); a failure or cancel of
    one cancels the others."""
    tasks = [asyncio.ensure_future(u.run(send, t_start, deadline, end)) for u in users]
    if end is not None:
        end.tasks = tasks
    await _gather_tasks(tasks)


async def gather_or_cancel(coros: Sequence[Coroutine[Any, Any, object]]) -> None:
    """Await every coroutine; the first failure (or a cancel of the caller) cancels the rest, and
    none is left running when this returns."""
    await _gather_tasks([asyncio.ensure_future(c) for c in coros])


async def _gather_tasks(tasks: Sequence[asyncio.Future[Any]]) -> None:
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""A deterministic fake engine for unit-testing the load generator and the metrics plumbing.

Never used to claim anything about a real engine. A study names it as kind `fake` (the fast test
tier); its results are the harness's own, never an engine's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from cliffbench.engines.base import EngineError, GenRequest, KvMemory, TokenEvent
from cliffbench.engines.specs import FakeSpec

__all__ = ["FakeEngine"]


@dataclass(eq=False)
class _Stream:
    queue: asyncio.Queue[float]
    due_s: float
    left: int


class FakeEngine:
    """Yields `max_tokens` tokens: the first after `ttft_s`, the rest every `itl_s` seconds.
    `fail_every` > 0 makes every n-th request (by request_id) fail after its first token.

    `batched=True` steps like a real batching engine: one timer ticks every `itl_s` and hands
    every due sequence its token at once, instead of one timer per sequence per token. A study's
    `fake` engine also holds at most `max_batch` sequences; the others queue (their wait is
    `queue_s`) until one finishes. Its step takes `itl_s + itl_per_seq_s x batch`, so a search
    test can compute the batch-bound cliff by hand; `jitter` scales each step and first-token time
    by a seeded lognormal factor of mean 1."""

    def __init__(
        self,
        spec: FakeSpec | None = None,
        *,
        ttft_s: float = 0.0,
        itl_s: float = 0.0,
        fail_every: int = 0,
        name: str = "fake",
        batched: bool = False,
    ):
        if spec is not None:  # a study's `fake` engine: one timer steps every sequence, like a batch
            ttft_s, itl_s, fail_every, name, batched = spec.ttft_s, spec.itl_s, spec.fail_every, spec.name, True
        self.spec = spec
        self.name = name
        self.ttft_s, self.itl_s, self.fail_every = ttft_s, itl_s, fail_every
        self.batched = batched and itl_s > 0
        self.itl_per_seq_s = spec.itl_per_seq_s if spec is not None else 0.0
        jitter = spec.jitter if spec is not None else 0.0
        self._jitter = jitter
        self._rng = np.random.default_rng(spec.seed if spec is not None else 0)
        self.waiting = 0
        self.steps = 0
        self.decode_seqs = 0
        self._slots = asyncio.Semaphore(spec.max_batch) if spec is not None else None
        self.in_flight = 0
        self.peak_in_flight = 0
        self._active: list[_Stream] = []
        self._ticker: asyncio.Task[None] | None = None

    def _factor(self) -> float:
        """A lognormal factor of mean 1 (1.0 without jitter)."""
        j = self._jitter
        return float(self._rng.lognormal(-j * j / 2, j)) if j else 1.0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {
            "kind": "fake",
            "ttft_s": self.ttft_s,
            "itl_s": self.itl_s,
            "max_batch": self.spec.max_batch if self.spec is not None else None,
            "precision": "fp32",
        }

    def memory(self) -> KvMemory:
        return KvMemory(
            reserved_bytes=0,
            live_bytes=0,
            live_seqs=self.in_flight,
            waiting=self.waiting,
            steps=self.steps,
            decode_seqs=self.decode_seqs,
        )

    async def stream(self, request: GenRequest) -> AsyncIterator[TokenEvent]:
        if self._slots is not None:
            self.waiting += 1
            try:
                await self._slots.acquire()  # the batch is full: wait for a sequence to finish
            finally:
                self.waiting -= 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        t_sched = time.perf_counter()
        entry = (
            _Stream(asyncio.Queue(), t_sched + self.ttft_s * self._factor(), request.max_tokens)
            if self.batched
            else None
        )
        if entry is not None:
            self._active.append(entry)
            if self._ticker is None or self._ticker.done():
                self._ticker = asyncio.create_task(self._tick())
        try:
            for k in range(request.max_tokens):
                if entry is not None:
                    await entry.queue.get()
                else:
                    await asyncio.sleep(self.ttft_s if k == 0 else self.itl_s)
                if self.fail_every and k == 1 and request.request_id % self.fail_every == 0:
                    raise EngineError(f"fake failure of request {request.request_id}")
                yield TokenEvent(k, time.perf_counter(), t_scheduled_s=t_sched)
        finally:
            self.in_flight -= 1
            if entry is not None and entry in self._active:
                self._active.remove(entry)
            if self._slots is not None:
                self._slots.release()

    async def _tick(self) -> None:
        next_s = time.perf_counter()
        while self._active:
            step_s = (self.itl_s + self.itl_per_seq_s * len(self._active)) * self._factor()
            next_s += step_s  # an absolute grid: a late tick does not delay the ones after it
            await asyncio.sleep(max(0.0, next_s - time.perf_counter()))
            now = time.perf_counter()
            self.steps += 1
            self.decode_seqs += sum(1 for e in self._active if now + step_s / 2 >= e.due_s)
            for e in list(self._active):
                if now + step_s / 2 >= e.due_s:  # half a step of slack: ticks jitter both ways
                    e.queue.put_nowait(now)
                    e.due_s, e.left = now, e.left - 1  # decoding: a token at every step from now on
                    if e.left == 0:
                        self._active.remove(e)

"""A deterministic fake engine for unit-testing the load generator and the metrics plumbing.

Never used to claim anything about a real engine; it is not a study `kind`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from cliffbench.engines.base import EngineError, GenRequest, KvMemory, TokenEvent

__all__ = ["FakeEngine"]


class FakeEngine:
    """Yields `max_tokens` tokens: the first after `ttft_s`, the rest every `itl_s` seconds.
    `fail_every` > 0 makes every n-th request (by request_id) fail after its first token."""

    def __init__(self, ttft_s: float = 0.0, itl_s: float = 0.0, fail_every: int = 0, name: str = "fake"):
        self.name = name
        self.ttft_s, self.itl_s, self.fail_every = ttft_s, itl_s, fail_every
        self.in_flight = 0
        self.peak_in_flight = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {"kind": "fake", "ttft_s": self.ttft_s, "itl_s": self.itl_s}

    def memory(self) -> KvMemory:
        return KvMemory(reserved_bytes=0, live_bytes=0, live_seqs=self.in_flight, waiting=0)

    async def stream(self, request: GenRequest) -> AsyncIterator[TokenEvent]:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        t_sched = time.perf_counter()
        try:
            for k in range(request.max_tokens):
                await asyncio.sleep(self.ttft_s if k == 0 else self.itl_s)
                if self.fail_every and k == 1 and request.request_id % self.fail_every == 0:
                    raise EngineError(f"fake failure of request {request.request_id}")
                yield TokenEvent(k, time.perf_counter(), t_scheduled_s=t_sched)
        finally:
            self.in_flight -= 1

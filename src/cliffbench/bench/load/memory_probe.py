"""The KV-memory sampler of a level: the engine's memory and scheduler state every
MEMORY_SAMPLE_INTERVAL_S while the level runs, each sample a row of the level's memory table."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import NamedTuple

from cliffbench.engines.base import Engine

__all__ = ["ENGINE_COUNTS", "MEMORY_COLUMNS", "MEMORY_SAMPLE_INTERVAL_S", "MemorySample", "sample_memory"]

MEMORY_SAMPLE_INTERVAL_S = 0.05


class MemorySample(NamedTuple):
    """One reading of the engine's state during a level (a row of the level's memory table): its
    counts, then what a server scraped over HTTP adds (engines/server_metrics.py)."""

    t_s: float  # since the level started
    reserved_bytes: int
    live_bytes: int
    live_seqs: int
    waiting: int
    steps: int
    decode_seqs: int
    preemptions: int
    kv_usage: float
    queue_wait_sum_s: float
    queue_wait_count: int
    state_source: str


#: the memory table's columns, in order
MEMORY_COLUMNS = list(MemorySample._fields)
#: the engine's own counts: what the samples of several client processes add up
ENGINE_COUNTS = ("reserved_bytes", "live_bytes", "live_seqs", "waiting", "steps", "decode_seqs", "preemptions")


async def sample_memory(engine: Engine, t0: float, out: list[MemorySample], stop: asyncio.Event) -> None:
    """Append a sample of `engine`'s state to `out` every MEMORY_SAMPLE_INTERVAL_S until `stop`;
    times count from `t0` (perf_counter: the level's start)."""
    while not stop.is_set():
        m = engine.memory()
        out.append(
            MemorySample(
                t_s=time.perf_counter() - t0,
                reserved_bytes=m.reserved_bytes,
                live_bytes=m.live_bytes,
                live_seqs=m.live_seqs,
                waiting=m.waiting,
                steps=m.steps,
                decode_seqs=m.decode_seqs,
                preemptions=m.preemptions,
                kv_usage=m.kv_usage,
                queue_wait_sum_s=m.queue_wait_sum_s,
                queue_wait_count=m.queue_wait_count,
                state_source=m.source,
            )
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MEMORY_SAMPLE_INTERVAL_S)

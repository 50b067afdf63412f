"""Each engine's real KV reuse, per request: a session's second turn on vLLM with prefix caching
reports its history as cached (to vLLM's block granularity); reuse off reports 0 cached."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cliffbench.engines import GenRequest, make_engine
from cliffbench.engines.base import TokenEvent
from cliffbench.engines.specs import LlamaCppSlotsSpec, VllmSpec

pytestmark = pytest.mark.engine

_BLOCK = 32  # the CPU attention backend needs a multiple of 32


async def _turns(engine: Any, first: list[int], user: list[int], answer_tokens: int) -> tuple[list[TokenEvent], ...]:
    """Turn 1, then turn 2 = turn 1's prompt + its answer's ids + a new user message."""
    one = [ev async for ev in engine.stream(GenRequest(0, tuple(first), answer_tokens))]
    history = (*first, *(ev.token_id for ev in one))
    two = [ev async for ev in engine.stream(GenRequest(1, (*history, *user), answer_tokens))]
    return one, two


async def _with(spec: Any, first: list[int], user: list[int]) -> tuple[list[TokenEvent], ...]:
    engine = make_engine(spec)
    await engine.start()
    try:
        return await _turns(engine, first, user, 20)
    finally:
        await engine.stop()


@pytest.mark.vllm
def test_vllm_second_turn_reports_its_history_cached(prompts: list[list[int]]) -> None:
    spec = VllmSpec(
        dtype="float32", max_model_len=512, kv_cache_gib=0.25, enable_prefix_caching=True, block_size=_BLOCK
    )
    first, user = (prompts[0] * 8)[:100], (prompts[1] * 4)[:10]
    one, two = asyncio.run(_with(spec, first, user))
    assert one[0].cached_tokens == 0  # cold: nothing to reuse
    history = len(first) + len(one)
    # the last answer token was sampled, never fed back, so its KV does not exist; only full blocks
    # are cached and shared
    floor = (history - 1) // _BLOCK * _BLOCK
    cached = two[0].cached_tokens
    assert cached is not None and floor <= cached <= history


@pytest.mark.vllm
def test_vllm_reuse_off_reports_zero_cached(vllm_session: Any, prompts: list[list[int]]) -> None:
    loop, engine = vllm_session  # the shared test engine: prefix caching off
    first, user = (prompts[0] * 8)[:100], (prompts[1] * 4)[:10]
    one, two = loop.run_until_complete(_turns(engine, first, user, 20))
    assert one[0].cached_tokens == 0 and two[0].cached_tokens == 0


def test_llamacpp_slots_report_zero_cached(prompts: list[list[int]]) -> None:
    # the in-process slot engine drops a slot's KV when its request ends: no reuse yet, and it says so
    first, user = (prompts[0] * 8)[:100], (prompts[1] * 4)[:10]
    one, two = asyncio.run(_with(LlamaCppSlotsSpec(slots=2, ctx_per_slot=256), first, user))
    assert [ev.cached_tokens for ev in (one[0], two[0])] == [0, 0]

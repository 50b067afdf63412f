"""Each engine's real KV reuse, per request: a session's second turn on vLLM with prefix caching
reports its history as cached (to vLLM's block granularity), a llama.cpp slot all of it but the last
answer token, and the same greedy answer; reuse off reports 0 cached."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cliffbench.engines import GenRequest, make_engine
from cliffbench.engines.base import TokenEvent
from cliffbench.engines.specs import LlamaCppSerialSpec, LlamaCppSlotsSpec, VllmSpec

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


# -- llama.cpp: llama-server's prompt reuse --------------------------------------------------------

LLAMACPP = [LlamaCppSerialSpec(n_ctx=512), LlamaCppSlotsSpec(slots=2, ctx_per_slot=256)]


@pytest.mark.parametrize("spec", LLAMACPP, ids=["serial", "slots"])
def test_llamacpp_second_turn_reuses_the_history(spec: Any, prompts: list[list[int]]) -> None:
    first, user = (prompts[0] * 8)[:100], (prompts[1] * 4)[:10]
    on = asyncio.run(_with(spec.model_copy(update={"cache_prompt": True}), first, user))
    off = asyncio.run(_with(spec, first, user))
    assert [ev.cached_tokens for ev in (off[0][0], off[1][0])] == [0, 0]  # reuse off: all computed, and said so
    history = len(first) + len(on[0])
    # exactly the history less its last token: the final answer token was sampled, never decoded, so
    # the slot's KV holds the prompt and all answer tokens but that one
    assert [ev.cached_tokens for ev in (on[0][0], on[1][0])] == [0, history - 1]
    # reuse leaves the first turn as it was; the second turn's greedy ids agree on their start only: the
    # reused history's KV was computed a token at a time, the cold one in one batch, and the kernels round
    # the two differently (on the bundled Q4_1 model they part at the 8th token). llama-server's README
    # warns the same of cache_prompt ("can cause nondeterministic results")
    on_ids, off_ids = ([[ev.token_id for ev in turn] for turn in run] for run in (on, off))
    assert on_ids[0] == off_ids[0]
    assert on_ids[1][:4] == off_ids[1][:4]


def test_llamacpp_slots_send_a_conversation_back_to_its_slot(prompts: list[list[int]]) -> None:
    """Two conversations on two slots: B's second turn goes to B's slot by its longest common
    prefix, although A's slot is the least recently used one."""
    spec = LlamaCppSlotsSpec(slots=2, ctx_per_slot=256, cache_prompt=True)

    async def run() -> list[list[TokenEvent]]:
        engine = make_engine(spec)
        await engine.start()
        try:
            a = [ev async for ev in engine.stream(GenRequest(0, tuple(prompts[0] * 4), 8))]
            b_prompt = tuple(prompts[2] * 4)
            b = [ev async for ev in engine.stream(GenRequest(1, b_prompt, 8))]
            b2_prompt = (*b_prompt, *(ev.token_id for ev in b), *prompts[3])
            b2 = [ev async for ev in engine.stream(GenRequest(2, b2_prompt, 8))]
            return [a, b, b2]
        finally:
            await engine.stop()

    a, b, b2 = asyncio.run(run())
    assert (a[0].cached_tokens, b[0].cached_tokens) == (0, 0)
    assert b2[0].cached_tokens == len(prompts[2] * 4) + len(b) - 1


def test_llamacpp_shared_kv_frees_idle_slots_when_full(prompts: list[list[int]]) -> None:
    """One KV of 256 cells shared by two slots: the first request's kept 219 tokens leave no room
    for a second, different 200-token prompt, so the idle slot's tokens go (as llama-server purges
    idle slots) and the request runs, cold."""
    spec = LlamaCppSlotsSpec(slots=2, ctx_per_slot=128, kv_unified=True, cache_prompt=True)
    one, two = (prompts[0] * 100)[:200], (prompts[1] * 100)[:200]

    async def run() -> list[list[TokenEvent]]:
        engine = make_engine(spec)
        await engine.start()
        try:
            return [[ev async for ev in engine.stream(GenRequest(i, tuple(p), 20))] for i, p in enumerate((one, two))]
        finally:
            await engine.stop()

    first, second = asyncio.run(run())
    assert len(first) == len(second) == 20 and second[0].cached_tokens == 0

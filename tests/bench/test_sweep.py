"""Real sweeps on the bundled model, resume after a crash, failures stored per level."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cliffbench.bench import plan, sweep
from cliffbench.bench.load.clients import run_split
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import load_results

pytestmark = pytest.mark.engine

LEVELS = {
    "name": "chat",
    "workload": {"kind": "fixed", "prompt": {"mean": 16}, "output": {"mean": 12}},
    # 4 steady requests per level: 4 + 2 x users requests (bench/metrics/phases.py)
    "load": {"concurrency": [1, 2, 4], "requests_per_level": 4, "steady_requests": 4, "warmup_requests": 1},
}
N_REQUESTS = [6, 8, 12]


def _spec(engines: list[dict[str, Any]], name: str = "t") -> StudySpec:
    return StudySpec.model_validate({"name": name, "engines": engines, "level_sets": [LEVELS]})


def _check(res: Any, engine: str) -> None:
    lv = res.levels[res.levels.engine == engine].sort_values("concurrency")
    assert lv["status"].tolist() == ["ok"] * 3, lv["error"].tolist()
    assert lv["n_ok"].tolist() == N_REQUESTS
    assert (lv["output_tok_s"] > 0).all() and (lv["ttft_s_p50"] > 0).all()
    req = res.requests[(res.requests.engine == engine) & ~res.requests.warmup]
    assert (req["output_tokens"] == 12).all() and (req["prompt_tokens"] == 16).all()
    # every request stored with its user and phase; each level reached its steady window
    assert set(req["phase"]) <= {"ramp", "steady", "drain"} and (lv["n_steady"] > 0).all()
    assert (lv["n_ramp"] + lv["n_steady"] + lv["n_drain"]).tolist() == N_REQUESTS
    assert [req.loc[req.concurrency == c, "user"].nunique() for c in (1, 2, 4)] == [1, 2, 4]
    tok = res.tokens[res.tokens.engine == engine]
    assert len(tok) == 12 * (sum(N_REQUESTS) + 3)  # warm-up tokens are stored too, marked through `requests`


def test_llamacpp_slots_sweep(model: Any, tmp_path: Path) -> None:
    spec = _spec([{"kind": "llamacpp-slots", "slots": 4, "ctx_per_slot": 128}])
    sweep.run_study(spec, root=tmp_path)
    res = load_results("t", root=tmp_path)
    _check(res, "llamacpp-slots")
    assert res.manifest.engines["llamacpp-slots"]["slots"] == 4
    assert res.manifest.versions["llama-cpp-python"]
    mem = res.memory[res.memory.engine == "llamacpp-slots"]
    assert (mem["reserved_bytes"] == 4 * 128 * 2 * 30 * 3 * 64 * 2).all()


@pytest.mark.vllm
def test_vllm_sweep(vllm_session: Any, tmp_path: Path) -> None:
    from tests.conftest import VLLM_TEST_SPEC

    loop, engine = vllm_session
    spec = _spec([VLLM_TEST_SPEC.model_dump()])
    loop.run_until_complete(sweep.run_study_async(spec, root=tmp_path, engines={"vllm": engine}))
    res = load_results("t", root=tmp_path)
    _check(res, "vllm")
    assert res.levels["cfg_omp_threads_bind"].iloc[0] != "auto"


def test_resume_after_crash(model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec([{"kind": "llamacpp-serial", "n_ctx": 128}])
    real = run_split
    calls = {"n": 0}

    async def dies_on_second(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of level 2
        return await real(*a, **k)

    monkeypatch.setattr(sweep, "run_split", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(spec, root=tmp_path)
    first = tmp_path / "t" / "levels" / "llamacpp-serial__chat__c0001" / "level.json"
    assert first.is_file()
    assert not (tmp_path / "t" / "levels" / "llamacpp-serial__chat__c0002").exists()
    mtime = first.stat().st_mtime_ns
    monkeypatch.setattr(sweep, "run_split", real)
    sweep.run_study(spec, root=tmp_path)
    assert first.stat().st_mtime_ns == mtime  # the finished level was kept, not redone
    _check(load_results("t", root=tmp_path), "llamacpp-serial")


def test_no_orphan_threads_after_sweep(model: Any, tmp_path: Path) -> None:
    import threading

    spec = _spec([{"kind": "llamacpp-slots", "slots": 2, "ctx_per_slot": 128}])
    asyncio.run(sweep.run_study_async(spec, root=tmp_path))
    assert not [t for t in threading.enumerate() if t.name.startswith("cliffbench-")]


def test_plan_levels_index_and_request_counts(model: Any, tokenizer: Any) -> None:
    from cliffbench.bench.spec.study import load_study

    spec = load_study(Path(__file__).resolve().parents[2] / "studies" / "default.yaml")
    levels = plan.plan_levels(spec)
    # 2 repeats of 10 levels (chat 6, mixed 2, conversation 1, rag 1), repeat by repeat, numbered 0..9
    assert [(lv.repeat, lv.index) for lv in levels] == [(r, i) for r in range(2) for i in range(10)]
    plans = plan.preflight(spec, levels, tokenizer)
    counts = {(lv.level_set.name, lv.concurrency): len(plans[lv.index, lv.repeat][0]) for lv in levels}
    # 15 steady requests + 2 per user (the ramp's and the drain's), in both level sets
    assert counts[("chat", 1)] == 17 and counts[("chat", 16)] == 47 and counts[("chat", 32)] == 79
    assert counts[("mixed", 4)] == 23
    # each repeat draws its own requests
    assert plans[0, 0][0][0].prompt_token_ids != plans[0, 1][0][0].prompt_token_ids
    assert plans[0, 0][0][0].prompt_token_ids != plans[1, 0][0][0].prompt_token_ids  # each level its own prompts

"""An engine that dies in the middle of a level: the level is stored failed with the reason (even
where some of its requests had finished), the levels before it stay byte for byte, the next level
gets a freshly started engine (or, where it cannot start, is stored failed too), the run ends in
bounded time and leaves no process.

- vLLM: its EngineCore process SIGKILLed while `cliffbench run` is paused mid-level
  (tests/faults/paused_cli.py); the other engine's levels still run and the CLI exits 1 (a level
  failed), as the README says.
- llama.cpp: its worker thread raises in the middle of a level (a fault injected into the real
  in-process engine's sampling step).
- openai-http: the server process (a stub OpenAI-compatible server, its own interpreter) SIGKILLed
  after the first request of a level.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from cliffbench.bench import sweep
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import load_results
from cliffbench.config import PROJECT_ROOT
from cliffbench.engines.llamacpp import LlamaCppEngine
from tests.conftest import FIXED_PROBE
from tests.faults import (
    NO_RERUNS,
    PausedCli,
    Recorder,
    assert_nothing_left,
    level_files,
    project_root,
    run_study_on_thread,
    snapshot,
)


def _levels(load: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
    workload = {"prompt": {"mean": 16}, "output": {"mean": 8}}
    return [{"name": "chat", "workload": workload, "load": {"warmup_requests": 0, **load}, **extra}]


# -- vLLM's engine core killed mid-level (the CLI) ---------------------------------------------------

VLLM_STUDY = {
    "name": "engine-core-dies",
    "busy": NO_RERUNS,
    "tokenizer": "fake",
    "engines": [  # in this order (engine_order, seed 0): v's levels, then l's
        {"kind": "vllm", "label": "v", "dtype": "float32", "max_model_len": 256, "kv_cache_gib": 0.25},
        {"kind": "llamacpp-serial", "label": "l", "n_ctx": 256, "n_threads": 1},
    ],
    "level_sets": _levels({"concurrency": [1, 2], "requests_per_level": 4}),
}


def _engine_cores(run: PausedCli) -> list[psutil.Process]:
    run.watch()
    out = []
    for p in run.seen.values():
        try:
            if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name():
                out.append(p)
        except psutil.Error:
            continue
    return out


@pytest.mark.engine
@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_engine_core_killed_mid_level(model: object, tmp_path: Path) -> None:
    root = project_root(tmp_path)
    results = root / "data" / "results"
    (results / "engine-core-dies").mkdir()  # the hardware probe, stored: the CLI does not probe
    (results / "engine-core-dies" / "manifest.json").write_text(
        json.dumps({"hardware_probe": FIXED_PROBE.model_dump(mode="json")})
    )
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump(VLLM_STUDY))
    run = PausedCli(root, study, "level@v__chat__c0002", pause_s=5.0)
    try:
        run.wait_paused(timeout_s=300.0)
        levels = results / "engine-core-dies" / "levels"
        before = level_files(levels / "v__chat__c0001")
        cores = _engine_cores(run)
        assert cores, f"no EngineCore process among {[p.name() for p in run.seen.values()]}"
        for p in cores:
            p.send_signal(signal.SIGKILL)  # while the CLI sleeps in the middle of the level
    finally:
        code = run.finish(timeout_s=240.0)
    out = run.output()[-4000:]
    assert code == 1, out  # the study ran to its end, one level failed
    assert "1 level(s) failed: v__chat__c0002" in out, out
    assert not run.left_after(10.0), out
    assert level_files(levels / "v__chat__c0001") == before
    lv = load_results("engine-core-dies", root=results).levels.set_index("level_key")
    assert lv["status"].to_dict() == {
        "l__chat__c0001": "ok",
        "l__chat__c0002": "ok",
        "v__chat__c0001": "ok",
        "v__chat__c0002": "failed",
    }
    died = "engine died during the level: vLLM's engine core died (EngineDeadError)"
    assert lv.loc["v__chat__c0002", "error"] == died
    assert lv["n_ok"].to_dict()["v__chat__c0002"] >= 1  # requests finished before the kill: still failed


# -- llama.cpp's worker thread raises mid-level (in process) -----------------------------------------

LLAMA_STUDY = {
    "name": "worker-raises",
    "busy": NO_RERUNS,
    "tokenizer": "fake",
    "engines": [{"kind": "llamacpp-serial", "label": "l", "n_ctx": 256, "n_threads": 1}],
    "level_sets": _levels({"concurrency": [1, 2, 3], "requests_per_level": 3}),
}


@pytest.mark.engine
def test_llamacpp_worker_raising_mid_level(
    model: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixed_probe: None
) -> None:
    real = LlamaCppEngine._sample
    calls = [0]
    # one slot, one token per step: level 1 takes steps 1-24 (3 requests x 8 tokens), level 2's first
    # request 25-32; step 35 is in the middle of its second request, its third waiting
    crash_at = 35

    def sample(self: LlamaCppEngine, lc: Any) -> None:
        calls[0] += 1
        if calls[0] == crash_at:
            raise RuntimeError("injected fault in the sampling step")
        real(self, lc)

    monkeypatch.setattr(LlamaCppEngine, "_sample", sample)
    before = snapshot()
    rec = Recorder()
    t0 = time.monotonic()
    sweep.run_study(StudySpec.model_validate(LLAMA_STUDY), root=tmp_path, reporter=rec)
    assert time.monotonic() - t0 < 60
    assert [(i.level_key, i.status) for i in rec.finished] == [
        ("l__chat__c0001", "ok"),
        ("l__chat__c0002", "failed"),
        ("l__chat__c0003", "ok"),  # a freshly started engine
    ]
    failed = rec.finished[1]
    assert failed.error == (
        "engine died during the level: worker crashed: RuntimeError('injected fault in the sampling step')"
    )
    assert failed.summary is not None
    assert (failed.summary.counts.n_ok, failed.summary.counts.n_failed) == (1, 2)  # one ok: still a failed level
    lv = load_results("worker-raises", root=tmp_path).levels
    assert lv["status"].tolist() == ["ok", "failed", "ok"]
    assert_nothing_left(*before)


# -- the HTTP server killed mid-level ----------------------------------------------------------------

# the stub OpenAI-compatible server of test_http_faults, in an interpreter of its own
SERVER = (
    "import sys, time\n"
    f"sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
    "from tests.faults.test_http_faults import StubServer\n"
    "with StubServer() as s:\n"
    "    print(s.url, flush=True)\n"
    "    time.sleep(600)\n"
)
HTTP_KEYS = ["stub__chat__c0001", "stub__chat__c0002", "stub__chat__c0004"]


class _KillServer(Recorder):
    """Kills the server process once the first request of the second level is done."""

    def __init__(self, server: subprocess.Popen[str]) -> None:
        super().__init__()
        self.server = server
        self.level = ""

    def level_started(self, key: str, n_requests: int) -> None:
        self.level = key

    def request_done(self, record: Any) -> None:
        if self.level == HTTP_KEYS[1] and self.server.poll() is None:
            self.server.kill()
            self.server.wait()


@pytest.mark.slow
def test_http_server_killed_mid_level(tmp_path: Path, fixed_probe: None) -> None:
    model_dir = tmp_path / "served-model"
    model_dir.mkdir()
    config = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
    (model_dir / "config.json").write_text(json.dumps({**config, "vocab_size": 256, "max_position_embeddings": 2048}))
    before = snapshot()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        spec = StudySpec.model_validate(
            {
                "name": "server-dies",
                "tokenizer": "fake",
                "busy": NO_RERUNS,
                "engines": [{"kind": "openai-http", "label": "stub", "url": url, "model": {"hf_path": str(model_dir)}}],
                "level_sets": _levels({"concurrency": [1, 2, 4], "requests_per_level": 4, "request_timeout_s": 5.0}),
            }
        )
        rec = _KillServer(server)
        took_s, errors, thread = run_study_on_thread(spec, tmp_path, rec, 60)
        assert not thread.is_alive(), "the study still ran 60 s after its server was killed"
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        assert server.stdout is not None
        server.stdout.close()
    assert not errors, errors
    assert took_s < 30
    assert [(i.level_key, i.status) for i in rec.finished] == [
        (HTTP_KEYS[0], "ok"),
        (HTTP_KEYS[1], "failed"),
        (HTTP_KEYS[2], "failed"),
    ]
    died, start = rec.finished[1].error, rec.finished[2].error
    assert died.startswith(f"engine died during the level: cannot connect to {url}/completions"), died
    summary = rec.finished[1].summary
    assert summary is not None and summary.counts.n_ok >= 1  # the request before the kill: still a failed level
    assert start.startswith(f"engine start failed: EngineError: {url}/models: ConnectError"), start
    lv = load_results("server-dies", root=tmp_path).levels
    assert lv["status"].tolist() == ["ok", "failed", "failed"]
    assert_nothing_left(*before)

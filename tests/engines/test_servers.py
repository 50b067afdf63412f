"""Managed servers: started healthy or refused with a one-line error, and never left running,
whatever the exit path (error, SIGTERM, Ctrl-C, the parent killed outright)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from cliffbench.bench.load.driver import RequestRecord
from cliffbench.bench.progress.reporter import LevelTask
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import load_results, study_dir
from cliffbench.config import InputError
from cliffbench.engines import GenRequest, make_engine
from cliffbench.engines.http import OpenAIHttpEngine
from cliffbench.engines.servers import ManagedServer, reference_llama_server
from cliffbench.engines.specs import LlamaCppSlotsSpec, OpenAIHttpSpec, ServerSpec
from tests.conftest import cli_process


def _gone(pids: list[int], within_s: float = 10.0) -> list[int]:
    """The pids still alive (zombies count as gone) after waiting up to `within_s`."""
    deadline = time.time() + within_s
    alive = pids
    while time.time() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                continue
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def _fake_server(tmp_path: Path, script: str) -> Path:
    """A stand-in llama-server binary (only for the failure paths): a shell script."""
    path = tmp_path / "llama-server"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_never_healthy_is_an_input_error_and_leaves_nothing(model: Any, tmp_path: Path) -> None:
    # the fake server forks a grandchild, as vLLM's engine core does: the group must die whole
    fake = _fake_server(tmp_path, f"sleep 300 &\necho $! > {tmp_path}/child.pid\nsleep 300\n")
    server = ManagedServer(ServerSpec(kind="llama-server", binary=fake, startup_timeout_s=2))
    with pytest.raises(InputError, match=r"^server\.startup_timeout_s: llama-server was not healthy within 2 s"):
        asyncio.run(server.start())
    child = int((tmp_path / "child.pid").read_text())
    assert _gone([child], 5) == []


def test_server_exiting_at_start_names_it(model: Any, tmp_path: Path) -> None:
    fake = _fake_server(tmp_path, "echo 'error: unknown argument --kv-unified' >&2\nexit 3\n")
    with pytest.raises(InputError, match=r"^server: llama-server exited with code 3 .*unknown argument"):
        asyncio.run(ManagedServer(ServerSpec(kind="llama-server", binary=fake)).start())


def test_missing_binary_is_named(model: Any, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^server\.binary: no llama-server at"):
        asyncio.run(ManagedServer(ServerSpec(kind="llama-server", binary=tmp_path / "nope")).start())


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cliffbench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _study(tmp_path: Path, name: str, engine: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    load = {"concurrency": [1], "requests_per_level": 2}
    path.write_text(yaml.safe_dump({"name": name, "engines": [engine], "level_sets": [{"load": load}]}))
    return path


def _errline(p: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_cli_bad_input_exits_2_and_writes_nothing(model: Any, tmp_path: Path) -> None:
    name = f"http-badinput-{os.getpid()}"
    bad_url = _study(tmp_path, name, {"kind": "openai-http", "url": "127.0.0.1:8000/v1"})
    p = _cli("run", str(bad_url))
    assert p.returncode == 2 and "engines.0.openai-http.url: must be an http" in _errline(p)
    no_key = _study(tmp_path, name, {"kind": "openai-http", "url": "http://127.0.0.1:9/v1", "api_key_env": "NOPE_X"})
    p = _cli("run", str(no_key))
    assert p.returncode == 2 and "api_key_env: environment variable NOPE_X is not set" in _errline(p)
    assert not study_dir(name).exists()


def test_cli_server_never_healthy_exits_2_no_process_left(model: Any, tmp_path: Path) -> None:
    name = f"http-unhealthy-{os.getpid()}"
    fake = _fake_server(tmp_path, f"echo $$ > {tmp_path}/server.pid\nexec sleep 300\n")
    server = {"kind": "llama-server", "binary": str(fake), "startup_timeout_s": 3}
    p = _cli("run", str(_study(tmp_path, name, {"kind": "openai-http", "server": server})))
    assert p.returncode == 2, p.stderr
    assert "server.startup_timeout_s: llama-server was not healthy within 3 s" in _errline(p)
    assert _gone([int((tmp_path / "server.pid").read_text())], 5) == []
    assert not study_dir(name).exists()


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    """`cliffbench serve llama-cpp-python` in the background; returns it and the server's pid."""
    # the server log's temp folder: after SIGKILL nothing in the CLI is left to remove it
    proc = cli_process(
        "serve", "llama-cpp-python", "--ctx-per-slot", "256", env={**os.environ, "TMPDIR": str(tmp_path)}
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until "ready at ..." (or the CLI dies)
    assert "ready at http://127.0.0.1:" in line, line + proc.stdout.read()
    return proc, int(line.split("(pid ")[1].split(",")[0])


@pytest.mark.engine
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_serve_stops_its_server_on_every_signal(model: Any, tmp_path: Path, sig: signal.Signals) -> None:
    proc, server_pid = _serve(tmp_path)
    try:
        assert psutil.pid_exists(server_pid)
        proc.send_signal(sig)  # SIGKILL: no handler runs; PR_SET_PDEATHSIG stops the server
        proc.communicate(timeout=60)  # also closes the pipe (an open one is a ResourceWarning, an error here)
        assert _gone([server_pid], 20) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


class _KillAfterFirst:
    """A sweep reporter that kills the server's process group once the first request is done."""

    def __init__(self) -> None:
        self.server: ManagedServer | None = None
        self.infos: list[Any] = []

    def study_planned(self, tasks: list[LevelTask]) -> None: ...

    def level_started(self, key: str, n_requests: int) -> None: ...

    def request_done(self, record: RequestRecord) -> None:
        if self.server is not None and self.server.pid is not None and not record.warmup:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server = None

    def level_finished(self, info: Any) -> None:
        self.infos.append(info)

    def level_skipped(self, key: str) -> None: ...


@pytest.mark.engine
def test_server_dying_mid_level_fails_requests_not_the_sweep(model: Any, tmp_path: Path) -> None:
    from cliffbench.bench.sweep import run_study_async

    spec = StudySpec.model_validate(
        {
            "name": "dies",
            "engines": [{"kind": "openai-http", "server": {"kind": "llama-cpp-python"}}],
            "level_sets": [{"load": {"concurrency": [2], "requests_per_level": 6, "warmup_requests": 0}}],
        }
    )
    rep = _KillAfterFirst()

    async def go() -> None:
        engine = make_engine(spec.engines[0])
        assert isinstance(engine, OpenAIHttpEngine)
        await engine.start()
        rep.server = engine._server
        try:
            await asyncio.wait_for(
                run_study_async(spec, reporter=rep, root=tmp_path, engines={engine.name: engine}), 120
            )
        finally:
            await engine.stop()

    asyncio.run(go())
    lv = load_results("dies", tmp_path).levels.iloc[0]
    assert lv["n_ok"] >= 1 and lv["n_failed"] >= 4, lv.to_dict()
    errors = set(load_results("dies", tmp_path).requests.query("status == 'failed'")["error"])
    assert any("connect" in e or "connection" in e for e in errors), errors


async def _collect(engine: Any, req: GenRequest) -> list[Any]:
    return [ev async for ev in engine.stream(req)]


needs_llama_server = pytest.mark.skipif(
    not reference_llama_server().is_file(), reason="run `make reference-servers` to build llama-server"
)


@pytest.mark.engine
@needs_llama_server
def test_llama_server_matches_in_process_slots(model: Any, prompts: list[list[int]], tokenizer: Any) -> None:
    """Same GGUF, same slots: llama-server's greedy text is the in-process slots engine's text."""
    mirror = LlamaCppSlotsSpec(slots=2, ctx_per_slot=256)
    reqs = [GenRequest(i, tuple(p), max_tokens=24) for i, p in enumerate(prompts[:2])]

    async def texts(spec: Any) -> list[str]:
        engine = make_engine(spec)
        await engine.start()
        try:
            outs = await asyncio.gather(*(_collect(engine, r) for r in reqs))
            if isinstance(spec, OpenAIHttpSpec):  # started with --metrics: its state is scraped
                assert engine.describe()["server_metrics"] == "ok" and engine.memory().source == "metrics"
        finally:
            await engine.stop()
        if isinstance(spec, OpenAIHttpSpec):
            return ["".join(e.text for e in o) for o in outs]
        return [tokenizer.decode([e.token_id for e in o]) for o in outs]

    served = asyncio.run(texts(OpenAIHttpSpec(server={"kind": "llama-server", "mirrors": mirror.model_dump()})))
    assert all(len(t) > 20 for t in served)
    assert served == asyncio.run(texts(mirror))


@pytest.mark.engine
def test_run_sigterm_stops_the_managed_server(model: Any, tmp_path: Path) -> None:
    name = f"http-sigterm-{os.getpid()}"
    engine = {"kind": "openai-http", "server": {"kind": "llama-cpp-python"}}
    study = tmp_path / "s.yaml"
    load = {"concurrency": [1], "requests_per_level": 50}
    study.write_text(yaml.safe_dump({"name": name, "engines": [engine], "level_sets": [{"load": load}]}))
    proc = cli_process("run", str(study), "--force")
    try:
        servers: list[int] = []
        deadline = time.time() + 120
        while not servers and time.time() < deadline and proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                kids = psutil.Process(proc.pid).children(recursive=True)
                servers = [k.pid for k in kids if "llama_cpp.server" in " ".join(k.cmdline())]
            time.sleep(0.2)
        assert servers, "the CLI never started llama-cpp-python's server"
        time.sleep(3)  # into the level
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.returncode != 0
        assert _gone(servers, 20) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        import shutil

        shutil.rmtree(study_dir(name), ignore_errors=True)


def test_server_spec_mirrors_its_own_engine_family() -> None:
    from cliffbench.config import parse_spec

    with pytest.raises(InputError, match=r"^server: a vllm server mirrors vllm, got 'llamacpp-slots'"):
        parse_spec(ServerSpec, {"kind": "vllm", "mirrors": {"kind": "llamacpp-slots"}}, prefix="server.")
    with pytest.raises(InputError, match="give exactly one of url"):
        parse_spec(OpenAIHttpSpec, {"url": "http://x/v1", "server": {"kind": "vllm"}})


def test_preflight_refuses_a_pool_smaller_than_the_load(model: Any, tokenizer: Any) -> None:
    from cliffbench.bench.plan import plan_levels, preflight

    spec = StudySpec.model_validate(
        {
            "name": "pool",
            "engines": [{"kind": "openai-http", "url": "http://127.0.0.1:9/v1", "max_connections": 8}],
            "level_sets": [{"load": {"concurrency": [4, 16]}}],
        }
    )
    with pytest.raises(InputError, match=r"^engines\.openai-http\.max_connections: 8 is below .* 16"):
        preflight(spec, plan_levels(spec), tokenizer)


def test_reference_servers_are_told_the_twins_reuse_settings(tmp_path: Path) -> None:
    """llama-server gets the twin's slot similarity (cache_prompt travels per request, http.py);
    `vllm serve` reports each request's cached prompt tokens. A user's config.json and placeholder
    GGUF stand for the model: no engine, no data/models."""
    from cliffbench.engines.servers import server_command
    from cliffbench.engines.specs import VllmSpec
    from cliffbench.models.spec import ModelSpec

    config = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 256}))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    user = ModelSpec(hf_path=tmp_path, gguf_path=tmp_path / "m.gguf")
    twin = LlamaCppSlotsSpec(model=user, cache_prompt=True, slot_prompt_similarity=0.25)
    argv, _, _ = server_command(ServerSpec(kind="llama-server", mirrors=twin, binary=binary), 8000)
    assert "--slot-prompt-similarity 0.25 --cache-reuse 0" in " ".join(argv)
    argv, _, _ = server_command(ServerSpec(kind="vllm", mirrors=VllmSpec(model=user)), 8000)
    assert "--enable-prompt-tokens-details" in argv

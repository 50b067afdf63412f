"""Every exit path stops the engines: no vLLM EngineCore / worker process outlives the CLI."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import cli_process

pytestmark = [pytest.mark.engine, pytest.mark.vllm, pytest.mark.slow]

STUDY = """
name: orphan-check
engines:
  - {kind: vllm, max_model_len: 256, kv_cache_gib: 0.25}
level_sets:
  - {workload: {prompt: {mean: 16}, output: {mean: 200}}, load: {concurrency: [1], requests_per_level: 50}}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_stops_vllm(model: object, tmp_path: Path, sig: signal.Signals) -> None:
    study = tmp_path / "orphan.yaml"
    study.write_text(STUDY)
    proc = cli_process("run", str(study), "--force", "--wait-quiet-s", "0")
    parent = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.time() + 240
        busy = False
        while time.time() < deadline and proc.poll() is None and not busy:  # until vLLM's processes work
            for child in parent.children(recursive=True):
                seen.setdefault(child.pid, child)
                try:
                    busy = busy or child.cpu_percent(interval=0.2) > 20
                except psutil.NoSuchProcess:  # short-lived helpers come and go during start-up
                    continue
        assert busy, "vLLM never started its engine process"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never leave the CLI behind, whatever failed above
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    # SIGKILL runs no handler in the CLI: its reaper process terminates vLLM's (5 s grace)
    deadline = time.time() + (20 if sig == signal.SIGKILL else 2)
    while True:
        alive = []
        for child in seen.values():
            try:
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child.name())
            except psutil.NoSuchProcess:
                continue
        if not alive or time.time() > deadline:
            break
        time.sleep(0.5)
    for child in seen.values():  # never leave a process behind for the next test, whatever failed
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    assert not alive, f"orphans after {sig.name}: {alive}\n{out[-2000:]}"

"""Every exit path stops the engines: no vLLM EngineCore / worker process outlives the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.vllm, pytest.mark.slow]

STUDY = """
name: orphan-check
engines:
  - {kind: vllm, max_model_len: 256, kv_cache_gib: 0.25}
level_sets:
  - {workload: {prompt: {mean: 16}, output: {mean: 200}}, load: {concurrency: [1], requests_per_level: 50}}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_vllm(model: object, tmp_path: Path, sig: signal.Signals) -> None:
    study = tmp_path / "orphan.yaml"
    study.write_text(STUDY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cliffbench.cli", "run", str(study), "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    parent = psutil.Process(proc.pid)
    children: list[psutil.Process] = []
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # wait until the engine core exists and works
        children = parent.children(recursive=True)
        if len(children) >= 1 and any(c.cpu_percent(interval=0.5) > 20 for c in children):
            break
    assert children, "vLLM never started its engine process"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    time.sleep(2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"orphans after {sig.name}: {[c.name() for c in alive]}\n{out[-2000:]}"

"""Ctrl-C or SIGTERM during `cliffbench report` stops the study: the kernel is interrupted, its
engines stop (vLLM's processes included), the command exits 130, finished levels stay stored."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from cliffbench.bench.progress.reporter import progress_path
from cliffbench.bench.store.levels import study_dir
from tests.conftest import cli_process

pytestmark = [pytest.mark.engine, pytest.mark.vllm, pytest.mark.slow]

STUDY = """
name: {name}
engines:
  - {{kind: vllm, omp_threads_bind: all, max_model_len: 256, kv_cache_gib: 0.25}}
level_sets:
  - {{workload: {{prompt: {{mean: 16}}, output: {{mean: 200}}}}, load: {{concurrency: [1], requests_per_level: 50}}}}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_report_interrupted_mid_study_stops_everything(model: object, tmp_path: Path, sig: signal.Signals) -> None:
    name = f"interrupt-{sig.name.lower()}"
    shutil.rmtree(study_dir(name), ignore_errors=True)
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(name=name))
    proc = cli_process("report", "--study-file", str(study))
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.time() + 300
        running = False
        while time.time() < deadline and proc.poll() is None and not running:
            for child in psutil.Process(proc.pid).children(recursive=True):
                seen.setdefault(child.pid, child)
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                running = bool(json.loads(progress_path(name).read_text()).get("running"))
            time.sleep(0.5)
        assert running, "the study never started a level"
        for child in psutil.Process(proc.pid).children(recursive=True):
            seen.setdefault(child.pid, child)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        assert proc.returncode == 130, out[-3000:]
        assert "interrupted" in out
        deadline = time.time() + 20
        while True:
            alive = []
            for child in seen.values():
                with contextlib.suppress(psutil.NoSuchProcess):
                    if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                        alive.append(child.name())
            if not alive or time.time() > deadline:
                break
            time.sleep(0.5)
        assert not alive, f"left running after {sig.name}: {alive}"
    finally:
        for child in seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        shutil.rmtree(study_dir(name), ignore_errors=True)

"""Every benchmark script runs: `benchmarks/*.py --quick` end to end, its JSON written where `--out`
says (never over benchmarks/results/), so a benchmark cannot rot unnoticed as the kit changes
under it (issue 26: engine_overhead.py and idle_engines.py had stopped running on the default
study). Slow tier; the marks say which need the prepared model or vLLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cliffbench.config import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"
_ENGINE = [pytest.mark.slow, pytest.mark.engine]
_VLLM = [*_ENGINE, pytest.mark.vllm]
# script -> the marks its --quick run needs (fake engines and local stubs: slow only)
QUICK = {
    "cliff_search": [pytest.mark.slow],
    "cluster_overhead": _ENGINE,
    "engine_overhead": _ENGINE,
    "engine_tuning": _VLLM,
    "fidelity": _ENGINE,
    "idle_engines": _ENGINE,
    "loadgen_precision": [pytest.mark.slow],
    "metrics_scrape_cost": [pytest.mark.slow],
    "multi_client": [pytest.mark.slow],
    "progress_lag": [pytest.mark.slow],
    "reuse_servers": _VLLM,
    "steady_state": _ENGINE,
    "working_set": _ENGINE,
}
QUICK_TIMEOUT_S = 300  # each is sized for well under a minute or two on 2 shared cores


def test_every_benchmark_has_a_quick_run() -> None:
    scripts = sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    assert scripts == sorted(QUICK), "a new benchmark needs a --quick run and an entry in QUICK"
    lacking = [s for s in scripts if '"--quick"' not in (BENCHMARKS / f"{s}.py").read_text()]
    assert not lacking, f"no --quick option: {lacking}"


@pytest.mark.parametrize("script", [pytest.param(s, marks=m, id=s) for s, m in QUICK.items()])
def test_quick_run(script: str, tmp_path: Path) -> None:
    out = tmp_path / f"{script}.json"
    results = BENCHMARKS / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--out", str(out)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{script} --quick failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert isinstance(json.loads(out.read_text()), dict)
    after = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert after == before, "a quick run wrote into benchmarks/results/"

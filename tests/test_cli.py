"""CLI: bad input gives one line, exit code 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cliffbench.cli import app
from cliffbench.config import RESULTS_DIR

runner = CliRunner()


def _before() -> set[str]:
    return {p.name for p in RESULTS_DIR.glob("*")} if RESULTS_DIR.is_dir() else set()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--engine", "ollama"], "--engine: unknown engine 'ollama'; allowed: vllm, llamacpp-serial"),
        (["run", "--engine", "llamacpp-slots", "--slots", "0"], "slots"),
        (["run", "--engine", "vllm", "--concurrency", "1,x"], "--concurrency"),
        (["run", "--engine", "vllm", "--concurrency", "0"], "concurrency"),
        (["run", "--engine", "vllm", "--workload", "poems"], "--workload: unknown workload"),
        (["run", "missing.yaml"], "study: file not found"),
        (["show", "no-such-study"], "study: no results for 'no-such-study'"),
    ],
)
def test_bad_input_exit_2(args: list[str], needle: str) -> None:
    before = _before()
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert needle in text
    assert _before() == before


def test_bad_study_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nengines:\n  - kind: vllm\n    dtype: float8\n")
    result = runner.invoke(app, ["run", str(p)])
    assert result.exit_code == 2 and "dtype" in result.output
    assert not (RESULTS_DIR / "bad").exists()


def test_dry_run_prints_plan() -> None:
    result = runner.invoke(app, ["run", "studies/default.yaml", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "4 engine(s) x 8 level(s)" in result.output and "llamacpp-slots-32: chat__c0001" in result.output

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


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["recommend", "--users", "0"], "--users: Input should be greater than 0"),
        (["recommend", "--users", "4", "--ttft-slo", "-1"], "--ttft-slo"),
        (["recommend", "--users", "4", "--study", "no-such-study"], "study: no results for 'no-such-study'"),
    ],
)
def test_recommend_bad_input(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("engine", "needle"),
    [
        (
            "{kind: llamacpp-slots, slots: 2, ctx_per_slot: 40}",
            "engines.llamacpp-slots.ctx_per_slot (40 tokens) is too small",
        ),
        ("{kind: vllm, kv_cache_gib: 100000}", "engines.vllm.kv_cache_gib: 100000.0 GiB exceeds"),
        ("{kind: llamacpp-serial, model: {gguf_path: /nonexistent.gguf}}", "model.gguf_path"),
    ],
)
def test_preflight_errors_write_nothing(model: object, tmp_path: Path, engine: str, needle: str) -> None:
    p = tmp_path / "pre.yaml"
    p.write_text(
        "name: preflight-check\nengines:\n  - " + engine + "\n"
        "level_sets:\n  - {workload: {prompt: {mean: 16}, output: {mean: 32}}, load: {concurrency: [1]}}\n"
    )
    result = runner.invoke(app, ["run", str(p)])
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())
    assert not (RESULTS_DIR / "preflight-check").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["matrix", "--weights", "speed=2"], "--weights: unknown criterion 'speed'; allowed: deployment, compliance"),
        (["matrix", "--gpu-price", "a100-40gb=-1"], "--gpu-price: a100-40gb must be a positive USD/hour"),
        (["matrix", "--users", "0"], "--users: Input should be greater than 0"),
        (["matrix", "--hardware", "tpu"], "--hardware: unknown hardware 'tpu'; allowed: a100-40gb"),
        (["matrix", "--weights", "cost"], "--weights: expected name=number pairs"),
    ],
)
def test_matrix_bad_input(args: list[str], needle: str, tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    result = runner.invoke(app, [*args, "--csv", str(out)])
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())
    assert not out.exists()


def test_matrix_ranks_and_writes_csv(tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    args = ["matrix", "--users", "25", "--gpu-price", "a100-40gb=1.29", "--weights", "cost=3,compliance=2"]
    result = runner.invoke(app, [*args, "--csv", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Self-hosted vLLM" in text and "roofline: a100-40gb" in text and "Top choice" in text
    assert out.is_file()

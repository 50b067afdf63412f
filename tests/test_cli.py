"""CLI: bad input gives one line, exit code 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cliffbench.bench.plan import engine_runs, plan_levels
from cliffbench.bench.spec.study import load_study
from cliffbench.cli import app
from cliffbench.config import PROJECT_ROOT, RESULTS_DIR

runner = CliRunner()


def _before() -> set[str]:
    return {p.name for p in RESULTS_DIR.glob("*")} if RESULTS_DIR.is_dir() else set()


@pytest.mark.engine  # the model's own context length comes from the prepared model
@pytest.mark.parametrize(
    ("engine", "field"),
    [("{kind: vllm, max_model_len: 100000}", "max_model_len"), ("{kind: llamacpp-serial, n_ctx: 65536}", "n_ctx")],
)
def test_context_beyond_the_model_is_refused_before_anything_runs(tmp_path: Path, engine: str, field: str) -> None:
    p = tmp_path / "long.yaml"
    p.write_text(f"name: too-long\nengines:\n  - {engine}\n")
    for args in (["run", str(p), "--dry-run"], ["run", str(p), "--wait-quiet-s", "0"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f".{field}: " in result.output and "exceeds the model's context length (8192" in result.output
    assert not (RESULTS_DIR / "too-long").exists()


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


@pytest.mark.engine  # the default study's estimate reads the prepared model's shapes (and probes this machine)
def test_dry_run_prints_plan() -> None:
    result = runner.invoke(app, ["run", "studies/default.yaml", "--dry-run"])
    assert result.exit_code == 0, result.output
    spec = load_study(PROJECT_ROOT / "studies" / "default.yaml")
    runs = sum(engine_runs(e, lv) for e in spec.engines for lv in plan_levels(spec))
    assert runs == 60  # 9 engines; only_at and the grids per engine as the study file sets them
    assert f"9 engine(s), {runs} level runs" in result.output and "llamacpp-f32-32: chat__c0001" in result.output
    assert "llamacpp-bf16-32: chat__c0032, chat__c0032-rep2" in result.output


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


# ---- cliffbench report: parameters from report/params.py --------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-p", "peak_users", "many"], "parameter peak_users: Input should be a valid integer"),
        (["-p", "ttft_slo_s", "-1"], "parameter ttft_slo_s: Input should be greater than 0"),
        (["-p", "matrix_weights", "{speed: 1}"], "parameter matrix_weights: unknown criterion 'speed'; allowed:"),
        (["-p", "matrix_gpu_prices", "{a100-40gb: -1}"], "parameter matrix_gpu_prices: a100-40gb must be a positive"),
        (["-p", "matrix_users", "0"], "parameter matrix_users"),
        (["-p", "matrix_hardware", "l4"], "parameter matrix_gpu_prices: no vm-on-demand price for 'l4'"),
        (["-p", "speed", "1"], "parameter speed: unknown; allowed: cluster, compare_to, concurrency, engine, force"),
        (["-p", "engine", "openai-http"], "parameter url: give it exactly when parameter engine is openai-http"),
        (["-p", "engine", "openai-http", "-p", "url", "ftp://x"], "parameter url: must be an http"),
        (["-p", "url", "http://127.0.0.1:8000/v1"], "parameter url: only for the flag form"),
        (["-p", "peak_users", "{a: "], "parameter peak_users: not a YAML value"),
        (["--study-file", "missing.yaml"], "study: file not found"),
    ],
)
def test_report_bad_parameter_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "w.pdf"
    out.write_bytes(b"previous")
    result = runner.invoke(app, ["report", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())
    assert out.read_bytes() == b"previous"
    assert "running notebooks" not in result.output


def test_report_p_takes_two_words() -> None:
    # as papermill's -p: NAME and VALUE are the next two words, whatever they look like
    result = runner.invoke(app, ["report", "--out", "w.pdf", "-p", "peak_users"])
    assert result.exit_code == 2 and "-p: expected NAME VALUE, got peak_users" in result.output
    result = runner.invoke(app, ["report", "-p", "study_name", "--", "-p", "tpot_slo_s", "--out"])
    assert result.exit_code == 2 and "parameter tpot_slo_s: Input should be a valid number" in result.output


def test_report_parameters_file(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- peak_users\n")
    result = runner.invoke(app, ["report", "-f", str(listed)])
    assert result.exit_code == 2 and "is not a YAML mapping of parameters" in result.output
    params = tmp_path / "params.yaml"
    params.write_text("peak_users: 4\nspeed: 1\n")
    result = runner.invoke(app, ["report", "-f", str(params)])
    assert result.exit_code == 2 and "parameter speed: unknown" in result.output


def test_report_help_lists_the_models_parameters() -> None:
    from cliffbench.report.params import BenchmarkParams

    result = runner.invoke(app, ["report", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "--parameter" in text and "--parameters-file" in text and "--study-file" in text
    assert "url = None  # " + str(BenchmarkParams.model_fields["url"].description) in text
    assert "ttft_slo_s = 2.0  # your TTFT objective, seconds (on the study's SLO percentile" in text
    assert "20_analysis, 30_whitepaper:" in text


@pytest.mark.slow  # a fresh interpreter
def test_python_m_cliffbench_is_the_same_command() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "cliffbench", "report", "-p", "speed", "1"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "parameter speed: unknown; allowed:" in " ".join(done.stderr.split())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--engine", "openai-http"], "--url: give it exactly when --engine is openai-http"),
        (["--engine", "openai-http", "--url", "ftp://x"], "--url: must be an http:// or https:// URL"),
        (["--engine", "vllm", "--name", "a b"], "--name: String should match pattern"),
        (["--engine", "vllm", "--requests-per-level", "0"], "--requests-per-level: Input should be greater than 0"),
    ],
)
def test_run_flags_keep_flag_names(args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["run", *args, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())


def test_run_flag_defaults_are_notebook_10s() -> None:
    result = runner.invoke(app, ["run", "--engine", "fake", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 engine(s), 3 level runs" in result.output and "chat__c0004" in result.output


# ---- cliffbench run on `fake` engines: no model, no engine ----------------------------------------

FAKE_STUDY = """\
name: fake-cli
tokenizer: fake
engines:
  - {kind: fake, label: quick, itl_s: 0.001}
  - {kind: fake, label: flaky, itl_s: 0.001, fail_every: 2}
level_sets:
  - {workload: {prompt: {mean: 8}, output: {mean: 6}}, load: {concurrency: [1, 2], requests_per_level: 4}}
"""


@pytest.mark.slow  # `cliffbench run` (dry, then for real) of a fake study through the sweep: about 3 s
def test_run_fake_study_needs_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixed_probe: None) -> None:
    import signal

    from cliffbench.bench.store import levels as store

    monkeypatch.setattr(store, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # `run` installs a SIGTERM handler: not in pytest
    study = tmp_path / "fake.yaml"
    study.write_text(FAKE_STUDY)
    dry = runner.invoke(app, ["run", str(study), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    text = " ".join(dry.output.split())
    assert "2 engine(s), 4 level runs" in text and "quick: chat__c0001, chat__c0002" in text
    assert "no estimate: no engine serves a model" in text and not (tmp_path / "results").exists()
    phases: list[tuple[str, str]] = []  # `main(on_phase)`'s seam: what tests/faults/paused_cli.py pauses at
    result = runner.invoke(
        app, ["run", str(study), "--wait-quiet-s", "0"], obj=lambda phase, where: phases.append((phase, where))
    )
    assert result.exit_code == 0, result.output
    assert "study fake-cli" in result.output and "quick" in result.output and "flaky" in result.output
    lv = store.load_results("fake-cli").levels
    assert len(lv) == 4 and lv["status"].eq("ok").all()
    assert lv[lv["engine"] == "flaky"]["n_failed"].tolist() == [2, 2]
    assert sorted(w for p, w in phases if p == "engine-start") == ["flaky", "quick"]
    assert sorted(w for p, w in phases if p == "store") == sorted(lv["level_key"])


# ---- cliffbench run: the busy-machine start check ------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_run_wait_quiet_s_must_be_seconds(value: str) -> None:
    before = _before()
    result = runner.invoke(app, ["run", "--engine", "fake", f"--wait-quiet-s={value}"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "--wait-quiet-s: must be a number of seconds >= 0" in text and len(result.output.strip().splitlines()) == 1
    assert _before() == before


@pytest.mark.parametrize(
    ("first", "wait_s", "last", "lines"),
    [
        (0.03, 60.0, None, []),  # a quiet machine: nothing to say
        (1.02, 0.0, None, ["other processes use 1.02 cores (load average 1.50), above 0.50; not waiting"]),
        (
            1.02,
            60.0,
            0.03,
            [
                "other processes use 1.02 cores (load average 1.50); waiting up to 60 s for them to fall below 0.50",
                "quiet: 0.03 cores",
            ],
        ),
        (
            1.02,
            60.0,
            0.98,
            [
                "waiting up to 60 s",
                "still busy after 60 s (0.98 cores): levels measured now will be flagged and re-run",
            ],
        ),
    ],
)
def test_run_start_check_lines(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    first: float,
    wait_s: float,
    last: float | None,
    lines: list[str],
) -> None:
    from cliffbench.bench.load import busy
    from cliffbench.bench.spec.study import flag_study
    from cliffbench.cli import commands as cli

    def load(cores: float) -> busy.ForeignLoad:
        return busy.ForeignLoad(foreign_cores=cores, steal_cores=0.0, loadavg_1m=1.5, wall_s=1.0)

    waits: list[tuple[float, float]] = []

    def fake_wait(max_wait_s: float, threshold: float, **_: object) -> busy.ForeignLoad:
        waits.append((max_wait_s, threshold))
        assert last is not None
        return load(last)

    monkeypatch.setattr(busy, "measure_foreign", lambda _s: load(first))
    monkeypatch.setattr(busy, "wait_quiet", fake_wait)
    cli._wait_quiet(flag_study("fake", None, "1", 4, "chat", None, None), wait_s)
    got = capsys.readouterr().err.splitlines()
    assert len(got) == len(lines) and all(want in line for want, line in zip(lines, got, strict=True)), got
    assert waits == ([] if last is None else [(wait_s, 0.5)])

"""The decision tree from the reader's constraints, on a hand-built study (no engine runs) and the
sourced matrix data: three readers, three different leaves, every rule citing what it rests on.

The study mirrors the shapes measured on a CPU box: Ollama (one request at a time) misses the SLO
from 4 users, llama-server (4 slots) from 8, vLLM never; at 2 users llama-server serves clearly more
tokens than vLLM (repeat ranges apart), at 4 users the two overlap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cliffbench.bench.store.levels import Results
from cliffbench.bench.store.provenance import StudyManifest
from cliffbench.cli import app
from cliffbench.config import InputError
from cliffbench.decide import matrix as mx
from cliffbench.decide.constraints import (
    MeasuredStudy,
    ReaderConstraints,
    constraint_tree,
    engine_options,
    example_readers,
    measured_study,
)
from cliffbench.report.constraints_text import constraint_markdown, constraint_text, readers_markdown

DAY = "2026-12-02"
USERS = [1, 2, 4, 8, 32]
# engine -> (kind, first level it misses at (None: never), output tok/s per level)
ENGINES = {
    "vllm": ("vllm", None, [22.0, 40.0, 70.0, 150.0, 440.0]),
    "llama-server": ("llamacpp-slots", 8, [31.0, 65.0, 75.0, 80.0, 83.0]),
    "ollama": ("llamacpp-serial", 4, [31.0, 31.0, 31.0, 31.0, 31.0]),
}
STUDY = """\
name: cpu-box
tokenizer: fake
engines:
  - {kind: fake, label: vllm}
level_sets:
  - {name: chat, workload: {prompt: {mean: 8}, output: {mean: 6}}, load: {concurrency: [1, 2, 4, 8, 32]}}
slo: {thresholds: {ttft_s: 2.0, tpot_s: 0.25}, percentiles: {ttft_s: 90.0, tpot_s: 50.0}}
"""


def _results() -> Results:
    levels, requests = [], []
    for engine, (kind, miss_from, tok_s) in ENGINES.items():
        for users, tok in zip(USERS, tok_s, strict=True):
            slow = miss_from is not None and users >= miss_from
            for rep in range(3):
                key = f"{engine}__chat__c{users:04d}" + (f"-rep{rep + 1}" if rep else "")
                levels.append(
                    {
                        "study": "cpu-box",
                        "engine": engine,
                        "engine_kind": kind,
                        "level_set": "chat",
                        "concurrency": users,
                        "rate_rps": np.nan,
                        "repeat": rep,
                        "status": "ok",
                        "level_key": key,
                        "output_tok_s": tok * (1 + 0.05 * rep),  # repeats span tok..1.1 tok
                        "ttft_s_p50": 0.2,
                        "tpot_s_p50": 0.05,
                        "busy_flagged": False,
                    }
                )
                ttft = np.linspace(3.0, 4.0, 12) if slow else np.linspace(0.1, 0.3, 12)
                requests.append(
                    pd.DataFrame(
                        {
                            "level_key": key,
                            "warmup": False,
                            "status": "ok",
                            "ttft_s": ttft,
                            "tpot_s": 0.05,
                            "e2e_s": ttft + 3.0,
                        }
                    )
                )
    manifest = StudyManifest.model_validate(
        {"study": yaml.safe_load(STUDY), "cpu": {"usable_cpus": 2, "model": "test CPU"}, "gpu": []}
    )
    return Results(
        pd.concat(requests, ignore_index=True), pd.DataFrame(), pd.DataFrame(levels), pd.DataFrame(), manifest
    )


@pytest.fixture(scope="module")
def data() -> mx.MatrixData:
    return mx.load_matrix()


@pytest.fixture(scope="module")
def study() -> MeasuredStudy:
    return measured_study(_results(), "chat", 2.0, 0.25)


BASE = mx.MatrixParams(report_date=DAY)


def test_study_engines_stand_for_matrix_options(data: mx.MatrixData, study: MeasuredStudy) -> None:
    mapping = engine_options(study.levels, data)
    assert mapping == {
        "llama-server": ["llamacpp"],
        "ollama": ["ollama"],
        "vllm": ["vllm", "vllm-litellm", "managed-vllm"],  # the consultancy runs vLLM too
    }


def test_three_readers_and_their_leaves(data: mx.MatrixData, study: MeasuredStudy) -> None:
    readers = example_readers()
    paths = {k: constraint_tree(c, BASE, data, study) for k, c in readers.items()}
    leaves = {k: p.leaf for k, p in paths.items()}
    # the consultancy-run vLLM scores 4 on operational burden: it is what a reader without an ops team
    # and a GPU reader who weighs ops at all are left with first
    assert leaves == {
        # SGLang's and TGI's CPU builds are in their own docs (data/matrix/CHANGES.md, 2026-12): on a CPU box
        # they stay in, unmeasured, and SGLang's cells outscore the llama.cpp server's
        "on-prem only, a CPU box, 2 users": "sglang",
        "an A100 40GB and 25 users": "managed-vllm",
        "no ops team, 3 users": "managed-vllm",
    }
    cpu, gpu, no_ops = paths.values()
    # on-prem: every managed option is ruled out by its deployment cell, GPU-only engines by hardware reach
    own = cpu.steps[0].ruled_out
    assert set(own) == {o for o in mx.evaluate(BASE, data).eligible if data.options[o].kind == "managed"}
    assert data.cells[("together", "deployment")].source_url in own["together"]
    assert "hardware reach lacks cpu (cuda (1/5)" in cpu.steps[1].ruled_out["tensorrt-llm"]
    # where the engines differ at 2 users, vLLM and Ollama serve fewer tokens than llama-server
    measured = cpu.steps[-1].ruled_out
    assert set(measured) == {"vllm", "vllm-litellm", "managed-vllm", "ollama"}
    assert "vllm 42 tok/s (repeats 40-44) against llama-server 68.2 (65-71.5) at 2 users" in measured["vllm"]
    assert cpu.cost_text == "unknown" and "prices GPU-hours" in cpu.cost_note  # a CPU box is not priced
    # an A100 and 25 users: judged at the next measured level (32), where both llama.cpp options miss
    assert set(gpu.steps[-1].ruled_out) == {"ollama", "llamacpp"}
    assert "llama-server at 32 users" in gpu.steps[-1].ruled_out["llamacpp"]
    at25 = mx.evaluate(BASE.model_copy(update={"users": 25}), data)
    assert gpu.cost_text == at25.text.loc["managed-vllm", "cost"]  # the matrix's cost at the reader's profile
    # no ops team: only options scoring 4+ on operational burden stay; Ollama then misses at 4 users
    assert all((data.cells[(o, "ops")].score or 0) >= 4 for o in no_ops.steps[2].left)
    assert "llamacpp" in no_ops.steps[2].ruled_out and set(no_ops.steps[-1].ruled_out) == {"ollama"}
    at3 = mx.evaluate(BASE.model_copy(update={"users": 3}), data)
    assert no_ops.cost_text == at3.text.loc["managed-vllm", "cost"]
    # each leaf cites the price its cost rests on
    assert any("lambda.ai/pricing" in c for c in gpu.citations)


def test_overlapping_ranges_are_no_difference(data: mx.MatrixData, study: MeasuredStudy) -> None:
    # at 4 users llama-server (75-82.5) and vLLM (70-77) overlap: neither is ruled out for speed
    path = constraint_tree(ReaderConstraints(data="own-hardware", gpu="none", users=4), BASE, data, study)
    assert set(path.steps[-1].ruled_out) == {"ollama"}
    assert {"vllm", "llamacpp"} <= set(path.steps[-1].left)


def test_region_and_service_rules(data: mx.MatrixData) -> None:
    region = constraint_tree(ReaderConstraints(data="in-region", users=25), BASE, data)
    out = region.steps[0].ruled_out
    assert "anthropic-haiku-5-5" in out and "global inference by default (2/5)" in out["anthropic-haiku-5-5"]
    assert "openai-gpt-6-luna" in out  # data at rest only: 3/5
    assert "together" in out and "unknown" in out["together"]  # unknown residency cannot be shown
    assert {"aws-bedrock", "azure-openai", "vllm"} <= set(region.steps[0].left)
    service = constraint_tree(ReaderConstraints(traffic="service", users=200), BASE, data)
    assert {"vllm", "ollama", "llamacpp"} <= set(service.steps[3].ruled_out)
    assert "vllm-litellm" in service.steps[3].left
    assert service.steps[-1].answer == "no stored study given"


def test_no_option_left_says_so(data: mx.MatrixData) -> None:
    import dataclasses

    # without the consultancy-run option, Ollama is the one self-hosted option with ops 4: one server
    keep = {o: opt for o, opt in data.options.items() if o != "managed-vllm"}
    cells = {k: c for k, c in data.cells.items() if k[0] != "managed-vllm"}
    certs = {o: c for o, c in data.certifications.items() if o != "managed-vllm"}
    data = dataclasses.replace(data, options=keep, cells=cells, certifications=certs)
    reader = ReaderConstraints(data="own-hardware", ops_team=False, traffic="service", gpu="h100-sxm")
    path = constraint_tree(reader, BASE, data)
    assert path.leaf is None and "relax one" in path.verdict
    assert "Leaf**: none" in constraint_markdown(path, data)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("data", "eu", "data: unknown value 'eu'; allowed: any, own-hardware, in-region"),
        ("gpu", "tpu", "gpu: unknown value 'tpu'; allowed: none, rent, a100-40gb"),
        ("traffic", "huge", "traffic: unknown value 'huge'; allowed: auto, one, team, service"),
    ],
)
def test_bad_answers(data: mx.MatrixData, field: str, value: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        constraint_tree(ReaderConstraints(**{field: value}), BASE, data)


def test_rendered_path_and_readers_table(data: mx.MatrixData, study: MeasuredStudy) -> None:
    path = constraint_tree(example_readers()["an A100 40GB and 25 users"], BASE, data, study)
    text = constraint_text(path, data)
    assert "Your answers: prompts any; GPU a100-40gb; ops team yes; traffic team, 25 peak users." in text
    assert "5. Where the engines differ" in text and "study cpu-box on 2 CPU cores (test CPU), no GPU" in text
    leaf = data.options["managed-vllm"].name
    assert f"Leaf: {leaf}, cost at your profile {path.cost_text} per 1M output tokens" in text
    table = readers_markdown(BASE, study, data)
    assert "| on-prem only, a CPU box, 2 users | 13 | 4 | Self-hosted SGLang | unknown |" in table
    at3 = mx.evaluate(BASE.model_copy(update={"users": 3}), data)
    assert "| no ops team, 3 users |" in table and f"| {leaf} | {at3.text.loc['managed-vllm', 'cost']!s} |" in table


@pytest.mark.slow  # runs the recommend command end to end: about 4 s
def test_cli_recommend_takes_the_questions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cliffbench.bench.store.levels.load_results", lambda study: _results())
    runner = CliRunner()
    args = ["recommend", "--users", "2", "--study", "cpu-box", "--data", "own-hardware", "--gpu", "none"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "For 2 users:" in text  # the measured tree's answer, as before
    assert "From your constraints to an option of the matrix:" in text
    assert "Leaf: Self-hosted SGLang" in text
    no_ops = runner.invoke(app, ["recommend", "--users", "3", "--study", "cpu-box", "--no-ops-team"])
    assert no_ops.exit_code == 0 and "Leaf: Managed self-hosted vLLM (consultancy-run)" in " ".join(
        no_ops.output.split()
    )
    bad = runner.invoke(app, ["recommend", "--users", "3", "--study", "cpu-box", "--gpu", "tpu"])
    assert bad.exit_code == 2 and "--gpu: unknown value 'tpu'; allowed: none, rent" in bad.output

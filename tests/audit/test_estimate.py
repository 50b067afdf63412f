"""Study hardware, dry-run estimates and the KV-memory check (roofline arithmetic, no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cliffbench.audit.estimate import estimate_study, target_hardware
from cliffbench.bench.spec.study import load_study
from cliffbench.cli import app
from cliffbench.config import PROJECT_ROOT, InputError
from cliffbench.hardware import HARDWARE

runner = CliRunner()
A100_STUDY = PROJECT_ROOT / "studies" / "a100-published.yaml"


def test_gpu_study_validates() -> None:
    spec = load_study(A100_STUDY)
    assert spec.hardware == "a100-40gb"
    assert spec.level_sets[0].load.concurrency == [1, 2, 4, 8, 16, 25, 32]
    assert {e.name for e in spec.engines} == {"vllm", "llamacpp-slots-4", "llamacpp-slots-32"}
    assert all(e.model.name == "llama-3.1-8b" for e in spec.engines)


def test_gpu_study_estimate_arithmetic() -> None:
    spec = load_study(A100_STUDY)
    est = {e.engine: e for e in estimate_study(spec, target_hardware(spec), 1024)}
    assert est["vllm"].precision == "bf16"
    assert est["vllm"].weights_gib == pytest.approx(8_030_261_248 * 2 / 2**30)
    # vLLM reserves 90% of 40 GiB minus its weights for KV
    assert est["vllm"].kv_gib == pytest.approx(40 * 0.9 - est["vllm"].weights_gib)
    # 4 slots x 4096 tokens x 128 KiB per token (32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes)
    assert est["llamacpp-slots-4"].kv_gib == pytest.approx(4 * 4096 * 131072 / 2**30)
    assert est["llamacpp-slots-4"].precision == "q4_1"
    assert all(e.fits and e.duration_s > 0 for e in est.values())
    # 4 slots serialise 32 users: the roofline says they need longer than 32 slots
    assert est["llamacpp-slots-4"].duration_s > est["llamacpp-slots-32"].duration_s


def test_dry_run_gpu_study_prints_estimate() -> None:
    result = runner.invoke(app, ["run", str(A100_STUDY), "--dry-run"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "3 engine(s), 21 level runs" in text and "estimate on a100-40gb" in text
    assert "roofline lower bound for the whole study" in text


def _study(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(body)
    return p


def test_kv_beyond_hardware_is_refused(tmp_path: Path) -> None:
    p = _study(
        tmp_path,
        "name: too-big\nhardware: l4\nengines:\n  - kind: llamacpp-slots\n    label: big\n    slots: 64\n"
        "    ctx_per_slot: 8192\n    model: {name: llama-3.1-8b}\n",
    )
    result = runner.invoke(app, ["run", str(p), "--dry-run"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "engines.big.slots:" in text and "exceed the 24 GiB of l4" in text
    spec = load_study(p)
    with pytest.raises(InputError, match=r"engines\.big\.slots"):
        estimate_study(spec, HARDWARE["l4"], 8192)


def test_unknown_hardware(tmp_path: Path) -> None:
    p = _study(tmp_path, "name: hw\nhardware: tpu-v9\nengines:\n  - kind: vllm\n")
    result = runner.invoke(app, ["run", str(p), "--dry-run"])
    assert result.exit_code == 2
    assert "study.hardware: unknown hardware 'tpu-v9'; allowed: local, a100-40gb" in " ".join(result.output.split())


def test_unknown_preset() -> None:
    result = runner.invoke(app, ["prepare-model", "--preset", "llama-9b"])
    assert result.exit_code == 2
    assert "--preset: unknown preset 'llama-9b'; allowed: llama-3.2-1b, llama-3.1-8b" in result.output

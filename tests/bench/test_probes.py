"""The probe's per-dtype matmul rates and which rate stands for each roofline precision (the probes
mocked, or numpy at tiny sizes: the real probe saturates the cores for seconds)."""

from __future__ import annotations

from typing import Any

import pytest

from cliffbench.audit.roofline import BITS_PER_PARAM
from cliffbench.bench import probes
from cliffbench.bench.probes import PROBE_DTYPES, LocalHardware, compute_roof
from cliffbench.config import InputError
from cliffbench.hardware import Hardware

# a manifest's `hardware_probe` as stored before the per-dtype rates
OLD_PROBE: dict[str, Any] = {
    "name": "local",
    "memory_bandwidth_gb_s": 20.0,
    "bf16_tflops": 2.0,
    "fp32_tflops": 0.3,
    "int8_tops": None,
    "memory_gib": 16.0,
    "source": "measured by cliffbench probes",
    "note": "bf16: torch bf16 matmul",
}


def test_every_precision_has_a_probed_dtype() -> None:
    assert set(PROBE_DTYPES) == set(BITS_PER_PARAM)
    assert PROBE_DTYPES["q4_1"] == PROBE_DTYPES["q8_0"] == "int8"
    with pytest.raises(InputError, match="precision"):
        compute_roof(Hardware.model_validate(OLD_PROBE), "int3")


def test_an_old_probe_loads_and_falls_back_to_the_fp32_rate_labelled() -> None:
    hw = LocalHardware.model_validate(OLD_PROBE)
    assert hw.matmul_tflops_by_dtype == {} and hw.compute_roofs == {}
    assert compute_roof(hw, "fp32") == (0.3, "numpy fp32 matmul")
    assert compute_roof(hw, "bf16")[0] == 2.0
    rate, how = compute_roof(hw, "q4_1")
    assert rate == 0.3
    assert how.startswith("the fp32 matmul rate, standing in for llama.cpp's Q4_1 path")
    assert "int8 dot products" in how and "no int8 matmul rate stored" in how
    rate, how = compute_roof(hw, "fp16")
    assert rate == 0.3 and "standing in for fp16" in how
    # a Hardware without fp32 (the sweep tests' fixed probe): bf16 stands in, said so
    no_fp32 = Hardware.model_validate(OLD_PROBE | {"fp32_tflops": None})
    assert compute_roof(no_fp32, "q8_0")[0] == 2.0 and "no fp32 rate stored" in compute_roof(no_fp32, "q8_0")[1]


def test_a_probed_int8_rate_stands_for_the_quantised_path() -> None:
    rates = {"float32": 0.3, "bfloat16": 2.0, "float16": 0.1, "int8": 0.4}
    hw = LocalHardware.model_validate(OLD_PROBE | {"matmul_tflops_by_dtype": rates})
    assert compute_roof(hw, "bf16") == (2.0, "torch bf16 matmul")
    assert compute_roof(hw, "fp16") == (0.1, "torch fp16 matmul")
    rate, how = compute_roof(hw, "q4_1")
    assert rate == 0.4 and how.startswith("torch int8 matmul (torch._int_mm")
    assert "standing in for llama.cpp's Q4_1 path" in how and "not probed" in how


def test_local_hardware_stores_every_rate_and_names_each_roof(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probes mocked: float16 fails (no kernel), int8 is slow and measured at a smaller n."""
    calls: list[tuple[str, int, float | None]] = []

    def rate(dtype: str, n: int, runs: int, budget_s: float | None) -> tuple[float, int]:
        calls.append((dtype, n, budget_s))
        if dtype == "float16":
            raise InputError("dtype: float16 matmul failed on this machine (no kernel)")
        return {"float32": 0.3, "bfloat16": 2.0, "int8": 0.05}[dtype], 512 if dtype == "int8" else n

    monkeypatch.setattr(probes, "_matmul_rate", rate)
    monkeypatch.setattr(probes, "probe_memory_bandwidth_gb_s", lambda size_mb, runs: 20.0)
    hw = probes.local_hardware(n=1024, runs=2, budget_s=1.5)
    # fp32 is measured at full size without a budget; the optional dtypes with it
    assert calls == [("float32", 1024, None), ("bfloat16", 1024, 1.5), ("float16", 1024, 1.5), ("int8", 1024, 1.5)]
    assert hw.matmul_tflops_by_dtype == {"float32": 0.3, "bfloat16": 2.0, "int8": 0.05}
    assert (hw.fp32_tflops, hw.bf16_tflops, hw.int8_tops) == (0.3, 2.0, 0.05)
    assert "int8: 512x512, held to 1.5 s" in hw.note and "not probed: float16" in hw.note
    assert set(hw.compute_roofs) == set(PROBE_DTYPES)
    assert hw.compute_roofs["q4_1"].startswith("torch int8 matmul") and "standing in" in hw.compute_roofs["q4_1"]
    assert "standing in for fp16" in hw.compute_roofs["fp16"]
    # what the manifest stores loads back, field for field
    assert LocalHardware.model_validate(hw.model_dump(mode="json")) == hw


def test_local_hardware_without_torch_keeps_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    def rate(dtype: str, n: int, runs: int, budget_s: float | None) -> tuple[float, int]:
        if dtype != "float32":
            raise InputError(f"dtype: {dtype} needs torch, which is not installed")
        return 0.3, n

    monkeypatch.setattr(probes, "_matmul_rate", rate)
    monkeypatch.setattr(probes, "probe_memory_bandwidth_gb_s", lambda size_mb, runs: 20.0)
    hw = probes.local_hardware(n=256, runs=1)
    assert hw.bf16_tflops == 0.3 and hw.int8_tops is None and "no torch bf16: fp32 rate" in hw.note
    assert compute_roof(hw, "q4_1")[0] == 0.3 and "the fp32 matmul rate" in hw.compute_roofs["q4_1"]


def test_a_budget_shrinks_a_slow_matmul() -> None:
    # n = (1e-7 s / 2 x rate / 2)^(1/3) >= 32 needs ~1.3e12 FLOP/s at 32x32, far beyond numpy
    rate, n = probes._matmul_rate("float32", 256, 1, budget_s=1e-7)
    assert n == 256 // 8 and rate > 0
    assert probes._matmul_rate("float32", 64, 1, budget_s=None)[1] == 64
    with pytest.raises(InputError, match="budget_s"):
        probes.probe_matmul_tflops("float32", 64, 1, budget_s=0)
    with pytest.raises(InputError, match="dtype"):
        probes.probe_matmul_tflops("int4", 64, 1)

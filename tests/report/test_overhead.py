"""The harness-overhead section: matching a study's engines to the stored benchmark, and the
sentence that says whether the harness could explain a gap between two engines."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from cliffbench.report import sections as nv
from cliffbench.report.data import BenchmarkResult, ReportData
from tests.report.study_data import fake_results


def _bench(cpu: str, kit: dict[str, float], probe_off: float = 1.01) -> BenchmarkResult:
    """A stored benchmark: per engine a kit/raw median at 1 and 32 users, spread +-0.02."""
    specs = {
        "vllm": {"kind": "vllm"},
        "llamacpp-slots-4": {"kind": "llamacpp-slots", "label": "llamacpp-slots-4", "slots": 4},
        "llamacpp-slots-8": {"kind": "llamacpp-slots", "label": "llamacpp-slots-8", "slots": 8},
    }
    summary: list[dict[str, Any]] = []
    for engine, r in kit.items():
        for users in (1, 32):
            for variant, ratio in (("raw", 1.0), ("kit", r), ("kit-no-lag-probe", r * probe_off)):
                summary.append(
                    {
                        "engine": engine,
                        "users": users,
                        "variant": variant,
                        "over_raw_median": ratio,
                        "over_raw_min": ratio - 0.02,
                        "over_raw_max": ratio + 0.02,
                        "repeats": 3,
                    }
                )
    return BenchmarkResult(
        "engine_overhead.json",
        {"reps": 3, "machine": {"cpu": {"model": cpu}}, "specs": specs, "summary": summary},
    )


def _data(bench: BenchmarkResult | None) -> ReportData:
    return ReportData(study="s", results=fake_results(0), claims=pd.DataFrame(), overhead=bench)


def test_engines_match_the_benchmark_by_spec_and_cpu() -> None:
    data = _data(_bench("Test CPU 9000", {"vllm": 0.9, "llamacpp-slots-4": 0.98}))
    ov = nv.engine_overheads(data).set_index("engine")
    assert ov.at["vllm", "over_raw"] == pytest.approx(0.9)
    assert ov.at["vllm", "over_raw_min"] == pytest.approx(0.88)
    assert ov.at["llamacpp-slots-4", "benchmark_engine"] == "llamacpp-slots-4"
    # the serial engine's configuration was not benchmarked: unknown, not 1
    assert ov["benchmark_engine"].isna()["llamacpp-serial"]
    text = nv.overhead_section(data)
    assert "| vllm | x0.9 |" in text and "x0.88-x0.92" in text
    assert "Not measured for this configuration on this CPU model: llamacpp-serial" in text
    assert "lag-probe off x1.01" in text


def test_another_cpu_is_not_matched() -> None:
    ov = nv.engine_overheads(_data(_bench("Other CPU", {"vllm": 0.9})))
    assert ov["benchmark_engine"].isna().all()


def test_gap_sentence_says_whether_the_harness_could_explain_it() -> None:
    data = _data(_bench("Test CPU 9000", {"vllm": 0.9, "llamacpp-slots-4": 0.99}))
    small = nv.overhead_gap_sentence(data, "vllm", "llamacpp-slots-4", 4.0)
    assert "tilts the ratio by x0.909" in small and "less than the x4 gap" in small
    assert "the gap is the engines'" in small
    big = nv.overhead_gap_sentence(data, "vllm", "llamacpp-slots-4", 1.05)
    assert "more than the x1.05 gap" in big and "could explain the gap" in big
    assert "not measured" in nv.overhead_gap_sentence(data, "vllm", "llamacpp-serial", 2.0)


def test_no_benchmark_is_said() -> None:
    assert "No harness-overhead benchmark stored" in nv.overhead_section(_data(None))

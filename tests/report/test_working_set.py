"""The working-set axis (benchmarks/working_set.py) in the report: which engine kept its reuse as the
pool grew (compute-bound) and which lost it (a KV-capacity limit), read from a hand-built result;
the figure draws it, and a note where nothing was measured."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cliffbench.report.data import BenchmarkResult, ReportData
from cliffbench.report.figures import plot_working_set
from cliffbench.report.sections.working_set import (
    working_set_rows,
    working_set_section,
    working_set_sentence,
)
from tests.report.study_data import fake_results


def _summary(engine: str, served: list[list[float]], cache: float) -> list[dict[str, Any]]:
    return [
        {
            "engine": engine,
            "documents": d,
            "working_set_tokens": d * 128,
            "cache_tokens": cache,
            "cache_prompts": 32.0 if engine.startswith("llama") else None,
            "served_of_possible": s,
            "hit_rate_theory": [0.8 / (1 + i)] * len(s),
            "ttft_p50_over_control": [0.5 + 0.5 * (1 - x) for x in s],
        }
        for i, (d, s) in enumerate(zip((4, 16, 64), served, strict=True))
    ]


def _data(summary: list[dict[str, Any]] | None, cpu: str = "Test CPU 9000") -> ReportData:
    bench = None
    if summary is not None:
        payload = {"reps": 2, "users": 8, "k": 2, "doc_tokens": 128, "pools": [4, 16, 64],
                   "record": {"cpu": {"model": cpu}}, "summary": summary}  # fmt: skip
        bench = BenchmarkResult("working_set.json", payload)
    return ReportData(study="s", results=fake_results(0), claims=pd.DataFrame(), working_set=bench)


HELD = _summary("vllm", [[1.0, 0.98], [1.02, 0.95], [0.97, 0.99]], 5800)
FELL = _summary("llamacpp-slots-4", [[0.9, 0.8], [0.6, 0.5], [0.3, 0.2]], 32768)


def test_rows_are_medians_and_ranges_over_repeats() -> None:
    rows = working_set_rows(_data(HELD + FELL)).set_index(["engine", "documents"])
    assert rows.at[("llamacpp-slots-4", 16), "served"] == pytest.approx(0.55)
    assert rows.at[("llamacpp-slots-4", 16), "served_min"] == pytest.approx(0.5)
    assert rows.at[("vllm", 64), "served_max"] == pytest.approx(0.99)
    assert rows.at[("vllm", 4), "working_set_tokens"] == 512


def test_held_is_compute_and_fell_is_capacity() -> None:
    text = working_set_section(_data(HELD + FELL))
    vllm = next(line for line in text.splitlines() if line.startswith("- vLLM"))
    slots = next(line for line in text.splitlines() if line.startswith("- llama.cpp"))
    assert "99 % [98-100] of the possible reuse at 512 tokens" in vllm and "per slot" not in vllm
    assert "keeps one prompt per slot, 32 in all" in slots
    assert "limit is compute, not cache capacity" in vllm
    assert "the possible reuse itself, 80 % then 27 %" in vllm
    # every repeat at the second pool (0.6, 0.5) under 0.8 x the first pool's least (0.8): fell at 2,048 tokens
    assert "fell once the pool reached 2,048 tokens (every repeat under 80 % of the smallest pool's least): " in slots
    assert "a KV-capacity limit" in slots
    sentence = working_set_sentence(_data(HELD + FELL))
    assert "tuned kept its share" in sentence and "lost its share as the pool grew, a KV-capacity limit" in sentence


def test_another_cpu_is_named() -> None:
    assert _data(None).results.manifest.cpu.model == "Test CPU 9000"
    assert "another CPU" not in working_set_section(_data(HELD))
    assert ", on another CPU than this study's" in working_set_section(_data(HELD, cpu="Other CPU"))


def test_nothing_measured_says_so() -> None:
    assert "has not been measured" in working_set_section(_data(None))
    assert working_set_sentence(_data(None)) == ""
    assert working_set_rows(_data(None)).empty


@pytest.mark.parametrize("what", ["served", "ttft_over_control"])
def test_figure_draws_a_line_per_engine_and_the_cache_inside_the_axis(what: str) -> None:
    fig, ax = plt.subplots()
    plot_working_set(ax, working_set_rows(_data(HELD + FELL)), what)
    assert len(ax.containers) == 2  # one errorbar per engine
    # vLLM's 5,800-token cache lies inside 2 x 8,192 tokens; the slots' 32,768 lie outside
    dashed = [np.asarray(line.get_xdata(), dtype=float)[0] for line in ax.lines if line.get_linestyle() == "--"]
    assert dashed == [5800]
    plt.close(fig)
    fig, ax = plt.subplots()
    plot_working_set(ax, working_set_rows(_data(None)), what)
    assert any("not measured" in t.get_text() for t in ax.texts)
    plt.close(fig)


def test_a_low_flat_share_is_how_prompts_are_kept_not_the_working_set() -> None:
    # ~0.65 at every pool, the spread overlapping: no fall, but under 80 % from the start
    flat = _summary("llamacpp-slots-4", [[0.7, 0.6], [0.5, 0.65], [0.6, 0.7]], 32768)
    text = working_set_section(_data(flat))
    assert "held within the spread of its repeats, but under 80 % even at the smallest pool" in text
    assert "(one prompt per slot, reused only from an idle slot)" in text
    assert "KV-capacity" not in text.split("\n- ")[1]
    assert "well under the possible reuse from the smallest pool on, held back by how it keeps prompts" in (
        working_set_sentence(_data(flat))
    )

"""The Pareto figure: at most six series a panel, one curve per engine, the TPOT budget shaded."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from cliffbench.report.figures import pareto_panels, plot_pareto

ENGINES = [f"llamacpp-slots-{n}" for n in (1, 2, 4, 8, 16)] + ["vllm", "vllm-fp32", "ollama"]


def _levels() -> pd.DataFrame:
    rows = []
    for i, engine in enumerate(ENGINES):
        loads = (1, 32) if engine == "vllm-fp32" else (1, 4, 16, 32)
        for users in loads:
            rows.append(
                {
                    "engine": engine,
                    "level_set": "chat",
                    "status": "ok",
                    "concurrency": users,
                    "output_tok_s": 20.0 * (i + 1) * users**0.7,
                    "tpot_s_p50": 0.01 * (i + 1) * users**0.5,
                    "slo_verdict": "meets" if users < 16 else "misses",
                }
            )
    return pd.DataFrame(rows)


def test_panels_hold_six_series_at_most_the_most_measured_first() -> None:
    panels = pareto_panels(_levels(), "chat")
    assert [len(p) for p in panels] == [4, 4]  # 8 engines: balanced, not 6 + 2
    assert sorted(e for p in panels for e in p) == sorted(ENGINES)
    assert panels[-1][-1] == "vllm-fp32"  # measured at two loads only: last


def test_one_curve_per_engine_named_for_people_with_the_budget_shaded() -> None:
    lv = _levels()
    fig, ax = plt.subplots()
    plot_pareto(ax, lv, "chat", 0.25, ["vllm", "ollama"], {"vllm": "vLLM, bf16, tuned"})
    labels = [str(line.get_label()) for line in ax.get_lines() if not str(line.get_label()).startswith("_")]
    assert labels == ["vLLM, bf16, tuned", "ollama"]
    vllm = next(line for line in ax.get_lines() if line.get_label() == "vLLM, bf16, tuned")
    g = lv[lv["engine"] == "vllm"].sort_values("concurrency")
    assert np.allclose(np.asarray(vllm.get_xdata(), dtype=float), 1 / g["tpot_s_p50"])
    assert np.allclose(np.asarray(vllm.get_ydata(), dtype=float), g["output_tok_s"])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    (span,) = ax.patches
    assert isinstance(span, Rectangle) and span.get_x() == 4.0  # shaded from 1 / 0.25 s per token up
    plt.close(fig)

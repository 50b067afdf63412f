"""The steady window in the report: the in-flight curve by hand, and the steady/transient table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cliffbench.report.data import ReportData
from cliffbench.report.figure_set import in_flight_figure
from cliffbench.report.figures import in_flight_curve
from cliffbench.report.sections.steady import steady_sentence, steady_table
from tests.report.study_data import fake_results


def test_in_flight_counts_arrivals_before_departures_at_one_instant() -> None:
    r = pd.DataFrame({"t_submit_s": [0.0, 1.0, 2.0], "t_done_s": [3.0, 2.0, np.nan], "t_end_s": [3.0, 2.0, 5.0]})
    t, n = in_flight_curve(r)
    assert t.tolist() == [0.0, 1.0, 2.0, 2.0, 3.0, 5.0]
    assert n.tolist() == [1, 2, 3, 2, 1, 0]  # the third request closes at its last token (no t_done_s)


def _with_phases(seed: int = 0) -> ReportData:
    res = fake_results(seed)
    lv = res.levels.copy()
    lv["steady_start_s"], lv["steady_end_s"] = 1.0, 5.0
    lv["n_steady"], lv["n_ramp"], lv["n_drain"] = 10, 2, 3
    for col in ("ttft_s_p90", "tpot_s_p50", "output_tok_s"):
        lv[f"transient_{col}"] = lv[col] * 2
    return ReportData(study="s", results=dataclasses.replace(res, levels=lv), claims=pd.DataFrame())


def test_steady_table_sets_each_engines_heaviest_load_beside_its_transient() -> None:
    data = _with_phases()
    text = steady_table(data)
    lv = data.results.levels
    chat = lv[(lv["level_set"] == "chat") & (lv["status"] == "ok")]
    rows = [line for line in text.splitlines()[2:]]
    assert len(rows) == chat["engine"].nunique()
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        steady, transient = (float(x) for x in cells[2].split(" / "))
        assert transient == 2 * steady or abs(transient / steady - 2) < 0.05  # rounded to 2 digits
    assert "95%" in steady_sentence()


def test_the_sentence_counts_the_drain_requests_stopped_at_the_windows_end() -> None:
    data = _with_phases()
    assert "stopped" not in steady_sentence(data)  # every level waited for its drain
    lv = data.results.levels.copy()
    lv["n_stopped"] = np.where(np.arange(len(lv)) % 2 == 0, 3.0, np.nan)  # NaN: a level that stopped none
    stopped = dataclasses.replace(data, results=dataclasses.replace(data.results, levels=lv))
    n = int(np.nansum(lv["n_stopped"]))
    assert f"The {n} requests still running then were aborted and are stored as stopped." in steady_sentence(stopped)


def test_a_study_without_phases_says_so() -> None:
    data = ReportData(study="s", results=fake_results(0), claims=pd.DataFrame())
    assert "before steady windows existed" in steady_table(data)


def test_in_flight_figure_one_panel_per_engine_with_the_window_shaded() -> None:
    data = _with_phases()
    fig = in_flight_figure(data.results, "chat", {})
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == data.results.levels.query("level_set == 'chat'")["engine"].nunique()
    assert all(ax.patches for ax in panels)  # the shaded window (axvspan) on every panel
    plt.close(fig)


def test_per_engine_figures_hold_six_engines_a_panel_at_most() -> None:
    from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
    from cliffbench.report.figure_set import per_engine_figure
    from cliffbench.report.figures import pareto_panels, plot_throughput, plot_ttft_slo

    eight = ("vllm", "vllm-fp32", "vllm-as-shipped", "ollama", "llamacpp-serial", "llamacpp-slots-4", "llamacpp-f32-32")
    res = fake_results(3, engines=(*eight, "remote-server"))
    judge = SloJudge.of(res.study.slo)
    judged = pool_repeats(res.levels, res.requests, judge)
    panels = pareto_panels(judged, "chat")
    engines = judged.query("level_set == 'chat'")["engine"].nunique()
    assert engines > 6 and len(panels) >= 2  # the fixture needs the split
    assert sorted(e for p in panels for e in p) == sorted(judged.query("level_set == 'chat'")["engine"].unique())
    label, limit = judge.label("ttft_s"), judge.thresholds["ttft_s"]
    for fig in (
        per_engine_figure(res.levels, panels, lambda ax, lv: plot_throughput(ax, lv, "chat")),
        per_engine_figure(judged, panels, lambda ax, lv: plot_ttft_slo(ax, lv, "chat", label, limit)),
    ):
        for ax, panel in zip(fig.axes, panels, strict=True):
            legend = ax.get_legend()
            labels = {t.get_text() for t in legend.get_texts()} if legend else set()
            engine_labels = labels & set(judged["engine"])
            assert len(panel) <= 6 and engine_labels == set(panel)  # each panel draws its own engines only
        plt.close(fig)

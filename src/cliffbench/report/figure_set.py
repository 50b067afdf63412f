"""From a study's report data to the report's figures and decision tree (what 20_analysis and
30_whitepaper call). Draws from the `ReportData` bundle only; never starts an engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from cliffbench.audit.shape_verdicts import normalised_points
from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.bench.store.levels import Results, ok_levels
from cliffbench.config import FIGURES_DIR, InputError
from cliffbench.decide.causes import latency_components, study_cliffs
from cliffbench.decide.tree import DecisionTree
from cliffbench.report import figures as fg
from cliffbench.report.data import ReportData

__all__ = [
    "FIGURE_CAPTIONS",
    "fidelity_rows",
    "figure_dir",
    "figure_paths",
    "make_figures",
    "timeline_level",
]

FIGURE_CAPTIONS = {
    "throughput": "Output tokens per second vs concurrent users (closed loop): median over repeats, band: "
    "their range (min-max).",
    "ttft": "Time to first token at the SLO percentile, over every submitted request of every repeat "
    "(a failed request counts as +inf), with its exact order-statistic 95% interval where the level holds "
    "enough requests for one; open circles: no finite upper bound. Dotted: median over repeats of TTFT p50.",
    "itl": "Inter-token latency distributions at the lowest and the highest concurrency.",
    "cliff_causes": "Why the cliff: mean latency per request split into waiting for admission (queue), prefill "
    "and decode, from the engines' own timestamps, against users; dashed: the engine's cliff (searched where a "
    "search ran, else the grid's bracket).",
    "timeline": "Request timelines at the highest level: waiting (queue), prefill and decoding per request.",
    "kv_memory": "KV-cache memory reserved vs holding live tokens, per engine and concurrency.",
    "hol_blocking": "Head-of-line blocking: TTFT of short requests with and without a long document in flight.",
    "ceiling_fraction": "Published claims (A100, Llama-3.1-8B) and measured levels (this study) as a fraction of "
    "their own roofline ceiling; points above the dashed line exceed what the hardware can do.",
    "serving_overhead": "In-process engine / real server ratios of output tok/s (benchmarks/fidelity.py); the "
    "control pair measures the in-process engine against itself, the noise floor of this machine.",
    "decision_tree": "Decision tree: user-count thresholds are the measured SLO cliffs of each engine.",
}


def figure_dir(study: str) -> Path:
    return FIGURES_DIR / study


def figure_paths(study: str, names: list[str] | None = None) -> dict[str, Path]:
    """SVG paths of the figures 20_analysis made; InputError if one is missing."""
    out = {}
    for name in names or list(FIGURE_CAPTIONS):
        p = figure_dir(study) / f"{name}.svg"
        if not p.is_file():
            raise InputError(f"figures: {p} is missing; run notebooks/20_analysis.ipynb for study {study!r}")
        out[name] = p
    return out


def timeline_level(res: Results, level_set: str) -> tuple[list[str], str]:
    """The engines and the load of the highest level every engine completed."""
    lv = ok_levels(res.levels, level_set)
    if lv.empty:
        raise InputError(f"level_set: no successful {level_set!r} levels in this study")
    per = lv.groupby("engine")["concurrency"].apply(set)
    common = set.intersection(*per)
    users = max(common) if common else lv["concurrency"].max()
    keys = lv[lv["concurrency"] == users].sort_values("engine")
    return list(keys["engine"]), str(keys["level_key"].iloc[0]).rsplit("__", 1)[1]


def fidelity_rows(data: ReportData) -> pd.DataFrame:
    """The rows of the fidelity results the report cites (empty when the benchmark has not run)."""
    if data.fidelity is None:
        return pd.DataFrame(columns=["pair", "slots", "concurrency", "tok_s_ratio", "ttft_p50_ratio"])
    return pd.DataFrame(data.fidelity.data["rows"])


def make_figures(
    data: ReportData,
    level_set: str = "chat",
    mixed_level_set: str = "mixed",
    tree: DecisionTree | None = None,
) -> dict[str, Path]:
    """Draw every report figure (PNG + SVG under figures/<study>/); returns the SVG paths."""
    fg.set_style()
    res = data.results
    out = figure_dir(data.study)
    paths: dict[str, Path] = {}

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        paths[name] = fg.save_figure(fig, name, out)["svg"]
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    fg.plot_throughput(ax, res.levels, level_set)
    save(fig, "throughput")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    judge = SloJudge.of(res.study.slo, **({} if tree is None else tree.slo))
    fg.plot_ttft_slo(
        ax, pool_repeats(res.levels, res.requests, judge), level_set, judge.label("ttft_s"), judge.thresholds["ttft_s"]
    )
    save(fig, "ttft")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    fg.plot_itl(ax, res.tokens, res.requests, res.levels, level_set)
    save(fig, "itl")
    comp = latency_components(res, level_set)
    cliffs = study_cliffs(data.pooled, level_set, data.searches)
    names = sorted(comp["engine"].unique()) if len(comp) else []
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(7.5, 2.4 * rows), squeeze=False)
    for ax, eng in zip(axes.flat, names, strict=False):
        c = cliffs.get(eng)
        fg.plot_latency_components(ax, comp, eng, c.meets_up_to if c else None, c.first_miss if c else None)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_axis_off()
    if names:
        axes.flat[0].legend(fontsize=7)
    save(fig, "cliff_causes")
    engines, load = timeline_level(res, level_set)
    fig, axes = plt.subplots(len(engines), 1, figsize=(6.5, 1.9 * len(engines)), squeeze=False)
    for ax, eng in zip(axes[:, 0], engines, strict=True):
        fg.plot_timeline(ax, res.requests, eng, f"{eng}__{level_set}__{load}")
    save(fig, "timeline")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    fg.plot_kv_memory(ax, res.memory, res.levels, level_set)
    save(fig, "kv_memory")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    fg.plot_hol_blocking(ax, res.requests, mixed_level_set)
    save(fig, "hol_blocking")
    fig, ax = plt.subplots(figsize=(8.0, 3.8))
    fg.plot_ceiling_fraction(ax, normalised_points(res, level_set, data.claims))
    save(fig, "ceiling_fraction")
    fig, ax = plt.subplots(figsize=(8.0, 3.6))
    fg.plot_serving_overhead(ax, fidelity_rows(data))
    save(fig, "serving_overhead")
    if tree is not None:
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        fg.plot_decision_tree(ax, tree)
        save(fig, "decision_tree")
    return paths

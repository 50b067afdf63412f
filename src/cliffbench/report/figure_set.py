"""From a study's report data to the report's figures and decision tree (what 20_analysis and
30_whitepaper call). Draws from the `ReportData` bundle only; never starts an engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cliffbench.audit.shape_verdicts import normalised_points
from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.bench.store.levels import Results, ok_levels
from cliffbench.config import FIGURES_DIR, InputError
from cliffbench.decide.causes import latency_components, study_cliffs
from cliffbench.decide.tree import DecisionTree
from cliffbench.report import figures as fg
from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_names, named
from cliffbench.report.sections.working_set import working_set_rows

__all__ = [
    "FIGURE_CAPTIONS",
    "fidelity_rows",
    "figure_dir",
    "figure_paths",
    "in_flight_figure",
    "make_figures",
    "overhead_figure",
    "per_engine_figure",
    "timeline_figure",
    "timeline_level",
    "tree_figure",
]

FIGURE_CAPTIONS = {
    "pareto": "Total output tokens per second against each user's speed (the inverse of TPOT p50, medians over "
    "repeats), one curve per engine through its measured loads (the end points labelled with their users). "
    "Upper right is better. Shaded: per-user speed within the TPOT budget; filled markers meet the whole SLO "
    "(TTFT too) at that load, open ones do not.",
    "throughput": "Output tokens per second vs concurrent users (closed loop): median over repeats, band: "
    "their range (min-max); engines measured at one load only are in the results table.",
    "ttft": "Time to first token at the SLO percentile, over the steady requests of every repeat "
    "(a failed request counts as +inf), with its exact order-statistic 95% interval where the level holds "
    "enough requests for one; open circles: no finite upper bound. Dotted: median over repeats of TTFT p50. "
    "Engines measured at one load only: Appendix C.",
    "itl": "Inter-token latency distributions at the lowest and the highest concurrency.",
    "cliff_causes": "Why the cliff: mean latency per request split into waiting for admission (queue), prefill "
    "and decode, from the engines' own timestamps, against users; dashed: the engine's cliff (searched where a "
    "search ran, else the grid's bracket).",
    "timeline": "Request timelines at the highest level every engine ran: waiting (queue), prefill and decoding "
    "per request.",
    "in_flight": "Requests in flight over one level per engine (its highest user count, first repeat); dashed: the "
    "users; shaded: the steady window (from the last user's first request until fewer than 95% of the users are "
    "left). Verdicts, cliffs and the body's latencies and throughputs are taken over this window; the ramp before "
    "it and the drain after it are reported apart (Appendix C).",
    "kv_memory": "KV-cache memory reserved vs holding live tokens, per engine and concurrency.",
    "hol_blocking": "Head-of-line blocking: TTFT of short requests with and without a long document in flight.",
    "ceiling_fraction": "Published claims (A100, Llama-3.1-8B) and measured levels (this study) as a fraction of "
    "their own roofline ceiling; points above the dashed line exceed what the hardware can do.",
    "serving_overhead": "In-process engine / real server ratios of output tok/s (benchmarks/fidelity.py), one "
    "panel per pair, shaded: the +-10% fidelity target; the control pair measures the in-process engine against "
    "itself, the noise floor of this machine.",
    "working_set": "Prefix reuse as the pool of shared documents grows, the users fixed (benchmarks/working_set.py, "
    "the rag profile): left, the share of the possible reuse (what an infinite prefix cache would serve) each "
    "engine served from cache; right, its TTFT p50 over the same engine's with reuse off. Medians over repeats, "
    "bars their range; dashed: the engine's KV cache in tokens, where it falls inside the axis and is counted in "
    "tokens (a slot engine keeps one prompt per slot instead). A share that falls "
    "as the pool grows is a KV-capacity limit; one that holds leaves compute as the limit.",
    "decision_tree": "Decision tree: for each range of peak users, the engine the rule printed above the tree "
    "picks, every engine read at that user count from its own measured levels (meeting the SLO at a higher "
    "measured load implies meeting it at a lower one).",
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
    people = engine_names(data)
    fg.set_style()
    res = data.results
    out = figure_dir(data.study)
    paths: dict[str, Path] = {}

    def save(fig: Any, name: str, tight: bool = True) -> None:
        if tight:  # the timeline and the tree lay themselves out
            fig.tight_layout()
        paths[name] = fg.save_figure(fig, name, out)["svg"]
        plt.close(fig)

    judge = SloJudge.of(res.study.slo, **({} if tree is None else tree.slo))
    judged = pool_repeats(res.levels, res.requests, judge)
    panels = fg.pareto_panels(judged, level_set)
    curves = fg.pareto_panels(judged, level_set, curves_only=True)
    # the body's line figures name engines for people, as its text does
    by_name = [named(p, people) for p in curves]
    named_levels = res.levels.assign(engine=res.levels["engine"].map(lambda e: people.get(e, e)))
    named_judged = judged.assign(engine=judged["engine"].map(lambda e: people.get(e, e)))
    save(per_engine_figure(named_levels, by_name, lambda ax, lv: fg.plot_throughput(ax, lv, level_set)), "throughput")
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5, 3.9), squeeze=False)
    for ax, engines in zip(axes[0], panels, strict=True):
        fg.plot_pareto(ax, judged, level_set, judge.thresholds.get("tpot_s", 1.0), engines, people)
    save(fig, "pareto")
    label, limit_s = judge.label("ttft_s"), judge.thresholds["ttft_s"]
    save(
        per_engine_figure(named_judged, by_name, lambda ax, lv: fg.plot_ttft_slo(ax, lv, level_set, label, limit_s)),
        "ttft",
    )
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
    save(timeline_figure(res, level_set), "timeline", tight=False)
    save(in_flight_figure(res, level_set, engine_names(data)), "in_flight", tight=False)
    # memory is selected by level key inside the plot: each panel's levels pick their own samples
    save(
        per_engine_figure(res.levels, curves, lambda ax, lv: fg.plot_kv_memory(ax, res.memory, lv, level_set)),
        "kv_memory",
    )
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    fg.plot_hol_blocking(ax, res.requests, mixed_level_set)
    save(fig, "hol_blocking")
    fig, ax = plt.subplots(figsize=(8.0, 3.8))
    fg.plot_ceiling_fraction(ax, normalised_points(res, level_set, data.claims))
    save(fig, "ceiling_fraction")
    save(overhead_figure(fidelity_rows(data)), "serving_overhead")
    ws = working_set_rows(data)
    fig, axes = plt.subplots(1, 2, figsize=fg.page_figsize(1, 2.8), squeeze=False)
    for ax, what in zip(axes[0], ("served", "ttft_over_control"), strict=True):
        fg.plot_working_set(ax, ws, what, people)
    if not ws.empty:
        axes[0][0].legend(fontsize=7)
    save(fig, "working_set")
    if tree is not None:
        save(tree_figure(tree), "decision_tree", tight=False)
    return paths


def timeline_figure(res: Results, level_set: str) -> Figure:
    """One timeline panel per engine at `timeline_level`, two columns from four engines on, sized
    to fit one page with its caption; one legend for all panels, below them."""
    engines, load = timeline_level(res, level_set)
    cols = 2 if len(engines) >= 4 else 1
    rows = -(-len(engines) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=fg.page_figsize(rows, 1.7, 0.4), squeeze=False)
    handles: dict[str, Any] = {}
    for i, (ax, eng) in enumerate(zip(axes.flat, engines, strict=False)):
        for h in fg.plot_timeline(ax, res.requests, eng, f"{eng}__{level_set}__{load}", legend=False):
            handles.setdefault(str(h.get_label()), h)
        # axis titles once per column and row: beside a neighbour's ticks they run into them
        ax.set_ylabel("request" if i % cols == 0 else "")
        if i + cols < len(engines):
            ax.set_xlabel("")
    for ax in list(axes.flat)[len(engines) :]:
        ax.set_axis_off()
    fig.legend(handles=list(handles.values()), loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0.0, 0.4 / fig.get_figheight(), 1.0, 1.0))
    return fig


def per_engine_figure(
    levels: pd.DataFrame, panels: list[list[str]], draw: Callable[[Axes, pd.DataFrame], None]
) -> Figure:
    """A one-line-per-engine plot as stacked panels, each `draw`n from the levels of its engines
    (`pareto_panels`: at most six a panel, the same split as the Pareto figure's)."""
    fig, axes = plt.subplots(len(panels), 1, figsize=fg.page_figsize(len(panels), 3.0), squeeze=False)
    for ax, engines in zip(axes[:, 0], panels, strict=True):
        draw(ax, levels[levels["engine"].isin(engines)])
    return fig


def in_flight_figure(res: Results, level_set: str, names: dict[str, str]) -> Figure:
    """One in-flight panel per engine at its highest user count (first repeat), two columns from
    four engines on, sized to fit a page."""
    lv = ok_levels(res.levels, level_set)
    if "repeat" in lv:
        lv = lv[lv["repeat"] == lv["repeat"].min()]
    top = lv.sort_values("concurrency").groupby("engine").tail(1).sort_values("engine")
    cols = 2 if len(top) >= 4 else 1
    rows = max(1, -(-len(top) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=fg.page_figsize(rows, 1.5, 0.2), squeeze=False)
    palette = fg.engine_palette(list(top["engine"]))
    for ax, (_, row) in zip(axes.flat, top.iterrows(), strict=False):
        title = f"{names.get(row['engine'], row['engine'])}, {int(row['concurrency'])} users"
        fg.plot_in_flight(ax, res.requests, row, title, palette.get(row["engine"]))
        ax.set_ylabel("in flight", fontsize=7)
    for ax in list(axes.flat)[len(top) :]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def overhead_figure(fidelity: pd.DataFrame) -> Figure:
    """The serving-overhead ratios as small multiples: one panel per pair, two columns, shared y."""
    pairs: list[str | None] = [*fg.overhead_pairs(fidelity)] or [None]
    cols = min(2, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=fg.page_figsize(rows, 2.6), squeeze=False, sharey=True)
    for ax, pair in zip(axes.flat, pairs, strict=False):
        fg.plot_serving_overhead(ax, fidelity, pair=pair)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_axis_off()
    return fig


def tree_figure(tree: DecisionTree) -> Figure:
    """The decision tree at the page's text width, so it prints at its own font sizes."""
    fig, ax = plt.subplots(figsize=fg.tree_figsize(tree))
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=1.0)
    fg.plot_decision_tree(ax, tree)
    return fig

"""The whitepaper's figures: one ``plot_x(ax, <frames>, ...)`` per figure, one style, one colour per engine.

Each function draws into an ``Axes`` it is given, so notebooks compose panels freely; it reads the
tidy tables of :func:`cliffbench.bench.store.levels.load_results` and raises ``ValueError`` naming any missing
column, which the notebooks turn into a clean stop. An empty selection draws a centred note instead,
because "this study has no such levels" is a result worth showing, not an error.
Engine colours come from :func:`engine_palette` (`style`), so a study's engines keep their colour in
every figure.
"""

from __future__ import annotations

from cliffbench.report.figures.audit import overhead_pairs, plot_ceiling_fraction, plot_serving_overhead
from cliffbench.report.figures.cliff import plot_latency_components
from cliffbench.report.figures.curves import plot_itl, plot_kv_memory, plot_throughput, plot_ttft, plot_ttft_slo
from cliffbench.report.figures.pareto import pareto_panels, plot_pareto
from cliffbench.report.figures.reuse import plot_working_set
from cliffbench.report.figures.steady import in_flight_curve, plot_in_flight
from cliffbench.report.figures.style import (
    PRINT_HEIGHT_IN,
    PRINT_WIDTH_IN,
    engine_palette,
    page_figsize,
    save_figure,
    set_style,
)
from cliffbench.report.figures.timeline import plot_hol_blocking, plot_timeline
from cliffbench.report.figures.tree import plot_decision_tree, tree_figsize

__all__ = [
    "PRINT_HEIGHT_IN",
    "PRINT_WIDTH_IN",
    "engine_palette",
    "in_flight_curve",
    "overhead_pairs",
    "page_figsize",
    "pareto_panels",
    "plot_ceiling_fraction",
    "plot_decision_tree",
    "plot_hol_blocking",
    "plot_in_flight",
    "plot_itl",
    "plot_kv_memory",
    "plot_latency_components",
    "plot_pareto",
    "plot_serving_overhead",
    "plot_throughput",
    "plot_timeline",
    "plot_ttft",
    "plot_ttft_slo",
    "plot_working_set",
    "save_figure",
    "set_style",
    "tree_figsize",
]

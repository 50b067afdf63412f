"""Prefix reuse against the working set (benchmarks/working_set.py): the share of the possible reuse
each engine served, and its TTFT over the same engine with reuse off, as the pool of documents grows,
each engine's KV cache marked where it falls inside the axis."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from cliffbench.report.figures.style import engine_palette, note, require_columns

__all__ = ["plot_working_set"]

_LABELS = {"served": "served / possible reuse", "ttft_over_control": "TTFT p50 / reuse off"}


def plot_working_set(ax: Axes, rows: pd.DataFrame, what: str, names: dict[str, str] | None = None) -> None:
    """One panel: `what` ("served" or "ttft_over_control", medians over repeats, bars their range)
    against the pool's tokens, one line per engine (`rows`: `report.sections.working_set.working_set_rows`).
    A dotted line at 1 (all the possible reuse; as fast as reuse off); dashed verticals at each
    engine's KV cache in tokens where it falls inside twice the axis and is counted in tokens (not
    one prompt per slot)."""
    ax.set_ylabel(_LABELS[what], fontsize=7)
    if rows.empty:
        note(ax, "not measured (benchmarks/working_set.py)")
        return
    require_columns(rows, ["engine", "working_set_tokens", "cache_tokens", what], "rows", "plot_working_set")
    names = names or {}
    pal = engine_palette(sorted(rows["engine"].unique()))
    lo_x, hi_x = float(rows["working_set_tokens"].min()), float(rows["working_set_tokens"].max())
    for eng, g in rows.groupby("engine", sort=True):
        g = g.sort_values("working_set_tokens")
        x, y = g["working_set_tokens"].to_numpy(float), g[what].to_numpy(float)
        err = np.vstack([y - g[f"{what}_min"].to_numpy(float), g[f"{what}_max"].to_numpy(float) - y])
        colour = pal[str(eng)]
        ax.errorbar(x, y, yerr=np.nan_to_num(err), color=colour, marker="o", markersize=3, linewidth=1.0,
                    capsize=2, label=names.get(str(eng), str(eng)))  # fmt: skip
        cache = float(g["cache_tokens"].iloc[0])
        # a cache that keeps one prompt per slot is counted in prompts: its cells in tokens would mislead
        by_prompts = "cache_prompts" in g and math.isfinite(float(g["cache_prompts"].iloc[0]))
        if math.isfinite(cache) and not by_prompts and lo_x / 2 <= cache <= 2 * hi_x:
            ax.axvline(cache, color=colour, linestyle="--", linewidth=0.7)
    ax.axhline(1.0, color="0.5", linestyle=":", linewidth=0.7)
    ax.set_xscale("log", base=2)
    ticks = sorted({float(x) for x in rows["working_set_tokens"]})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("tokens of documents in the pool", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_ylim(bottom=0)

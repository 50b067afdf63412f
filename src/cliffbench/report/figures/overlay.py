"""Two studies on one figure: an engine's throughput and TTFT curves in a baseline (solid) and in
the study compared with it (dashed), for `cliffbench report --compare-to` (report/compare_report.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from cliffbench.report.figures.style import engine_palette, log2_users_axis, log_y, note, require_columns

__all__ = ["plot_overlay"]

_STYLES = ("-", "--")


def _curve(pooled: pd.DataFrame, engine: str, level_set: str, column: str) -> pd.DataFrame:
    rows = pooled[(pooled["engine"] == engine) & (pooled["level_set"] == level_set) & (pooled["status"] == "ok")]
    return rows[rows["concurrency"].notna()].sort_values("concurrency")


def plot_overlay(
    ax: Axes,
    pooled: tuple[pd.DataFrame, pd.DataFrame],
    engines: tuple[str, str],
    titles: tuple[str, str],
    level_set: str,
    column: str,
    ylabel: str,
) -> None:
    """`column` (a pooled metric: the median over repeats, bars its range min-max where stored) vs
    users of `engines[0]` in `pooled[0]` (solid) and `engines[1]` in `pooled[1]` (dashed)."""
    for frame in pooled:
        require_columns(
            frame, ["engine", "level_set", "status", "concurrency", column], "pooled levels", "plot_overlay"
        )
    colour = engine_palette([engines[0]])[engines[0]]
    users: list[float] = []
    for frame, engine, title, style in zip(pooled, engines, titles, _STYLES, strict=True):
        rows = _curve(frame, engine, level_set, column)
        if rows.empty:
            continue
        x = rows["concurrency"].to_numpy(dtype=np.float64)
        y = rows[column].to_numpy(dtype=np.float64)
        lo = rows.get(f"{column}_min", rows[column]).to_numpy(dtype=np.float64)
        hi = rows.get(f"{column}_max", rows[column]).to_numpy(dtype=np.float64)
        ax.errorbar(x, y, yerr=[y - lo, hi - y], color=colour, linestyle=style, marker="o", capsize=3, label=title)
        users += list(x)
    if not users:
        note(ax, f"{engines[0]}: no successful levels in {level_set!r} in either study")
        return
    log2_users_axis(ax, users)
    log_y(ax)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)

"""The headline figure: total output tok/s against tok/s per user, one curve per engine.

Each point is one load (users) of one engine: up the y axis the machine serves more tokens in
total, along the x axis each user reads faster. The frontier is the upper right. Per-user speed
is 1 / TPOT p50 (decode tokens per second of one request, the median over repeats). The shaded
band is where a user's speed meets the TPOT budget (>= 1 / tpot_slo); filled markers meet the
whole SLO at that load (TTFT too), open ones do not. At most `MAX_SERIES` engines share a panel:
more are split into panels, the engines measured at the most loads first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, NullFormatter

from cliffbench.report.figures.style import (
    closed_loop_levels,
    engine_palette,
    log_y,
    natural_key,
    note,
    require_columns,
)

__all__ = ["MAX_SERIES", "pareto_panels", "plot_pareto"]

MAX_SERIES = 6
_COLS = ("engine", "level_set", "status", "concurrency", "output_tok_s", "tpot_s_p50")


def pareto_panels(levels: pd.DataFrame, level_set: str, curves_only: bool = False) -> list[list[str]]:
    """The engines of each panel: at most `MAX_SERIES` each, those with the most loads first.
    `curves_only`: engines measured at one load only are left out (a point says nothing about a
    curve, and the results table has it), unless no engine has more."""
    lv = closed_loop_levels(levels, level_set)
    if lv.empty:
        return [[]]
    loads = lv.groupby("engine")["concurrency"].nunique()
    if curves_only and (loads > 1).any():
        loads = loads[loads > 1]
    order = sorted(loads.index, key=lambda e: (-int(loads[e]), natural_key(str(e))))
    n = -(-len(order) // MAX_SERIES)
    per = -(-len(order) // n)  # balanced: 8 engines -> 4 + 4, not 6 + 2
    return [[str(e) for e in order[i : i + per]] for i in range(0, len(order), per)]


def plot_pareto(
    ax: Axes,
    levels: pd.DataFrame,
    level_set: str,
    tpot_slo_s: float,
    engines: Sequence[str],
    names: Mapping[str, str] | None = None,
) -> None:
    """One panel: `engines`' pooled levels of `level_set` (needs `slo_verdict` for the markers)."""
    require_columns(levels, _COLS, "levels", "plot_pareto")
    lv = closed_loop_levels(levels, level_set)
    lv = lv[lv["engine"].isin(engines) & (lv["tpot_s_p50"] > 0)]
    if lv.empty:
        note(ax, f"no successful levels in level set {level_set!r}")
        return
    names = names or {}
    pal = engine_palette(levels["engine"])
    per_user = 1.0 / lv["tpot_s_p50"].astype(float)
    budget = 1.0 / tpot_slo_s
    # the budget always in view, with room on its slow side: the unshaded band is what misses it
    x_lo, x_hi = min(float(per_user.min()), budget) / 1.5, max(float(per_user.max()), budget) * 1.5
    ax.axvspan(budget, x_hi, color="0.92", zorder=0)
    ax.axvline(budget, color="0.5", lw=0.8, ls="--", zorder=1)
    ax.text(budget, 0.01, f" TPOT budget ({tpot_slo_s:g} s)", transform=ax.get_xaxis_transform(), fontsize=6.5,
            va="bottom", ha="left", color="0.35")  # fmt: skip
    for engine in engines:
        g = lv[lv["engine"] == engine].sort_values("concurrency")
        if g.empty:
            continue
        x, y = 1.0 / g["tpot_s_p50"].to_numpy(dtype=float), g["output_tok_s"].to_numpy(dtype=float)
        colour = pal[engine]
        ax.plot(x, y, "-", color=colour, lw=1.2, label=names.get(engine, engine), zorder=2)
        meets = (g["slo_verdict"] == "meets").to_numpy() if "slo_verdict" in g else np.zeros(len(g), bool)
        ax.scatter(x[meets], y[meets], color=colour, s=18, zorder=3)
        ax.scatter(x[~meets], y[~meets], facecolor="white", edgecolor=colour, s=18, zorder=3)
        # label the ends of the curve with their user count: where the curve starts and stops
        for i in dict.fromkeys([0, len(g) - 1]):
            ax.annotate(f"{int(g['concurrency'].iloc[i])}", (x[i], y[i]), textcoords="offset points",
                        xytext=(4, 3), fontsize=6.5, color=colour)  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels at 2, 3, ... x 10^k collide
    log_y(ax)
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel("tok/s per user (1 / TPOT p50, log)")
    ax.set_ylabel("total output tok/s (log)")
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)

"""Why the cliff: each engine's mean latency split into queue, prefill and decode against users."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes

from cliffbench.report.figures.style import note, require_columns
from cliffbench.report.figures.timeline import PHASE_COLOURS

__all__ = ["plot_latency_components"]

_PARTS = {"queue_s": ("waiting", PHASE_COLOURS["waiting"]), "prefill_s": ("prefill", PHASE_COLOURS["prefill"])}
_PARTS["decode_s"] = ("decoding", PHASE_COLOURS["decoding"])


def plot_latency_components(
    ax: Axes, comp: pd.DataFrame, engine: str, meets_up_to: float | None = None, first_miss: float | None = None
) -> None:
    """Stacked bars of one engine's mean queue, prefill and decode seconds per level
    (`decide.causes.latency_components`); a dashed line between the last level that meets the SLO
    and the first that misses it."""
    require_columns(comp, ["engine", "concurrency", *_PARTS], "latency components", "plot_latency_components")
    mine = comp[comp["engine"] == engine].sort_values("concurrency")
    if mine.empty:
        note(ax, f"{engine}: no successful request")
        return
    x = list(range(len(mine)))
    bottom = pd.Series(0.0, index=mine.index)
    for col, (label, colour) in _PARTS.items():
        ax.bar(x, mine[col], bottom=bottom, color=colour, label=label, width=0.7)
        bottom += mine[col]
    users = list(mine["concurrency"])
    ax.set_xticks(x, [f"{u:g}" for u in users])
    if meets_up_to in users and first_miss in users:
        ax.axvline((users.index(meets_up_to) + users.index(first_miss)) / 2, color="0.3", ls="--", lw=1)
    ax.set_title(engine, fontsize=9)
    ax.set_xlabel("users")
    ax.set_ylabel("mean latency, s")

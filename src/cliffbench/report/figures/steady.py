"""Requests in flight over one level's time, with its steady window shaded: the figure that shows
which part of a level the verdicts are taken from (bench/metrics/phases.py defines the window)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from cliffbench.report.figures.style import Colour, note, require_columns

__all__ = ["in_flight_curve", "plot_in_flight"]


def in_flight_curve(requests: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(times, requests in flight just after each time) of one level's measured requests: +1 at each
    submit, -1 when its stream closed (`t_done_s`, else its last token)."""
    submit = requests["t_submit_s"].to_numpy(dtype=np.float64)
    done = requests["t_done_s"].to_numpy(dtype=np.float64) if "t_done_s" in requests else np.full(len(submit), np.nan)
    done = np.where(np.isnan(done), requests["t_end_s"].to_numpy(dtype=np.float64), done)
    done = np.where(np.isnan(done), submit, done)  # a request that never answered left when it failed
    times = np.concatenate([submit, done])
    steps = np.concatenate([np.ones(len(submit)), -np.ones(len(done))])
    order = np.lexsort((-steps, times))  # at one instant an arrival counts before a departure
    return times[order], np.cumsum(steps[order])


def plot_in_flight(ax: Axes, requests: pd.DataFrame, level: pd.Series, title: str, color: Colour | None = None) -> None:
    """In-flight requests of the level `level` (a row of the levels table) over level seconds, its
    target users dashed, the steady window shaded."""
    require_columns(requests, ["level_key", "warmup", "t_submit_s", "t_end_s"], "requests", "plot_in_flight")
    r = requests[(requests["level_key"] == level["level_key"]) & ~requests["warmup"].astype(bool)]
    ax.set_title(title, fontsize=8)
    if r.empty:
        note(ax, "no requests stored")
        return
    t, n = in_flight_curve(r)
    t0 = float(t[0])
    ax.step(t - t0, n, where="post", color=color, linewidth=1.0)
    users = float(level["concurrency"])
    ax.axhline(users, color="0.4", linestyle="--", linewidth=0.7)
    start, end = float(level.get("steady_start_s", math.nan)), float(level.get("steady_end_s", math.nan))
    if math.isfinite(start) and math.isfinite(end) and end > start:
        ax.axvspan(start - t0, end - t0, color="tab:green", alpha=0.15, linewidth=0)
    else:
        note(ax, "no steady window (stored before phases, or too short)")
    ax.set_ylim(0, users * 1.15 + 0.5)
    ax.set_xlabel("seconds into the level", fontsize=7)
    ax.tick_params(labelsize=7)

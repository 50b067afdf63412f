"""Queueing made visible: per-request timelines and head-of-line blocking by long documents."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from cliffbench.report.figures.style import (
    COLORBLIND,
    Colour,
    boxplot,
    engine_palette,
    log_y,
    natural_key,
    note,
    require_columns,
)

__all__ = ["plot_hol_blocking", "plot_timeline"]


PHASE_COLOURS: dict[str, Colour] = {
    "waiting": COLORBLIND[1],
    "prefill": COLORBLIND[3],
    "waiting + prefill": COLORBLIND[4],
    "decoding": COLORBLIND[0],
}
_FAILED: Colour = (0.75, 0.75, 0.75)


def plot_timeline(ax: Axes, requests: pd.DataFrame, engine: str, level_key: str, legend: bool = True) -> list[Patch]:
    """One bar per request (by submit time): waiting, prefill, decoding; failed requests grey,
    hatched. Returns the legend's handles (one legend for several panels: `legend=False`)."""
    cols = ["engine", "level_key", "warmup", "status", "t_submit_s", "t_first_s", "t_end_s", "queue_s"]
    require_columns(requests, cols, "requests", "plot_timeline")
    r = requests[(requests["engine"] == engine) & (requests["level_key"] == level_key)]
    r = r[~r["warmup"].astype(bool)].sort_values("t_submit_s", kind="stable").reset_index(drop=True)
    if r.empty:
        note(ax, f"no requests for {engine} at {level_key}")
        return []
    y = np.arange(len(r), dtype=np.float64)
    t0, t1, tn = (r[c].to_numpy(dtype=np.float64) for c in ("t_submit_s", "t_first_s", "t_end_s"))
    q = r["queue_s"].to_numpy(dtype=np.float64)
    # a drain request stopped at the window's end is drawn as far as it ran, not as a failure
    ok = r["status"].isin(["ok", "stopped"]).to_numpy() & np.isfinite(t1) & np.isfinite(tn)
    known = ok & np.isfinite(q)
    # the engine's own queue stamp can trail the first token by clock skew; never draw a negative prefill
    t_q = np.minimum(t0 + np.nan_to_num(q), t1)
    segments: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {
        "waiting": (known, t0, t_q),
        "prefill": (known, t_q, t1),
        "waiting + prefill": (ok & ~known, t0, t1),
        "decoding": (ok, t1, tn),
    }
    handles = []
    for label, (m, start, end) in segments.items():
        if m.any():
            ax.barh(y[m], end[m] - start[m], left=start[m], height=0.8, color=PHASE_COLOURS[label], linewidth=0)
            handles.append(Patch(color=PHASE_COLOURS[label], label=label))
    failed = ~ok
    if failed.any():
        # a failed request may lack its end stamp: draw it to the last moment anything happened
        horizon = float(np.nanmax(np.concatenate([t0, t1, tn])))
        end = np.where(np.isfinite(tn), tn, np.where(np.isfinite(t1), t1, horizon))
        ax.barh(
            y[failed],
            end[failed] - t0[failed],
            left=t0[failed],
            height=0.8,
            color=_FAILED,
            hatch="///",
            edgecolor="0.4",
            linewidth=0,
        )
        handles.append(Patch(facecolor=_FAILED, hatch="///", edgecolor="0.4", label="failed"))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(len(r) - 0.4, -0.6)  # first request on top, no half-bar of empty margin
    ax.set_xlabel("time since level start (s)")
    ax.set_ylabel("request (by submit time)")
    first = r.iloc[0]
    where = level_key
    if "level_set" in r.columns and "concurrency" in r.columns and pd.notna(first["concurrency"]):
        where = f"{first['level_set']} at {int(first['concurrency'])} users"
    ax.set_title(f"{engine}: {where}")
    if legend:
        ax.legend(handles=handles, fontsize=7, loc="best")
    return handles


def _long_in_flight(level: pd.DataFrame, is_long: pd.Series) -> pd.Series:
    """For each short request: did a long one's [submit, end] overlap its [submit, first token]?"""
    long = level[is_long & level["t_end_s"].notna()]
    s0 = level["t_submit_s"].to_numpy(dtype=np.float64)[:, None]
    s1 = level["t_first_s"].to_numpy(dtype=np.float64)[:, None]
    l0 = long["t_submit_s"].to_numpy(dtype=np.float64)[None, :]
    l1 = long["t_end_s"].to_numpy(dtype=np.float64)[None, :]
    return pd.Series(((l0 < s1) & (l1 > s0)).any(axis=1), index=level.index)


def plot_hol_blocking(
    ax: Axes, requests: pd.DataFrame, level_set: str = "mixed", long_threshold_tokens: int | None = None
) -> None:
    """TTFT of short requests with vs without a long request in flight, per engine (log y)."""
    cols = [
        "engine",
        "level_set",
        "level_key",
        "warmup",
        "status",
        "prompt_tokens",
        "t_submit_s",
        "t_first_s",
        "t_end_s",
        "ttft_s",
    ]
    require_columns(requests, cols, "requests", "plot_hol_blocking")
    pal = engine_palette(requests["engine"].dropna())
    r = requests[(requests["level_set"] == level_set) & ~requests["warmup"].astype(bool)]
    if r.empty:
        note(ax, "no mixed-length levels in this study")
        return
    r = r.reset_index(drop=True)  # hand-assembled tables may repeat index labels
    threshold = long_threshold_tokens
    if threshold is None:
        threshold = max(1, int(r["prompt_tokens"].max()) // 2)
    is_long = r["prompt_tokens"] >= threshold
    groups = r.groupby("level_key", dropna=False)
    blocked = pd.concat([_long_in_flight(g, is_long.loc[g.index]) for _, g in groups])
    short = r[~is_long & (r["status"] == "ok") & r["ttft_s"].gt(0)]
    if short.empty:
        note(ax, f"no successful short requests in level set {level_set!r}")
        return
    labels = ["long request in flight", "none"]
    data = short.assign(blocking=np.where(blocked.loc[short.index], labels[0], labels[1]))
    order = sorted(data["engine"].unique(), key=natural_key)
    boxplot(
        data=data,
        x="engine",
        y="ttft_s",
        hue="blocking",
        order=order,
        hue_order=labels,
        palette=dict(zip(labels, ["#de2d26", "#bdbdbd"], strict=True)),
        showfliers=False,
        ax=ax,
    )
    sns.stripplot(
        data=data,
        x="engine",
        y="ttft_s",
        hue="blocking",
        order=order,
        hue_order=labels,
        dodge=True,
        size=2,
        palette=dict.fromkeys(labels, "0.2"),
        legend=False,
        ax=ax,
    )
    for tick in ax.get_xticklabels():
        tick.set_color(pal.get(tick.get_text(), (0.0, 0.0, 0.0)))
    log_y(ax)
    ax.set_ylabel("TTFT of short requests (s)")
    ax.set_xlabel("")
    ax.set_title(f"Head-of-line blocking ({level_set}; long = prompt >= {threshold} tokens)")
    ax.legend(title=None, fontsize=7)

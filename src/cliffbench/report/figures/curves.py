"""The concurrency curves: throughput, TTFT with CI bands, inter-token latency, KV memory.

Each function draws into an ``Axes`` it is given from the tidy tables of
:func:`cliffbench.bench.store.levels.load_results` and raises ``ValueError`` naming any missing column.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from cliffbench.bench.metrics.level import itl_s
from cliffbench.bench.store.levels import ok_requests
from cliffbench.report.figures.style import (
    LEVEL_COLS,
    Colour,
    boxplot,
    closed_loop_levels,
    engine_legend,
    engine_palette,
    log2_users_axis,
    log_y,
    natural_key,
    note,
    require_columns,
)

__all__ = ["plot_itl", "plot_kv_memory", "plot_throughput", "plot_ttft", "plot_ttft_slo"]


# a log axis cannot show 0; ITL gaps of 0 (several tokens in one streamed chunk) sit at this floor
_ITL_FLOOR_MS = 0.01
_MIB = 2.0**20


def plot_throughput(ax: Axes, levels: pd.DataFrame, level_set: str = "chat") -> None:
    """Output tokens/s vs concurrent users, one line per engine (ok levels only)."""
    require_columns(levels, [*LEVEL_COLS, "output_tok_s"], "levels", "plot_throughput")
    pal = engine_palette(levels["engine"])
    lv = closed_loop_levels(levels, level_set)
    if lv.empty:
        note(ax, f"no successful levels in level set {level_set!r}")
        return
    data = lv[["engine", "concurrency", "output_tok_s"]]
    # an engine measured at two loads only (the end points of a comparison) is drawn as points: a
    # line would claim the levels between were measured
    counts = data.groupby("engine")["concurrency"].nunique()
    sparse = set(counts[counts <= 2].index) if counts.max() > 2 else set()
    dense = data[~data["engine"].isin(sparse)]
    # median over repeats; the band is their full range (min-max), not a confidence interval
    sns.lineplot(
        data=dense,
        x="concurrency",
        y="output_tok_s",
        hue="engine",
        palette=pal,
        marker="o",
        hue_order=sorted(dense["engine"].unique(), key=natural_key),
        estimator="median",
        errorbar=("pi", 100),
        ax=ax,
    )
    for engine in sorted(sparse, key=natural_key):
        g = data[data["engine"] == engine].groupby("concurrency")["output_tok_s"]
        med, lo, hi = g.median(), g.min(), g.max()
        ax.errorbar(
            med.index,
            med,
            yerr=[med - lo, hi - med],
            fmt="D",
            color=pal[engine],
            ms=5,
            capsize=3,
            ls="none",
            label=f"{engine} (end points only)",
        )
    log2_users_axis(ax, data["concurrency"])
    ax.legend(title=None, fontsize=7)
    ax.set_ylabel("output tokens/s")
    ax.set_title(f"Throughput ({level_set})")


def _band(ax: Axes, x: npt.NDArray[np.float64], lo: pd.Series, hi: pd.Series, color: Colour) -> None:
    """Shade ``[lo, hi]`` only at the x where the interval exists (finite both ends)."""
    low = lo.to_numpy(dtype=np.float64)
    high = hi.to_numpy(dtype=np.float64)
    # NaN is "n too small" and +inf an unbounded top: neither can be drawn as a band on a log axis
    has = np.isfinite(low) & np.isfinite(high)
    paired = has & (np.r_[False, has[:-1]] | np.r_[has[1:], False])
    if paired.any():
        ax.fill_between(x, low, high, where=has, color=color, alpha=0.15, linewidth=0)
    # a lone level (no neighbour with an interval) would be a zero-width sliver of fill: a bar instead
    alone = has & ~paired
    if alone.any():
        ax.vlines(x[alone], low[alone], high[alone], color=color, alpha=0.3, linewidth=4)


def plot_ttft(ax: Axes, levels: pd.DataFrame, level_set: str = "chat") -> None:
    """TTFT p50 (solid) and p99 (dashed), log y, each with its exact order-statistic 95 % interval.

    A band is drawn only at levels where the interval exists: p50 needs 6 requests, p99 needs 299
    (:func:`cliffbench.bench.metrics.level.min_n_for_ci`), so at tens of requests per level the p99 line
    has no band, and that absence is the finding, not a drawing gap.
    """
    cols = ["ttft_s_p50", "ttft_s_p99", "ttft_s_p50_lo", "ttft_s_p50_hi", "ttft_s_p99_lo", "ttft_s_p99_hi"]
    require_columns(levels, [*LEVEL_COLS, *cols], "levels", "plot_ttft")
    pal = engine_palette(levels["engine"])
    lv = closed_loop_levels(levels, level_set)
    if lv.empty:
        note(ax, f"no successful levels in level set {level_set!r}")
        return
    engines = sorted(lv["engine"].unique(), key=natural_key)
    for engine in engines:
        d = lv[lv["engine"] == engine].groupby("concurrency")[cols].mean().sort_index()
        x = d.index.to_numpy(dtype=np.float64)
        for q, ls in (("p50", "-"), ("p99", "--")):
            ax.plot(x, d[f"ttft_s_{q}"], color=pal[engine], linestyle=ls, marker="o", markersize=3)
            _band(ax, x, d[f"ttft_s_{q}_lo"], d[f"ttft_s_{q}_hi"], pal[engine])
    log2_users_axis(ax, lv["concurrency"])
    log_y(ax)
    ax.set_ylabel("TTFT (s)")
    ax.set_title(f"Time to first token ({level_set}; bands: exact 95 % CI where n allows)")
    engine_legend(ax, pal, engines, {"p50": "-", "p99": "--"})


def plot_ttft_slo(ax: Axes, pooled: pd.DataFrame, level_set: str, label: str, limit_s: float) -> None:
    """TTFT at the SLO percentile over the steady requests of every repeat (failures as +inf),
    with its exact 95 % interval (band where one exists), the budget as a line, log y; the pooled
    table of `bench.metrics.repeats.pool_repeats`. A level whose interval reaches +inf (failures) or does
    not exist is marked with an open circle at its point estimate, clipped to the axis."""
    cols = ["slo_ttft_s", "slo_ttft_s_lo", "slo_ttft_s_hi", "ttft_s_p50"]
    require_columns(pooled, [*LEVEL_COLS, *cols], "levels", "plot_ttft_slo")
    pal = engine_palette(pooled["engine"])
    lv = pooled[(pooled["level_set"] == level_set) & pooled["concurrency"].notna()]
    if lv.empty:
        note(ax, f"no levels in level set {level_set!r}")
        return
    engines = sorted(lv["engine"].unique(), key=natural_key)
    finite = lv["slo_ttft_s"].replace(np.inf, np.nan)
    top = float(np.nanmax([finite.max(), lv["slo_ttft_s_hi"].replace(np.inf, np.nan).max(), limit_s])) * 2
    for engine in engines:
        d = lv[lv["engine"] == engine].sort_values("concurrency")
        x = d["concurrency"].to_numpy(dtype=np.float64)
        y = d["slo_ttft_s"].clip(upper=top).to_numpy(dtype=np.float64)
        ax.plot(x, y, color=pal[engine], marker="o", markersize=3)
        ax.plot(x, d["ttft_s_p50"], color=pal[engine], linestyle=":", linewidth=1)
        _band(ax, x, d["slo_ttft_s_lo"], d["slo_ttft_s_hi"], pal[engine])
        open_ = ~np.isfinite(d["slo_ttft_s_hi"].to_numpy(dtype=np.float64))
        ax.scatter(x[open_], y[open_], facecolors="white", edgecolors=pal[engine], s=28, zorder=3)
    ax.axhline(limit_s, color="0.3", linewidth=0.8, linestyle="--")
    log2_users_axis(ax, lv["concurrency"])
    log_y(ax)
    ax.set_ylabel("TTFT (s)")
    ax.set_title(f"{label} per level, all repeats pooled (dotted: p50 median; dashed: the SLO)")
    engine_legend(ax, pal, engines, {label: "-", "p50": ":"})


def plot_itl(
    ax: Axes, tokens: pd.DataFrame, requests: pd.DataFrame, levels: pd.DataFrame, level_set: str = "chat"
) -> None:
    """Inter-token latency per engine at the lowest and highest concurrency of the level set (ms, log y)."""
    require_columns(levels, [*LEVEL_COLS, "level_key"], "levels", "plot_itl")
    require_columns(requests, ["level_key", "request_id", "status", "warmup"], "requests", "plot_itl")
    require_columns(tokens, ["level_key", "request_id", "k", "t_s"], "tokens", "plot_itl")
    lv = closed_loop_levels(levels, level_set)
    if lv.empty:
        note(ax, f"no successful levels in level set {level_set!r}")
        return
    lo, hi = int(lv["concurrency"].min()), int(lv["concurrency"].max())
    loads = {lo: f"low (c={lo})", hi: f"high (c={hi})"}
    ok = ok_requests(requests)
    parts = []
    sel = lv[lv["concurrency"].isin(list(loads))]
    users_col = sel["concurrency"].astype(int)
    for key, engine, users in zip(sel["level_key"], sel["engine"], users_col, strict=True):
        rids = ok.loc[ok["level_key"] == key, "request_id"]
        tk = tokens[(tokens["level_key"] == key) & tokens["request_id"].isin(rids)]
        gaps_ms = np.maximum(itl_s(tk) * 1e3, _ITL_FLOOR_MS)
        parts.append(pd.DataFrame({"engine": engine, "load": loads[users], "itl_ms": gaps_ms}))
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if data.empty:
        note(ax, f"no inter-token gaps in level set {level_set!r}")
        return
    hue_order = list(dict.fromkeys(loads.values()))
    order = sorted(data["engine"].unique(), key=natural_key)
    boxplot(
        data=data,
        x="engine",
        y="itl_ms",
        hue="load",
        order=order,
        hue_order=hue_order,
        palette=dict(zip(hue_order, ["#9ecae1", "#08519c"], strict=False)),
        log_scale=True,
        fliersize=1,
        ax=ax,
    )
    log_y(ax)
    ax.set_ylabel("inter-token latency (ms)")
    ax.set_xlabel("")
    ax.set_title(f"Inter-token latency ({level_set})")
    ax.legend(title="load", fontsize=7)


def plot_kv_memory(ax: Axes, memory: pd.DataFrame, levels: pd.DataFrame, level_set: str = "chat") -> None:
    """Reserved KV (solid) and peak live KV (dashed) in MiB vs concurrent users, per engine."""
    require_columns(levels, [*LEVEL_COLS, "level_key"], "levels", "plot_kv_memory")
    require_columns(memory, ["level_key", "reserved_bytes", "live_bytes"], "memory", "plot_kv_memory")
    pal = engine_palette(levels["engine"])
    lv = closed_loop_levels(levels, level_set)
    mem = memory[memory["level_key"].isin(lv["level_key"])]
    if mem.empty:
        note(ax, f"no memory samples in level set {level_set!r}")
        return
    peak = mem.groupby("level_key")[["reserved_bytes", "live_bytes"]].max() / _MIB
    if not (peak > 0).to_numpy().any():  # engines that tell no KV memory (fakes, some servers)
        note(ax, f"no engine reported KV memory in level set {level_set!r}")
        return
    data = lv[["level_key", "engine", "concurrency"]].merge(peak, left_on="level_key", right_index=True)
    data = data.groupby(["engine", "concurrency"], as_index=False)[["reserved_bytes", "live_bytes"]].mean()
    engines = sorted(data["engine"].unique(), key=natural_key)
    for engine in engines:
        d = data[data["engine"] == engine].sort_values("concurrency")
        for col, ls in (("reserved_bytes", "-"), ("live_bytes", "--")):
            # log y spans a GiB pool and a few MiB of live KV; a zero sample has no place on it
            pos = d[d[col] > 0]
            ax.plot(pos["concurrency"], pos[col], color=pal[engine], linestyle=ls, marker="o", markersize=3)
    log2_users_axis(ax, data["concurrency"])
    log_y(ax)
    ax.set_ylabel("KV cache (MiB)")
    ax.set_title(f"KV cache: reserved vs peak live ({level_set})")
    engine_legend(ax, pal, engines, {"reserved": "-", "peak live": "--"})

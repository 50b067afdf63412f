"""Measurements against outside references: the roofline ceiling and the real servers."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from cliffbench.report.figures.style import (
    COLORBLIND,
    NEUTRAL,
    engine_palette,
    log2_users_axis,
    log_y,
    natural_key,
    note,
    require_columns,
)

__all__ = ["overhead_pairs", "plot_ceiling_fraction", "plot_serving_overhead"]


def plot_ceiling_fraction(ax: Axes, points: pd.DataFrame) -> None:
    """Published claims and measured levels as a fraction of their own roofline ceiling, vs users:
    measured engines as lines, published claims as crosses; above 1 is physically impossible."""
    require_columns(
        points, ["source", "engine", "label", "concurrency", "fraction_of_ceiling"], "points", "plot_ceiling_fraction"
    )
    if points.empty:
        note(ax, "no measured or published throughput to place against a ceiling")
        return
    measured = points[points["source"] == "measured"]
    pal = engine_palette(measured["engine"])
    for engine, g in measured.groupby("engine"):
        g = g.sort_values("concurrency")
        ax.plot(
            g["concurrency"], g["fraction_of_ceiling"], marker="o", color=pal[str(engine)], label=f"{engine} (measured)"
        )
    published = points[points["source"] == "published"]
    markers = {"vllm": ("X", COLORBLIND[0]), "ollama": ("P", COLORBLIND[1])}
    for label, g in published.groupby("label"):
        marker, colour = markers.get(str(g["engine"].iloc[0]), ("D", (0.3, 0.3, 0.3)))
        ax.scatter(
            g["concurrency"],
            g["fraction_of_ceiling"],
            marker=marker,
            s=70,
            color=colour,
            edgecolor="black",
            linewidth=0.6,
            zorder=5,
            label=f"{label} (published)",
        )
    ax.axhline(1.0, color="firebrick", linestyle="--", linewidth=1)
    ax.text(
        0.99,
        1.0,
        "roofline ceiling (lower of memory and compute roofs)",
        color="firebrick",
        fontsize=7,
        va="bottom",
        ha="right",
        transform=ax.get_yaxis_transform(),
    )
    log_y(ax)
    log2_users_axis(ax, points["concurrency"])
    ax.set_ylabel("output tok/s / roofline ceiling")
    ax.set_title("Published and measured throughput as a fraction of the physical ceiling")
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


_FIDELITY_COLS = ("pair", "slots", "concurrency", "tok_s_ratio", "ttft_p50_ratio")


def overhead_pairs(fidelity: pd.DataFrame) -> list[str]:
    """The pairs of the fidelity rows, one small-multiple panel each (`plot_serving_overhead`'s `pair`)."""
    return sorted((str(p) for p in fidelity["pair"].unique()), key=natural_key) if "pair" in fidelity else []


def plot_serving_overhead(
    ax: Axes, fidelity: pd.DataFrame, metric: str = "tok_s_ratio", band: float = 0.10, pair: str | None = None
) -> None:
    """In-process / real-server ratio vs concurrent users, one line per pair and slot count (only
    `pair`'s slot counts when given: a panel of small multiples), from the rows of
    benchmarks/results/fidelity.json; the shaded band is the +-`band` fidelity target.
    Below 1 on tok/s (above 1 on TTFT) the in-process engine is the slower side."""
    require_columns(fidelity, [*_FIDELITY_COLS, metric], "fidelity", "plot_serving_overhead")
    if pair is not None:
        fidelity = fidelity[fidelity["pair"] == pair]
    if fidelity.empty:
        note(ax, "no fidelity rows (run benchmarks/fidelity.py)")
        return
    pairs = zip(fidelity["pair"], fidelity["slots"], strict=True)
    if pair is None:
        lines = [f"{p} (N={int(n)})" if pd.notna(n) else str(p) for p, n in pairs]
    else:
        lines = [f"N={int(n)} slots" if pd.notna(n) else "in-process vs server" for _, n in pairs]
    df = fidelity.assign(line=lines)
    ax.axhspan(1 - band, 1 + band, color=NEUTRAL, alpha=0.5, lw=0, label=f"target +-{band:.0%}")
    ax.axhline(1.0, color="0.4", lw=0.8)
    pal = dict(zip(sorted(df["line"].unique(), key=natural_key), sns.color_palette("colorblind", 10), strict=False))
    for line, g in df.groupby("line", sort=False):
        g = g.sort_values("concurrency")
        # dashed: unified KV; dotted: the A/A control (in-process vs itself), the noise floor
        name = str(g["pair"].iloc[0])
        ls = ":" if name.startswith("control") else "--" if name.startswith("slots-unified") else "-"
        ax.plot(g["concurrency"], g[metric], marker="o", ls=ls, color=pal[str(line)], label=line)
    log2_users_axis(ax, df["concurrency"])
    what = {"tok_s_ratio": "output tok/s", "ttft_p50_ratio": "TTFT p50", "ttft_p99_ratio": "TTFT p99"}
    ax.set_ylabel(f"{what.get(metric, metric)}: in-process / server")
    ax.set_title(pair if pair is not None else "Serving overhead: in-process engine vs the real server")
    # "best": the corner with the fewest points; a panel holds at most four entries
    ax.legend(fontsize=7, loc="best")

"""The whitepaper's figures: one ``plot_x(ax, <frames>, ...)`` per figure, one style, one colour per engine.

Each function draws into an ``Axes`` it is given, so notebooks compose panels freely; it reads the
tidy tables of :func:`cliffbench.bench.store.load_results` and raises ``ValueError`` naming any missing
column, which the notebooks turn into a clean stop. An empty selection draws a centred note instead,
because "this study has no such levels" is a result worth showing, not an error.
Engine colours come from :func:`engine_palette`, which depends on the engine label only through its
family and its rank inside the family, so a study's engines keep their colour in every figure.
"""

from __future__ import annotations

import re
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import MatplotlibDeprecationWarning
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, MaxNLocator, NullLocator
from matplotlib.typing import LineStyleType

from cliffbench.bench.metrics import itl_s
from cliffbench.config import FIGURES_DIR
from cliffbench.decide.tree import DecisionNode, DecisionTree, Leaf

__all__ = [
    "engine_palette",
    "plot_decision_tree",
    "plot_hol_blocking",
    "plot_itl",
    "plot_kv_memory",
    "plot_serving_overhead",
    "plot_throughput",
    "plot_timeline",
    "plot_ttft",
    "save_figure",
    "set_style",
]

Colour = tuple[float, float, float]

_CB = sns.color_palette("colorblind", 10)
# family -> colorblind index; engines outside these families take the remaining colours in order
_FAMILIES = {"vllm": 0, "llamacpp-serial": 1, "llamacpp-slots": 2}
_SPARE = (3, 4, 5, 6, 8, 9)
_PHASES: dict[str, Colour] = {
    "waiting": _CB[1],
    "prefill": _CB[3],
    "waiting + prefill": _CB[4],
    "decoding": _CB[0],
}
_FAILED: Colour = (0.75, 0.75, 0.75)
_NONE: Colour = (0.85, 0.85, 0.85)
# a log axis cannot show 0; ITL gaps of 0 (several tokens in one streamed chunk) sit at this floor
_ITL_FLOOR_MS = 0.01
_MIB = 2.0**20


def set_style() -> None:
    """Seaborn whitegrid in paper context, slightly larger fonts for a one-column whitepaper."""
    sns.set_theme(style="whitegrid", context="paper", rc={"axes.titlesize": 10, "legend.fontsize": 8})


def _family(engine: str) -> str | None:
    return next((f for f in _FAMILIES if engine == f or engine.startswith(f + "-")), None)


def _natural(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _shade(rgb: Colour, f: float) -> Colour:
    """Darken (f < 0) or lighten (f > 0) towards black / white by |f|."""
    target = 1.0 if f > 0 else 0.0
    r, g, b = (c + (target - c) * abs(f) for c in rgb)
    return (r, g, b)


def engine_palette(engines: Iterable[str]) -> dict[str, Colour]:
    """Engine -> colour: vLLM blue, llama.cpp serial orange, llama.cpp slots green (shades for
    several slot counts, darker = more slots); other labels take the remaining colours sorted."""
    names = sorted({str(e) for e in engines}, key=_natural)
    out: dict[str, Colour] = {}
    for fam, idx in _FAMILIES.items():
        members = [e for e in names if _family(e) == fam]
        if not members:
            continue
        shades = np.linspace(0.35, -0.35, len(members)) if len(members) > 1 else [0.0]
        for e, f in zip(members, shades, strict=True):
            out[e] = _shade(_CB[idx], float(f))
    others = [e for e in names if _family(e) is None]
    for i, e in enumerate(others):
        out[e] = _CB[_SPARE[i % len(_SPARE)]]
    return out


def save_figure(fig: Figure, name: str, out_dir: Path = FIGURES_DIR) -> dict[str, Path]:
    """Write ``<name>.png`` (200 dpi) and ``<name>.svg`` under ``out_dir`` (created if needed)."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"png": out_dir / f"{name}.png", "svg": out_dir / f"{name}.svg"}
    fig.savefig(paths["png"], dpi=200, bbox_inches="tight")
    fig.savefig(paths["svg"], bbox_inches="tight")
    return paths


def _require(df: pd.DataFrame, cols: Sequence[str], what: str, fn: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{fn}: {what} lacks column(s): {', '.join(missing)}")


def _boxplot(**kwargs: Any) -> None:
    # seaborn 0.13 still passes matplotlib's deprecated `vert`; the warning says nothing about our data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
        sns.boxplot(**kwargs)


def _note(ax: Axes, msg: str) -> None:
    ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _ok_levels(levels: pd.DataFrame, level_set: str) -> pd.DataFrame:
    lv = levels[(levels["status"] == "ok") & (levels["level_set"] == level_set)]
    return lv[lv["concurrency"].notna()]


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.05, 20) rather than 5×10⁻²: quicker to read off a figure."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _log_y(ax: Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _log2_users_axis(ax: Axes, users: Iterable[float]) -> None:
    ticks = sorted({float(u) for u in users})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("concurrent users")


def _engine_legend(ax: Axes, pal: dict[str, Colour], engines: Iterable[str], styles: dict[str, LineStyleType]) -> None:
    handles = [Line2D([], [], color=pal[e], marker="o", label=e) for e in engines]
    handles += [Line2D([], [], color="0.3", linestyle=ls, label=lab) for lab, ls in styles.items()]
    ax.legend(handles=handles, fontsize=7)


_LEVEL_COLS = ("engine", "level_set", "status", "concurrency")


def plot_throughput(ax: Axes, levels: pd.DataFrame, level_set: str = "chat") -> None:
    """Output tokens/s vs concurrent users, one line per engine (ok levels only)."""
    _require(levels, [*_LEVEL_COLS, "output_tok_s"], "levels", "plot_throughput")
    pal = engine_palette(levels["engine"])
    lv = _ok_levels(levels, level_set)
    if lv.empty:
        _note(ax, f"no successful levels in level set {level_set!r}")
        return
    data = lv.groupby(["engine", "concurrency"], as_index=False)["output_tok_s"].mean()
    sns.lineplot(
        data=data,
        x="concurrency",
        y="output_tok_s",
        hue="engine",
        palette=pal,
        marker="o",
        hue_order=sorted(data["engine"].unique(), key=_natural),
        errorbar=None,
        ax=ax,
    )
    _log2_users_axis(ax, data["concurrency"])
    ax.legend(title=None, fontsize=7)
    ax.set_ylabel("output tokens/s")
    ax.set_title(f"Throughput ({level_set})")


def plot_ttft(ax: Axes, levels: pd.DataFrame, level_set: str = "chat") -> None:
    """TTFT p50 (solid) and p99 (dashed) with 95 % bootstrap CI bands, log y."""
    cols = ["ttft_s_p50", "ttft_s_p99", "ttft_s_p50_lo", "ttft_s_p50_hi", "ttft_s_p99_lo", "ttft_s_p99_hi"]
    _require(levels, [*_LEVEL_COLS, *cols], "levels", "plot_ttft")
    pal = engine_palette(levels["engine"])
    lv = _ok_levels(levels, level_set)
    if lv.empty:
        _note(ax, f"no successful levels in level set {level_set!r}")
        return
    engines = sorted(lv["engine"].unique(), key=_natural)
    for engine in engines:
        d = lv[lv["engine"] == engine].groupby("concurrency")[cols].mean().sort_index()
        x = d.index.to_numpy(dtype=np.float64)
        for q, ls in (("p50", "-"), ("p99", "--")):
            ax.plot(x, d[f"ttft_s_{q}"], color=pal[engine], linestyle=ls, marker="o", markersize=3)
            ax.fill_between(x, d[f"ttft_s_{q}_lo"], d[f"ttft_s_{q}_hi"], color=pal[engine], alpha=0.15, linewidth=0)
    _log2_users_axis(ax, lv["concurrency"])
    _log_y(ax)
    ax.set_ylabel("TTFT (s)")
    ax.set_title(f"Time to first token ({level_set}; bands: 95 % CI)")
    _engine_legend(ax, pal, engines, {"p50": "-", "p99": "--"})


def plot_itl(
    ax: Axes, tokens: pd.DataFrame, requests: pd.DataFrame, levels: pd.DataFrame, level_set: str = "chat"
) -> None:
    """Inter-token latency per engine at the lowest and highest concurrency of the level set (ms, log y)."""
    _require(levels, [*_LEVEL_COLS, "level_key"], "levels", "plot_itl")
    _require(requests, ["level_key", "request_id", "status", "warmup"], "requests", "plot_itl")
    _require(tokens, ["level_key", "request_id", "k", "t_s"], "tokens", "plot_itl")
    lv = _ok_levels(levels, level_set)
    if lv.empty:
        _note(ax, f"no successful levels in level set {level_set!r}")
        return
    lo, hi = int(lv["concurrency"].min()), int(lv["concurrency"].max())
    loads = {lo: f"low (c={lo})", hi: f"high (c={hi})"}
    ok = requests[(requests["status"] == "ok") & ~requests["warmup"].astype(bool)]
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
        _note(ax, f"no inter-token gaps in level set {level_set!r}")
        return
    hue_order = list(dict.fromkeys(loads.values()))
    order = sorted(data["engine"].unique(), key=_natural)
    _boxplot(
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
    _log_y(ax)
    ax.set_ylabel("inter-token latency (ms)")
    ax.set_xlabel("")
    ax.set_title(f"Inter-token latency ({level_set})")
    ax.legend(title="load", fontsize=7)


def plot_timeline(ax: Axes, requests: pd.DataFrame, engine: str, level_key: str) -> None:
    """One bar per request (by submit time): waiting, prefill, decoding; failed requests grey, hatched."""
    cols = ["engine", "level_key", "warmup", "status", "t_submit_s", "t_first_s", "t_end_s", "queue_s"]
    _require(requests, cols, "requests", "plot_timeline")
    r = requests[(requests["engine"] == engine) & (requests["level_key"] == level_key)]
    r = r[~r["warmup"].astype(bool)].sort_values("t_submit_s", kind="stable").reset_index(drop=True)
    if r.empty:
        _note(ax, f"no requests for {engine} at {level_key}")
        return
    y = np.arange(len(r), dtype=np.float64)
    t0, t1, tn = (r[c].to_numpy(dtype=np.float64) for c in ("t_submit_s", "t_first_s", "t_end_s"))
    q = r["queue_s"].to_numpy(dtype=np.float64)
    ok = (r["status"] == "ok").to_numpy() & np.isfinite(t1) & np.isfinite(tn)
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
            ax.barh(y[m], end[m] - start[m], left=start[m], height=0.8, color=_PHASES[label], linewidth=0)
            handles.append(Patch(color=_PHASES[label], label=label))
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
    ax.legend(handles=handles, fontsize=7, loc="best")


def plot_kv_memory(ax: Axes, memory: pd.DataFrame, levels: pd.DataFrame, level_set: str = "chat") -> None:
    """Reserved KV (solid) and peak live KV (dashed) in MiB vs concurrent users, per engine."""
    _require(levels, [*_LEVEL_COLS, "level_key"], "levels", "plot_kv_memory")
    _require(memory, ["level_key", "reserved_bytes", "live_bytes"], "memory", "plot_kv_memory")
    pal = engine_palette(levels["engine"])
    lv = _ok_levels(levels, level_set)
    mem = memory[memory["level_key"].isin(lv["level_key"])]
    if mem.empty:
        _note(ax, f"no memory samples in level set {level_set!r}")
        return
    peak = mem.groupby("level_key")[["reserved_bytes", "live_bytes"]].max() / _MIB
    data = lv[["level_key", "engine", "concurrency"]].merge(peak, left_on="level_key", right_index=True)
    data = data.groupby(["engine", "concurrency"], as_index=False)[["reserved_bytes", "live_bytes"]].mean()
    engines = sorted(data["engine"].unique(), key=_natural)
    for engine in engines:
        d = data[data["engine"] == engine].sort_values("concurrency")
        for col, ls in (("reserved_bytes", "-"), ("live_bytes", "--")):
            # log y spans a GiB pool and a few MiB of live KV; a zero sample has no place on it
            pos = d[d[col] > 0]
            ax.plot(pos["concurrency"], pos[col], color=pal[engine], linestyle=ls, marker="o", markersize=3)
    _log2_users_axis(ax, data["concurrency"])
    _log_y(ax)
    ax.set_ylabel("KV cache (MiB)")
    ax.set_title(f"KV cache: reserved vs peak live ({level_set})")
    _engine_legend(ax, pal, engines, {"reserved": "-", "peak live": "--"})


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
    _require(requests, cols, "requests", "plot_hol_blocking")
    pal = engine_palette(requests["engine"].dropna())
    r = requests[(requests["level_set"] == level_set) & ~requests["warmup"].astype(bool)]
    if r.empty:
        _note(ax, "no mixed-length levels in this study")
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
        _note(ax, f"no successful short requests in level set {level_set!r}")
        return
    labels = ["long request in flight", "none"]
    data = short.assign(blocking=np.where(blocked.loc[short.index], labels[0], labels[1]))
    order = sorted(data["engine"].unique(), key=_natural)
    _boxplot(
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
    _log_y(ax)
    ax.set_ylabel("TTFT of short requests (s)")
    ax.set_xlabel("")
    ax.set_title(f"Head-of-line blocking ({level_set}; long = prompt >= {threshold} tokens)")
    ax.legend(title=None, fontsize=7)


def _leaves(node: DecisionNode | Leaf) -> int:
    return 1 if isinstance(node, Leaf) else sum(_leaves(c) for _, c in node.branches)


def _depth(node: DecisionNode | Leaf) -> int:
    return 0 if isinstance(node, Leaf) else 1 + max(_depth(c) for _, c in node.branches)


def _tree_engines(node: DecisionNode | Leaf) -> list[str]:
    if isinstance(node, Leaf):
        return [node.engine] if node.engine else []
    return [e for _, c in node.branches for e in _tree_engines(c)]


def _draw_node(
    ax: Axes, node: DecisionNode | Leaf, x: float, y_top: float, pal: dict[str, Colour]
) -> tuple[float, float]:
    """Draw ``node`` with its leaves from ``y_top`` downwards (one unit each); return its anchor."""
    y = y_top - (_leaves(node) - 1) / 2.0
    if isinstance(node, Leaf):
        head = node.engine or "no recommendation"
        verdict = textwrap.shorten(node.verdict, 110, placeholder="...")
        text = head + "\n" + textwrap.fill(verdict, 46)
        colour = _shade(pal[node.engine], 0.55) if node.engine else _NONE
        ax.text(
            x,
            y,
            text,
            ha="left",
            va="center",
            fontsize=6,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "0.3"},
        )
        return x, y
    ax.text(
        x,
        y,
        textwrap.fill(node.question, 18),
        ha="center",
        va="center",
        fontsize=7,
        bbox={"boxstyle": "round,pad=0.5", "facecolor": "white", "edgecolor": "0.2"},
    )
    top = y_top
    for label, child in node.branches:
        cx, cy = _draw_node(ax, child, x + 1.0, top, pal)
        ax.annotate(
            "", xy=(cx, cy), xytext=(x + 0.25, y), arrowprops={"arrowstyle": "-|>", "color": "0.4", "linewidth": 0.8}
        )
        ax.text(
            x + 0.55,
            y + (cy - y) * 0.6,
            label,
            ha="center",
            va="center",
            fontsize=6,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
        )
        top -= _leaves(child)
    return x - 0.25, y


def plot_decision_tree(ax: Axes, tree: DecisionTree) -> None:
    """The decision tree with matplotlib only: question boxes, engine-coloured leaves, edge labels."""
    if not isinstance(tree, DecisionTree):
        raise ValueError(f"plot_decision_tree: expected a DecisionTree, got {type(tree).__name__}")
    engines = [e.removesuffix(" (long documents)") for e in tree.thresholds]
    pal = engine_palette([*engines, *_tree_engines(tree.root)])
    n = _leaves(tree.root)
    _draw_node(ax, tree.root, 0.0, float(n - 1), pal)
    ax.set_xlim(-0.5, _depth(tree.root) + 1.6)
    ax.set_ylim(-0.8, n - 0.2)
    ax.axis("off")
    slo = tree.slo
    ax.set_title(f"Which engine? (SLO: TTFT p99 <= {slo['ttft_s']:g} s, TPOT p50 <= {slo['tpot_s']:g} s)")


def plot_ceiling_fraction(ax: Axes, points: pd.DataFrame) -> None:
    """Published claims and measured levels as a fraction of their own roofline ceiling, vs users:
    measured engines as lines, published claims as crosses; above 1 is physically impossible."""
    _require(
        points, ["source", "engine", "label", "concurrency", "fraction_of_ceiling"], "points", "plot_ceiling_fraction"
    )
    if points.empty:
        _note(ax, "no measured or published throughput to place against a ceiling")
        return
    measured = points[points["source"] == "measured"]
    pal = engine_palette(measured["engine"])
    for engine, g in measured.groupby("engine"):
        g = g.sort_values("concurrency")
        ax.plot(
            g["concurrency"], g["fraction_of_ceiling"], marker="o", color=pal[str(engine)], label=f"{engine} (measured)"
        )
    published = points[points["source"] == "published"]
    markers = {"vllm": ("X", _CB[0]), "ollama": ("P", _CB[1])}
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
        "roofline ceiling",
        color="firebrick",
        fontsize=7,
        va="bottom",
        ha="right",
        transform=ax.get_yaxis_transform(),
    )
    _log_y(ax)
    _log2_users_axis(ax, points["concurrency"])
    ax.set_ylabel("output tok/s / roofline ceiling")
    ax.set_title("Published and measured throughput as a fraction of the physical ceiling")
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


_FIDELITY_COLS = ("pair", "slots", "concurrency", "tok_s_ratio", "ttft_p50_ratio")


def plot_serving_overhead(ax: Axes, fidelity: pd.DataFrame, metric: str = "tok_s_ratio", band: float = 0.10) -> None:
    """In-process / real-server ratio vs concurrent users, one line per pair and slot count, from
    the rows of benchmarks/results/fidelity.json; the shaded band is the +-`band` fidelity target.
    Below 1 on tok/s (above 1 on TTFT) the in-process engine is the slower side."""
    _require(fidelity, [*_FIDELITY_COLS, metric], "fidelity", "plot_serving_overhead")
    if fidelity.empty:
        _note(ax, "no fidelity rows (run benchmarks/fidelity.py)")
        return
    pairs = zip(fidelity["pair"], fidelity["slots"], strict=True)
    df = fidelity.assign(line=[f"{p} (N={int(n)})" if pd.notna(n) else str(p) for p, n in pairs])
    ax.axhspan(1 - band, 1 + band, color=_NONE, alpha=0.5, lw=0, label=f"target +-{band:.0%}")
    ax.axhline(1.0, color="0.4", lw=0.8)
    pal = dict(zip(sorted(df["line"].unique(), key=_natural), sns.color_palette("colorblind", 10), strict=False))
    for line, g in df.groupby("line", sort=False):
        g = g.sort_values("concurrency")
        # dashed: unified KV; dotted: the A/A control (in-process vs itself), the noise floor
        ls = ":" if str(line).startswith("control") else "--" if str(line).startswith("slots-unified") else "-"
        ax.plot(g["concurrency"], g[metric], marker="o", ls=ls, color=pal[str(line)], label=line)
    _log2_users_axis(ax, df["concurrency"])
    what = {"tok_s_ratio": "output tok/s", "ttft_p50_ratio": "TTFT p50", "ttft_p99_ratio": "TTFT p99"}
    ax.set_ylabel(f"{what.get(metric, metric)}: in-process / server")
    ax.set_title("Serving overhead: in-process engine vs the real server")
    ax.legend(fontsize=7)

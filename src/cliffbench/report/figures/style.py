"""The figures' one style: engine colours, log axes, column checks and the empty-selection note.

Engine colours come from :func:`engine_palette`, which depends on the engine label only through its
family and its rank inside the family, so a study's engines keep their colour in every figure.
"""

from __future__ import annotations

import re
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
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, NullFormatter
from matplotlib.typing import LineStyleType

from cliffbench.bench.store.levels import ok_levels
from cliffbench.config import FIGURES_DIR

__all__ = [
    "COLORBLIND",
    "LEVEL_COLS",
    "NEUTRAL",
    "PRINT_HEIGHT_IN",
    "PRINT_WIDTH_IN",
    "Colour",
    "boxplot",
    "closed_loop_levels",
    "engine_legend",
    "engine_palette",
    "log2_users_axis",
    "log_y",
    "natural_key",
    "note",
    "page_figsize",
    "require_columns",
    "save_figure",
    "set_style",
    "shade",
    "sparse_ticks",
]


Colour = tuple[float, float, float]

COLORBLIND = sns.color_palette("colorblind", 10)
# family -> colorblind index; engines outside these families take the remaining colours in order
_FAMILIES = {"vllm": 0, "llamacpp-serial": 1, "llamacpp-slots": 2}
_SPARE = (3, 4, 5, 6, 8, 9)
NEUTRAL: Colour = (0.85, 0.85, 0.85)
# the PDF's text box (report.pdf: A4, margins 20 17 22 17 mm): a figure is printed at this width,
# so a figure drawn this wide prints its fonts at their size, and one this tall fits a page
PRINT_WIDTH_IN = (210.0 - 2 * 17.0) / 25.4
PRINT_HEIGHT_IN = (297.0 - 20.0 - 22.0) / 25.4
# room on the page for a figure's caption, its margins and a heading above it
_CAPTION_IN = 1.5


def set_style() -> None:
    """Seaborn whitegrid in paper context, slightly larger fonts for a one-column whitepaper."""
    sns.set_theme(style="whitegrid", context="paper", rc={"axes.titlesize": 10, "legend.fontsize": 8})


def _family(engine: str) -> str | None:
    return next((f for f in _FAMILIES if engine == f or engine.startswith(f + "-")), None)


def natural_key(s: str) -> list[Any]:
    """Sort key reading digit runs as numbers: llamacpp-slots-4 before llamacpp-slots-32."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def shade(rgb: Colour, f: float) -> Colour:
    """Darken (f < 0) or lighten (f > 0) towards black / white by |f|."""
    target = 1.0 if f > 0 else 0.0
    r, g, b = (c + (target - c) * abs(f) for c in rgb)
    return (r, g, b)


def engine_palette(engines: Iterable[str]) -> dict[str, Colour]:
    """Engine -> colour: vLLM blue, llama.cpp serial orange, llama.cpp slots green (shades for
    several slot counts, darker = more slots); other labels take the remaining colours sorted."""
    names = sorted({str(e) for e in engines}, key=natural_key)
    out: dict[str, Colour] = {}
    for fam, idx in _FAMILIES.items():
        members = [e for e in names if _family(e) == fam]
        if not members:
            continue
        shades = np.linspace(0.35, -0.35, len(members)) if len(members) > 1 else [0.0]
        for e, f in zip(members, shades, strict=True):
            out[e] = shade(COLORBLIND[idx], float(f))
    others = [e for e in names if _family(e) is None]
    for i, e in enumerate(others):
        out[e] = COLORBLIND[_SPARE[i % len(_SPARE)]]
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


def require_columns(df: pd.DataFrame, cols: Sequence[str], what: str, fn: str) -> None:
    """ValueError naming the columns of `cols` that `df` (`what` of function `fn`) lacks."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{fn}: {what} lacks column(s): {', '.join(missing)}")


def boxplot(**kwargs: Any) -> None:
    """`sns.boxplot`, without the deprecation warning seaborn itself triggers."""
    # seaborn 0.13 still passes matplotlib's deprecated `vert`; the warning says nothing about our data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
        sns.boxplot(**kwargs)


def note(ax: Axes, msg: str) -> None:
    """A centred grey note instead of a plot: an empty selection is a result, not an error."""
    ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def closed_loop_levels(levels: pd.DataFrame, level_set: str) -> pd.DataFrame:
    """The successful levels of `level_set` that have a user count to place on a curve."""
    lv = ok_levels(levels, level_set)
    return lv[lv["concurrency"].notna()]


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.05, 20) rather than 5×10⁻²: quicker to read off a figure."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def log_y(ax: Axes) -> None:
    """Log y with plain-number labels."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _is_power_of_two(u: float) -> bool:
    return u > 0 and float(u).is_integer() and (int(u) & (int(u) - 1)) == 0


def sparse_ticks(users: Iterable[float], min_gap_log2: float) -> tuple[list[float], list[float]]:
    """The user counts to label on a log2 axis, at least `min_gap_log2` apart (powers of two, the
    grid's levels, first), and the ones left unlabelled: a search's probes at 18, 19 and 20 users
    would otherwise print as "181920"."""
    ticks = sorted({float(u) for u in users if u > 0})
    kept: list[float] = []
    for u in sorted(ticks, key=lambda v: (not _is_power_of_two(v), v)):
        if all(abs(np.log2(u) - np.log2(k)) >= min_gap_log2 for k in kept):
            kept.append(u)
    return sorted(kept), [u for u in ticks if u not in kept]


# a label of three digits at 8 pt is about 0.2 in wide: keep 0.35 in between labelled ticks
_TICK_GAP_IN = 0.35


def log2_users_axis(ax: Axes, users: Iterable[float]) -> None:
    """Log2 x ticked at the measured user counts: labelled where they leave room at the axes' width
    (`sparse_ticks`), the others as unlabelled minor ticks."""
    ticks = sorted({float(u) for u in users})
    ax.set_xscale("log", base=2)
    span = np.log2(max(ticks)) - np.log2(min(ticks)) + 0.5 if ticks else 1.0  # + the axis margins
    fig = ax.get_figure(root=True)
    width_in = ax.get_position().width * (fig.get_figwidth() if isinstance(fig, Figure) else 6.5)
    labelled, unlabelled = sparse_ticks(ticks, max(0.25, _TICK_GAP_IN * span / max(width_in, 0.5)))
    ax.xaxis.set_major_locator(FixedLocator(labelled))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(FixedLocator(unlabelled))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("concurrent users")


def page_figsize(rows: int, row_in: float, extra_in: float = 0.0) -> tuple[float, float]:
    """A figure of `rows` rows of panels `row_in` tall (plus `extra_in` for titles or a legend)
    at the page's text width, its rows shrunk where needed so that it fits one page with its caption."""
    most = PRINT_HEIGHT_IN - _CAPTION_IN
    return PRINT_WIDTH_IN, min(rows * row_in + extra_in, most)


def engine_legend(ax: Axes, pal: dict[str, Colour], engines: Iterable[str], styles: dict[str, LineStyleType]) -> None:
    """One legend entry per engine colour, then one per line style (p50 / p99, reserved / live)."""
    handles = [Line2D([], [], color=pal[e], marker="o", label=e) for e in engines]
    handles += [Line2D([], [], color="0.3", linestyle=ls, label=lab) for lab, ls in styles.items()]
    ax.legend(handles=handles, fontsize=7)


LEVEL_COLS = ("engine", "level_set", "status", "concurrency")

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
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, NullLocator
from matplotlib.typing import LineStyleType

from cliffbench.bench.store.levels import ok_levels
from cliffbench.config import FIGURES_DIR

__all__ = [
    "COLORBLIND",
    "LEVEL_COLS",
    "NEUTRAL",
    "Colour",
    "boxplot",
    "closed_loop_levels",
    "engine_legend",
    "engine_palette",
    "log2_users_axis",
    "log_y",
    "natural_key",
    "note",
    "require_columns",
    "save_figure",
    "set_style",
    "shade",
]


Colour = tuple[float, float, float]

COLORBLIND = sns.color_palette("colorblind", 10)
# family -> colorblind index; engines outside these families take the remaining colours in order
_FAMILIES = {"vllm": 0, "llamacpp-serial": 1, "llamacpp-slots": 2}
_SPARE = (3, 4, 5, 6, 8, 9)
NEUTRAL: Colour = (0.85, 0.85, 0.85)


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


def log2_users_axis(ax: Axes, users: Iterable[float]) -> None:
    """Log2 x ticked at the measured user counts."""
    ticks = sorted({float(u) for u in users})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("concurrent users")


def engine_legend(ax: Axes, pal: dict[str, Colour], engines: Iterable[str], styles: dict[str, LineStyleType]) -> None:
    """One legend entry per engine colour, then one per line style (p50 / p99, reserved / live)."""
    handles = [Line2D([], [], color=pal[e], marker="o", label=e) for e in engines]
    handles += [Line2D([], [], color="0.3", linestyle=ls, label=lab) for lab, ls in styles.items()]
    ax.legend(handles=handles, fontsize=7)


LEVEL_COLS = ("engine", "level_set", "status", "concurrency")

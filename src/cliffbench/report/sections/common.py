"""What every section shares: the whitepaper's number format, the levels it reads, figure markup."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import pandas as pd

from cliffbench.bench.store.levels import ok_levels
from cliffbench.config import PROJECT_ROOT, fmt_number
from cliffbench.report.data import ReportData
from cliffbench.trace import Source

__all__ = ["figure_html", "fmt", "headline_level", "measured_levels"]


def fmt(x: Any, digits: int = 3, src: Source | None = None) -> str:
    """A number as the report prints it (3 significant digits; 'n/a' for NaN): `fmt_number`, with
    magnitudes below 0.001 in scientific notation, logged with its source (`cliffbench.trace`)."""
    return fmt_number(x, digits, sci_below=1e-3, src=src)


def measured_levels(data: ReportData, level_set: str = "chat") -> pd.DataFrame:
    """The study's levels of `level_set` that ran in at least one repeat, one row per engine and
    users (medians over repeats, `_min/_max` their range), by engine then users."""
    return ok_levels(data.pooled, level_set).sort_values(["engine", "concurrency"])


def headline_level(lv: pd.DataFrame) -> int:
    """The highest concurrency every engine completed: the fairest single point to compare."""
    per_engine = lv.groupby("engine")["concurrency"].apply(set)
    common = set.intersection(*per_engine) if len(per_engine) else set()
    return int(max(common)) if common else int(lv["concurrency"].max())


def figure_html(path: Path, caption: str, width_pct: int = 100) -> str:
    """A captioned figure; the image path is relative to notebooks/, where the report renders from."""
    src = os.path.relpath(path, PROJECT_ROOT / "notebooks")
    return (
        f'<figure style="width:{width_pct}%"><img src="{html.escape(src)}"/>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )

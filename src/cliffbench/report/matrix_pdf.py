"""The matrix on paper: figures, the tidy CSV and the standalone PDF (its Markdown sections live in
report/matrix_text.py and are re-exported here, the notebooks' one import)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliffbench.config import REPORT_DIR
from cliffbench.decide.constraints import ConstraintPath
from cliffbench.decide.matrix.daily import cost_curve
from cliffbench.decide.matrix.score import MatrixResult
from cliffbench.files import atomic_file
from cliffbench.report.matrix_cto import (
    capacity_markdown,
    certifications_markdown,
    cost_markdown,
    exit_markdown,
    group_markdown,
    recommendation_markdown,
    verified_markdown,
)
from cliffbench.report.matrix_text import (
    freshness_markdown,
    load_text,
    managed_source,
    matrix_grid_markdown,
    matrix_markdown,
    method_markdown,
    profile_markdown,
    ranking_markdown,
    sensitivity_markdown,
    utilisation_markdown,
)
from cliffbench.report.pdf import html_to_pdf

__all__ = [
    "MATRIX_CAPTIONS",
    "freshness_markdown",
    "load_text",
    "make_matrix_figures",
    "managed_source",
    "matrix_grid_markdown",
    "matrix_markdown",
    "method_markdown",
    "plot_cost_curve",
    "plot_heatmap",
    "profile_markdown",
    "ranking_markdown",
    "sensitivity_markdown",
    "utilisation_markdown",
    "write_matrix_csv",
    "write_matrix_pdf",
]


# ---- figures ------------------------------------------------------------------------------------


def plot_heatmap(ax: Any, r: MatrixResult) -> None:
    """Normalised scores (0..1), options x criteria; unknown cells grey with '?'."""
    import seaborn as sns

    norm = r.scores.normalised.astype(float)
    labels = [r.data.options[o].name for o in norm.index]
    cols = [r.data.criteria[c].name for c in norm.columns]
    na = {(o, c) for (o, c), cell in r.data.cells.items() if not cell.applicable}
    missing = norm.isna()
    annot = pd.DataFrame(
        [["-" if (o, c) in na else "?" if missing.loc[o, c] else "" for c in norm.columns] for o in norm.index],
        index=norm.index,
        columns=norm.columns,
    )
    ax.set_facecolor((0.85, 0.85, 0.85))
    sns.heatmap(
        norm,
        ax=ax,
        vmin=0,
        vmax=1,
        cmap="viridis",
        annot=annot.values,
        fmt="",
        cbar_kws={"label": "normalised score"},
        linewidths=0.5,
        annot_kws={"fontsize": 6},
    )
    ax.set_yticks(np.arange(len(labels)) + 0.5, labels, rotation=0, fontsize=6)
    ax.set_xticks(np.arange(len(cols)) + 0.5, cols, rotation=40, ha="right", fontsize=6)
    ax.set_xlabel("")
    ax.set_ylabel("")


def plot_cost_curve(ax: Any, curve: pd.DataFrame, hardware: str = "") -> None:
    """USD per 1M output tokens vs users: self-hosted curves (solid), managed list prices (dashed)."""
    import seaborn as sns

    # options on the same roofline draw the same curve: one line, all their names, so none hides another
    lines: dict[tuple[str, tuple[float, ...]], list[pd.DataFrame]] = {}
    for _, g in curve.groupby("option", sort=False):
        key = (str(g["kind"].iloc[0]), tuple(np.round(g["usd_per_1m_output"].to_numpy(), 9)))
        lines.setdefault(key, []).append(g)
    pal = sns.color_palette("colorblind", max(len(lines), 1))
    for ((kind, _), gs), col in zip(lines.items(), pal, strict=False):
        g = gs[0]
        managed = kind == "managed"
        names = [str(x["name"].iloc[0]) for x in gs]
        if len(names) > 1 and all(n.startswith("Self-hosted ") for n in names):
            names = ["Self-hosted " + " = ".join(n.removeprefix("Self-hosted ") for n in names)]
        label = " = ".join(names)
        ax.plot(
            g["users"],
            g["usd_per_1m_output"],
            ls="--" if managed else "-",
            marker="" if managed else "o",
            ms=3,
            color=col,
            label=label,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent users (closed loop)")
    ax.set_ylabel("USD per 1M output tokens")
    ax.set_title(
        f"Cost per 1M output tokens vs load (self-hosted on {hardware})"
        if hardware
        else "Cost per 1M output tokens vs load"
    )
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)


MATRIX_CAPTIONS = {
    "matrix_heatmap": "Architecture Decision Matrix: normalised scores per criterion (1 = the best ranked option on "
    "it); grey ? = unknown, grey - = does not apply: both left out of the normalisation.",
    "matrix_cost": "Compute cost per 1M output tokens vs peak concurrent users, under the load profile's hours "
    "(GPU-hours or list prices; staff and exit costs, fixed, are on the cost page): self-hosted curves fall with "
    "load until the GPU saturates; managed APIs are flat list prices.",
}


def make_matrix_figures(r: MatrixResult, out_dir: Path) -> dict[str, Path]:
    """Heatmap and cost curve as PNG + SVG under `out_dir`; returns the SVG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cliffbench.report import figures as fg

    fg.set_style()
    fig, ax = plt.subplots(figsize=(7.4, 5.2))
    plot_heatmap(ax, r)
    fig.tight_layout()
    paths = {"matrix_heatmap": fg.save_figure(fig, "matrix_heatmap", out_dir)["svg"]}
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    plot_cost_curve(ax, cost_curve(r.params, r.data, measured=r.measured), r.params.hardware)
    fig.tight_layout()
    paths["matrix_cost"] = fg.save_figure(fig, "matrix_cost", out_dir)["svg"]
    plt.close(fig)
    return paths


# ---- exports ------------------------------------------------------------------------------------


def _tidy(r: MatrixResult) -> pd.DataFrame:
    rows = []
    for o, opt in r.data.options.items():
        for c, cr in r.data.criteria.items():
            v, n = float(r.values.at[o, c]), float(r.scores.normalised.at[o, c])  # type: ignore[arg-type]
            rank = r.scores.rank.loc[o]
            rows.append(
                {
                    "option": o,
                    "option_name": opt.name,
                    "status": opt.status,
                    "criterion": c,
                    "unit": cr.unit,
                    "value": v,
                    "text": r.text.loc[o, c],
                    "known": bool(math.isfinite(v)),
                    "normalised": n,
                    "weight": r.scores.weights[c],
                    "weighted_total": r.scores.total.loc[o],
                    "rank": int(rank) if math.isfinite(rank) else None,
                    "throughput_source": r.throughput_source.get(o, ""),
                    "rationale": r.notes.loc[o, c],
                    "source": r.sources.loc[o, c],
                }
            )
    return pd.DataFrame(rows)


def write_matrix_csv(r: MatrixResult, path: Path | None = None) -> Path:
    """Tidy CSV (one row per option x criterion), written to a temp file and renamed into place."""
    path = path or REPORT_DIR / "decision_matrix.csv"
    with atomic_file(path) as tmp:
        _tidy(r).to_csv(tmp, index=False)
    return path


def _md_html(md: str) -> str:
    import mistune  # nbconvert's Markdown renderer, so no new dependency

    return str(mistune.create_markdown(plugins=["table"])(md))


_PDF_CSS = """
@page { size: A4 landscape; margin: 11mm 12mm 14mm 12mm; }
body { font-size: 7.6pt; line-height: 1.25; }
h1 { font-size: 15pt; margin: 0 0 2mm 0; } h2 { font-size: 11.5pt; margin-top: 2mm; }
table { font-size: 6.1pt; margin: 1.5mm 0; } th, td { padding: 0.25mm 1mm; }
tr { break-inside: avoid; page-break-inside: avoid; }
.page { page-break-before: always; } .page:first-child { page-break-before: auto; }
.lead p:first-child { font-size: 9pt; }
.grid table { font-size: 5.6pt; } .grid th, .grid td { padding: 0.2mm 0.6mm; }
.grid td { white-space: nowrap; } .grid p { font-size: 5pt; line-height: 1.15; }
.figs { display: flex; gap: 4mm; } .figs figure { margin: 1mm 0; width: 50%; }
.figs img { max-height: 70mm; object-fit: contain; }
p { margin: 1mm 0; }
"""


def write_matrix_pdf(r: MatrixResult, path: Path | None = None, constraints: ConstraintPath | None = None) -> Path:
    """The decision document a CTO reads, about 8 pages (HTML -> WeasyPrint, atomic): the recommendation
    for the reader's constraints (`constraints`: their path through the constraint tree), one page per
    group of criteria, the cost at the reader's load, the ranking and its sensitivity, the sources."""
    import tempfile

    from cliffbench.decide.matrix.verdict import verdict

    path = path or REPORT_DIR / "decision_matrix.pdf"
    v = verdict(r, constraints.steps[-1].left if constraints is not None else None)
    with tempfile.TemporaryDirectory() as d:
        figs = make_matrix_figures(r, Path(d))

        def fig(name: str) -> str:
            cap = html.escape(MATRIX_CAPTIONS[name])
            return f'<figure><img src="{figs[name].as_uri()}"/><figcaption>{cap}</figcaption></figure>'

        def page(title: str, *parts: str, cls: str = "") -> str:
            return f'<div class="page {cls}"><h2>{html.escape(title)}</h2>{"".join(parts)}</div>'

        body = (
            '<div class="page lead"><h1>Deciding how to serve an LLM: the decision matrix</h1>'
            f"{_md_html(recommendation_markdown(r, v, constraints))}"
            f"<p>{html.escape(profile_markdown(r))} Every cell carries its source and date; self-hosted numbers "
            "say whether they were measured, projected from a measurement, or estimated on the roofline.</p>"
            f"<h2>Ranking</h2>{_md_html(ranking_markdown(r))}</div>"
            + page("Deployment", _md_html(group_markdown(r, "deployment")))
            + page(
                "Compliance: certifications, residency, retention",
                _md_html(group_markdown(r, "compliance")),
                _md_html(certifications_markdown(r)),
            )
            + page(
                "Cost at your load",
                _md_html(cost_markdown(r)),
                "<h2>Self-hosted capacity and cost, and where each number comes from</h2>",
                _md_html(capacity_markdown(r)),
            )
            + page("Lock-in and exit", _md_html(group_markdown(r, "lock-in")), _md_html(exit_markdown(r)))
            + page(
                "Sensitivity: weights and utilisation",
                _md_html(sensitivity_markdown(r)),
                f'<div class="figs">{fig("matrix_heatmap")}{fig("matrix_cost")}</div>',
                _md_html(utilisation_markdown(r)),
            )
            + page(
                "Sources, verification and freshness",
                _md_html(verified_markdown(r.data)),
                _md_html(freshness_markdown(r)),
                f"<p>{html.escape(method_markdown(r))}</p>",
            )
            + page("The matrix, cell by cell", _md_html(matrix_grid_markdown(r)), cls="grid")
        )
        html_to_pdf(body, path, Path(d), extra_css=_PDF_CSS)
    return path

"""The matrix on paper: Markdown tables, figures, the tidy CSV and the standalone PDF."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliffbench.config import REPORT_DIR, fmt_number
from cliffbench.decide.matrix.data import Option
from cliffbench.decide.matrix.model import cost_curve, gpu_price, load_profile
from cliffbench.decide.matrix.score import SENSITIVITY_FACTORS, MatrixResult, usd_text
from cliffbench.files import atomic_file
from cliffbench.report.pdf import html_to_pdf

__all__ = [
    "MATRIX_CAPTIONS",
    "freshness_markdown",
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


# ---- tables -------------------------------------------------------------------------------------


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def matrix_markdown(r: MatrixResult) -> str:
    """The matrix as a Markdown table; [n] notes give each cell's rationale, as-of date and [S] source."""
    crits = list(r.data.criteria)
    head = "| option | " + " | ".join(r.data.criteria[c].name for c in crits) + " |"
    lines = [head, "|" + "---|" * (len(crits) + 1)]
    notes: list[str] = []
    urls: dict[str, int] = {}
    for o, opt in r.data.options.items():
        cells = []
        for c in crits:
            url, as_of, verified = [*str(r.sources.loc[o, c]).split(" | "), "", ""][:3]
            k = urls.setdefault(url, len(urls) + 1)
            old = _stale(r, o, c)
            when = f"as of {as_of}" + (", STALE" if old else "")
            notes.append(f"{r.notes.loc[o, c]!s} ({when}; verified: {verified}) [S{k}]")
            cells.append(f"{_md_escape(str(r.text.loc[o, c]))}{STALE_MARK if old else ''} [{len(notes)}]")
        status = "" if opt.status == "active" else f" ({opt.status})"
        lines.append(f"| {_md_escape(opt.name)}{status} | " + " | ".join(cells) + " |")
    intro = (
        profile_markdown(r) + f" Scores 1 (worst) to 5 (best); prices in USD; {STALE_MARK} = stale "
        f"(as of more than {r.params.stale_after_months} months before {r.freshness.report_date.isoformat()}). "
        "Verified: primary = the vendor's own page was read; secondary = a third-party copy was read; "
        "no = from knowledge, not re-verified."
    )
    note_md = "\n".join(f"{i}. {_md_escape(n)}" for i, n in enumerate(notes, 1))
    src_md = "; ".join(f"[S{k}] {u}" for u, k in urls.items())
    return f"{intro}\n\n" + "\n".join(lines) + f"\n\n**Notes**\n\n{note_md}\n\n**Sources** {src_md}"


STALE_MARK = "†"


def _stale(r: MatrixResult, o: str, c: str) -> bool:
    return r.freshness.stale(o, c, r.data.options[o].kind)


def freshness_markdown(r: MatrixResult) -> str:
    """How old the matrix's numbers are on the report date: stale prices, shutdowns, stale cells."""
    f = r.freshness
    name = {o: opt.name for o, opt in r.data.options.items()}
    out = [
        f"On {f.report_date.isoformat()}, with a value stale once its as-of date is more than "
        f"{f.stale_after_months} months old: {f.summary()}."
    ]
    if f.failing:
        items = "; ".join(f"{name.get(p.option, p.option)}: {p.what}, as of {p.as_of}" for p in f.failing)
        out.append(
            f"**The ranking rests on stale data** ({items}): re-source it before trusting the order "
            "(`cliffbench matrix --check` fails)."
        )
    else:
        out.append("No ranked option rests on a stale price, and no model past its shutdown is still ranked.")
    if f.prices:
        out.append(
            "Stale prices: "
            + "; ".join(
                f"{name.get(p.option, p.option)} {p.what} as of {p.as_of}" + (" (ranked)" if p.ranked else "")
                for p in f.prices
            )
            + "."
        )
    if f.shutdowns:
        out.append(
            "Past an announced shutdown (never ranked): "
            + "; ".join(f"{name[s.option]} on {s.as_of} ({s.source})" for s in f.shutdowns)
            + "."
        )
    if f.cells:
        by_check: dict[str, int] = {}
        for c in f.cells:
            v = r.data.cells[(c.option, c.what)].verified
            by_check[v] = by_check.get(v, 0) + 1
        out.append(
            f"Stale cells ({STALE_MARK} in the matrix), by how they were verified: "
            + ", ".join(f"{v} {n}" for v, n in sorted(by_check.items()))
            + ". They stay in the ranking, flagged: a judgement of 2025 may still hold, a price rarely does "
            "(`cliffbench matrix --check` lists each)."
        )
    return "\n\n".join(out)


def profile_markdown(r: MatrixResult) -> str:
    """The profile the computed cells are for, in one sentence."""
    p = r.params
    weights_txt = (
        "each engine's usual weights" if p.precision == "native" else f"{p.precision} weights for every engine"
    )
    return (
        f"Profile: {p.users} concurrent users, {p.input_tokens} input and {p.output_tokens} output tokens per "
        f"request, TTFT SLO {p.ttft_slo_s:g} s; self-hosted on {p.hardware} ({p.model}, {weights_txt}, "
        f"{p.pricing_model} GPU-hours), engines at {p.efficiency:g} x the roofline unless measured."
    )


def _grid_cell(r: MatrixResult, o: str, c: str, urls: dict[str, int]) -> str:
    url = str(r.sources.loc[o, c]).split(" | ")[0]
    key = f" S{urls.setdefault(url, len(urls) + 1)}" if url else ""
    mark = STALE_MARK if _stale(r, o, c) else ""
    if r.data.criteria[c].kind == "computed":
        return (str(r.text.loc[o, c]) + mark + key).replace(" (misses SLO)", " (miss)")
    v = r.values.loc[o, c]
    shown = f"{float(v):g}" if isinstance(v, float) and math.isfinite(v) else "?"
    if (cell := r.data.cells.get((o, c))) is not None and not cell.applicable:
        shown = "-"
    return shown + mark + key


def matrix_grid_markdown(r: MatrixResult) -> str:
    """The matrix in one page: each cell's score (1-5) or computed value and its source key; the
    values and rationales of the cells are in the whitepaper's matrix section and the tidy CSV."""
    crits = list(r.data.criteria)
    lines = [
        "| option | " + " | ".join(r.data.criteria[c].name for c in crits) + " |",
        "|" + "---|" * (len(crits) + 1),
    ]
    urls: dict[str, int] = {}
    for o, opt in r.data.options.items():
        status = "" if opt.status == "active" else f" ({opt.status})"
        cells = [_md_escape(_grid_cell(r, o, c, urls)) for c in crits]
        lines.append(f"| {_md_escape(opt.name)}{status} | " + " | ".join(cells) + " |")
    src_md = "; ".join(f"[S{k}] {u.removeprefix('https://')}" for u, k in urls.items())
    return (
        f"Scores 1 (worst) to 5 (best), ? = unknown (left out of the ranking), - = does not apply, {STALE_MARK} = "
        "stale; Sn = the "
        "cell's source. Each cell's "
        "value, one-line rationale, as-of date and how it was verified: the whitepaper's matrix section and "
        "decision_matrix.csv.\n\n" + "\n".join(lines) + f"\n\n**Sources** {src_md}"
    )


def managed_source(option: Option) -> str:
    """Where a managed option's cost comes from, for the 'throughput source' columns."""
    if option.status == "discontinued":
        return "discontinued: no public price"
    if not option.priced:
        return "managed: no sourced price"
    return f"managed: list prices ({option.model.split(' (')[0]})"


def method_markdown(r: MatrixResult) -> str:
    """How the computed cells were computed, with this run's parameters."""
    p = r.params
    price = gpu_price(p, r.data)
    usd_h = price.usd_per_hour
    price_txt = (
        "your price"
        if price.user
        else f"{price.provider}, {price.pricing_model}, {price.source}, {price.as_of}; the cheapest stored "
        f"{price.pricing_model} row, never a row of another pricing model"
    )
    measured = [o for o, s in r.throughput_source.items() if s.startswith("measured")]
    return (
        f"Options, criteria and every scored cell come from `data/matrix/` (each with a one-line rationale, a "
        f"source and an as-of date); two criteria are computed for this profile: **{p.users} concurrent users**, "
        f"{p.input_tokens} input and {p.output_tokens} output tokens per request, TTFT SLO {p.ttft_slo_s:g} s. "
        f"Managed APIs cost (input x input price + output x output price) / output per 1M output tokens, at the "
        f"list price of one representative model each. Self-hosted options run {p.model} on one {p.hardware} at "
        f"${usd_h:g}/h ({price_txt}); their throughput is "
        + (f"measured for {', '.join(measured)} (study {p.study}), else " if measured else "")
        + f"the roofline (bandwidth and compute ceilings) x {p.efficiency:g}: a roofline is an upper "
        f"bound, and the factor is a parameter. Ollama keeps its one slot (its default since v0.10.0: extra users "
        f"queue); llama.cpp server gets as many slots as users; vLLM, SGLang, TGI, TensorRT-LLM and LMDeploy batch "
        f"continuously (all but vLLM modelled like vLLM: cliffbench cannot run them yet); gpt-oss is not modelled "
        f"(no roofline shape for a mixture of experts). Behind a LiteLLM router, vLLM replicas are added until the "
        f"TTFT SLO holds. A self-hosted option's cost is the GPU-hours paid a day x the hourly price / the output "
        f"tokens served a day, under the load profile: {load_text(r)}. Scores are min-max normalised per "
        f"criterion (cost and TTFT on a log scale); an unknown cell is left out of its criterion and of its "
        f"option's weighted mean, and listed beside the ranking. "
        "Limits: the 1-5 scores are sourced judgements, not measurements; on a roofline every continuous-"
        "batching engine and llama.cpp with as many slots as users cost the same, since their differences are "
        "kernel and scheduler efficiency, which only a measured study (`matrix_study`) on that GPU shows."
    )


def ranking_markdown(r: MatrixResult) -> str:
    """Ranking under the chosen weights, with each self-hosted option's throughput source."""
    w = ", ".join(f"{r.data.criteria[c].name} {v:g}" for c, v in r.scores.weights.items())
    lines = [
        f"Weights: {w}.",
        "",
        "| rank | option | weighted score (0-1) | cost / 1M output | throughput source | unknown (left out) |",
        "|---|---|---|---|---|---|",
    ]
    total = r.scores.total.sort_values(ascending=False)
    order = [o for o in total.index if o in r.eligible] + [o for o in total.index if o not in r.eligible]
    for o in order:
        rank = r.scores.rank.loc[o]
        rk = "-" if not math.isfinite(rank) else str(int(rank))
        why = f" (not ranked: {r.excluded[o].split(':')[0]})" if o in r.excluded else ""
        lines.append(
            f"| {rk} | {_md_escape(r.data.options[o].name)}{_md_escape(why)} | "
            f"{fmt_number(float(r.scores.total.loc[o]), 2)} | "
            f"{r.text.loc[o, 'cost']}{STALE_MARK if _stale(r, o, 'cost') else ''} | "
            f"{_md_escape(r.throughput_source.get(o, managed_source(r.data.options[o])))} | "
            f"{', '.join(r.scores.flagged.get(o, [])) or '-'} |"
        )
    return "\n".join(lines)


def sensitivity_markdown(r: MatrixResult) -> str:
    """The sensitivity check in words and a table: which single-weight change flips the top choice."""
    name = {o: opt.name for o, opt in r.data.options.items()}
    cname = {c: cr.name for c, cr in r.data.criteria.items()}
    flips = r.grid[r.grid["flips"]]
    out = [f"Top choice under these weights: **{name[r.top]}**."]
    cands = []
    for _, t in r.thresholds.iterrows():
        for side in ("up", "down"):
            f = t[side]
            if isinstance(f, float) and math.isfinite(f):
                dist = abs(math.log(f)) if f > 0 else math.inf
                cands.append((dist, f, str(t["criterion"]), str(t[f"{side}_top"])))
    if cands:
        _, f, c, top = min(cands, key=lambda x: x[0])
        out.append(
            f"The smallest single-weight change (by ratio) that flips it: {cname[c]} weight x{fmt_number(f, 3)} "
            f"(from {r.scores.weights[c]:g} to {fmt_number(r.scores.weights[c] * f, 3)}) "
            f"makes {name[top]} the top choice."
        )
    else:
        out.append("No single weight between x0 and x100 changes the top choice.")
    out += [
        "",
        "| criterion | " + " | ".join(f"x{f:g}" for f in SENSITIVITY_FACTORS) + " |",
        "|---|" + "---|" * len(SENSITIVITY_FACTORS),
    ]
    steady = []
    for c in r.data.criteria:
        row = r.grid[r.grid["criterion"] == c]
        if not row["flips"].any():
            steady.append(cname[c])
            continue
        cells = [
            ("**" + name[t] + "**") if fl else "same" if t else "no choice (all weights 0)"
            for t, fl in zip(row["top"], row["flips"], strict=True)
        ]
        out.append(f"| {cname[c]} | " + " | ".join(cells) + " |")
    if len(steady) == len(r.data.criteria):
        out = out[:2]
    out.append("")
    out.append(
        f"{len(flips)} of {len(r.grid)} single-weight changes flip the top choice (bold: the new top)"
        + (f"; none of {', '.join(steady)} does." if steady else ".")
    )
    return "\n".join(out)


def load_text(r: MatrixResult) -> str:
    """The load profile in words."""
    p = r.params
    peak_h, off = load_profile(p)
    if p.utilisation is not None:
        day = f"{p.users} users for {fmt_number(peak_h)} h a day (utilisation {p.utilisation:g}), idle the rest"
    elif peak_h >= 24:
        day = f"{p.users} users around the clock (the GPU never idles: the cheapest case for self-hosting)"
    else:
        day = f"{p.users} users for {fmt_number(peak_h)} h a day, " + (
            f"{off} users the rest" if off else "idle the rest"
        )
    fleet = (
        f"replicas follow the load (at least {p.min_replicas} while idle) where an option scales out"
        if p.autoscale
        else "the fleet sized for the peak is paid all day"
    )
    return f"{day}; {fleet}"


def utilisation_markdown(r: MatrixResult) -> str:
    """Where the ranking flips as utilisation falls: self-hosted GPU-hours are paid whether used or not."""
    name = {o: opt.name for o, opt in r.data.options.items()}
    unknown_cost = {o for o in r.eligible if not math.isfinite(float(r.values.loc[o, "cost"]))}  # type: ignore[arg-type]

    def nm(o: str) -> str:
        return name.get(o, "none") + (" (cost unknown, left out)" if o in unknown_cost else "")

    out = [
        f"Load profile: {load_text(r)}. A self-hosted option costs GPU-hours paid a day x the hourly price / "
        "output tokens served a day; a managed API costs the same per token at any load. Below, the profile's "
        "peak for a fraction u of the day and idle the rest:",
        "",
    ]
    u = r.utilisation
    out.append("| utilisation u | " + " | ".join(fmt_number(float(x), 2) for x in u["utilisation"]) + " |")
    out.append("|---|" + "---|" * len(u))
    short = {o: name[o].removeprefix("Self-hosted ") for o in name}
    for label, col in (("top choice", "top"), ("cheapest", "cheapest")):
        out.append(f"| {label} | " + " | ".join(_md_escape(short.get(str(x), "none")) for x in u[col]) + " |")
    for label, col in (
        ("cheapest self-hosted / 1M", "self_hosted_usd_per_1m"),
        ("cheapest managed / 1M", "managed_usd_per_1m"),
    ):
        out.append(f"| {label} | " + " | ".join(usd_text(float(x)) for x in u[col]) + " |")
    out.append("")
    lo, hi = (
        fmt_number(float(r.utilisation["utilisation"].min()), 2),
        fmt_number(float(r.utilisation["utilisation"].max()), 2),
    )
    for what, label in (("top", "The top choice"), ("cheapest", "The cheapest option")):
        flips = [f for f in r.utilisation_flips if f.what == what]
        if not flips:
            first = str(r.utilisation[what].iloc[0])
            out.append(f"{label} is {nm(first)} at every utilisation from {hi} down to {lo}.")
            continue
        out.append(
            f"{label} changes "
            + "; then ".join(
                f"below u = {fmt_number(f.below, 2)} (about {fmt_number(24 * f.below, 2)} h a day) from "
                f"{nm(f.before)} to {nm(f.after)}"
                for f in flips
            )
            + "."
        )
    return "\n".join(out)


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
    "matrix_cost": "Cost per 1M output tokens vs peak concurrent users, under the load profile's hours: "
    "self-hosted curves fall with load until the GPU saturates; managed APIs are flat list prices.",
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
    plot_cost_curve(ax, cost_curve(r.params, r.data), r.params.hardware)
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
body { font-size: 7.5pt; line-height: 1.25; }
h1 { font-size: 15pt; margin: 0 0 2mm 0; } h2 { font-size: 11pt; margin-top: 3mm; }
table { font-size: 6.5pt; margin: 1.5mm 0; } th, td { padding: 0.3mm 1.2mm; }
ol { font-size: 5.8pt; line-height: 1.12; columns: 3; column-gap: 5mm; margin: 0; padding-left: 6mm; }
.rank td:nth-child(5) { white-space: nowrap; } .rank td:nth-child(6) { min-width: 45mm; }
.grid { page-break-before: always; }
.grid table { font-size: 5.6pt; } .grid th, .grid td { padding: 0.2mm 0.6mm; }
.grid td { white-space: nowrap; } .grid p { font-size: 5pt; line-height: 1.15; }
.figs { display: flex; gap: 4mm; page-break-before: always; } .figs figure { margin: 1mm 0; }
.figs figure:first-child { width: 56%; } .figs figure:last-child { width: 44%; }
.figs img { max-height: 74mm; object-fit: contain; }
p { margin: 1mm 0; }
"""


def write_matrix_pdf(r: MatrixResult, path: Path | None = None) -> Path:
    """The standalone 2-3 page matrix PDF (HTML -> WeasyPrint, atomic)."""
    import tempfile

    path = path or REPORT_DIR / "decision_matrix.pdf"
    with tempfile.TemporaryDirectory() as d:
        figs = make_matrix_figures(r, Path(d))

        def fig(name: str) -> str:
            cap = html.escape(MATRIX_CAPTIONS[name])
            return f'<figure><img src="{figs[name].as_uri()}"/><figcaption>{cap}</figcaption></figure>'

        body = (
            "<h1>Architecture Decision Matrix</h1>"
            "<p>Generated by cliffbench from data/matrix/ and its cost model: every number is computed, "
            "every cell carries its source. Self-hosted numbers are estimates, not measurements, unless the "
            f"throughput source says 'measured'. {html.escape(profile_markdown(r))}</p>"
            f'<h2>Ranking</h2><div class="rank">{_md_html(ranking_markdown(r))}</div>'
            f"<h2>Freshness</h2>{_md_html(freshness_markdown(r))}"
            f'<div class="figs">{fig("matrix_heatmap")}{fig("matrix_cost")}</div>'
            f"<h2>Sensitivity</h2>{_md_html(sensitivity_markdown(r))}"
            f"<h2>Utilisation</h2>{_md_html(utilisation_markdown(r))}"
            f'<div class="grid"><h2>The matrix</h2>{_md_html(matrix_grid_markdown(r))}</div>'
        )
        html_to_pdf(body, path, Path(d), extra_css=_PDF_CSS)
    return path

"""The matrix in words and tables (Markdown): the matrix with its notes, the one-page grid, the
ranking, freshness, the method, and the sensitivity to weights and to utilisation."""

from __future__ import annotations

import math

from cliffbench.config import fmt_number
from cliffbench.decide.matrix.daily import load_profile
from cliffbench.decide.matrix.data import MatrixData, Option
from cliffbench.decide.matrix.model import gpu_price
from cliffbench.decide.matrix.ranking import TIE_BAND, TopChoice
from cliffbench.decide.matrix.score import SENSITIVITY_FACTORS, MatrixResult, usd_text

__all__ = [
    "STALE_MARK",
    "choice_sentence",
    "freshness_markdown",
    "load_text",
    "managed_source",
    "matrix_grid_markdown",
    "matrix_markdown",
    "md_cell",
    "method_markdown",
    "profile_markdown",
    "ranking_markdown",
    "sensitivity_markdown",
    "utilisation_markdown",
]


def md_cell(s: str) -> str:
    """`s` as one Markdown table cell: pipes escaped, newlines folded."""
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
            cells.append(f"{md_cell(str(r.text.loc[o, c]))}{STALE_MARK if old else ''} [{len(notes)}]")
        status = "" if opt.status == "active" else f" ({opt.status})"
        lines.append(f"| {md_cell(opt.name)}{status} | " + " | ".join(cells) + " |")
    intro = (
        profile_markdown(r) + f" Scores 1 (worst) to 5 (best); prices in USD; {STALE_MARK} = stale "
        f"(as of more than {r.params.stale_after_months} months before {r.freshness.report_date.isoformat()}). "
        "Verified: primary = the vendor's own page was read; secondary = a third-party copy was read; "
        "no = from knowledge, not re-verified."
    )
    note_md = "\n".join(f"{i}. {md_cell(n)}" for i, n in enumerate(notes, 1))
    src_md = "; ".join(f"[S{k}] {u}" for u, k in urls.items())
    return f"{intro}\n\n" + "\n".join(lines) + f"\n\n**Notes**\n\n{note_md}\n\n**Sources** {src_md}"


STALE_MARK = "†"


def _stale(r: MatrixResult, o: str, c: str) -> bool:
    return r.freshness.stale(o, c, r.data.options[o].kind)


def freshness_markdown(r: MatrixResult) -> str:
    """How old the matrix's numbers are on the report date: stale prices, shutdowns, stale cells."""
    f = r.freshness
    name = {o: opt.name for o, opt in r.data.options.items()}
    out = [f"A value is stale once its as-of date is more than {f.stale_after_months} months old: {f.summary()}."]
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
        cells = [md_cell(_grid_cell(r, o, c, urls)) for c in crits]
        lines.append(f"| {md_cell(opt.name)}{status} | " + " | ".join(cells) + " |")
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
            f"| {rk} | {md_cell(r.data.options[o].name)}{md_cell(why)} | "
            f"{fmt_number(float(r.scores.total.loc[o]), 2)} | "
            f"{r.text.loc[o, 'cost']}{STALE_MARK if _stale(r, o, 'cost') else ''} | "
            f"{md_cell(r.throughput_source.get(o, managed_source(r.data.options[o])))} | "
            f"{', '.join(r.scores.flagged.get(o, [])) or '-'} |"
        )
    return "\n".join(lines)


def choice_sentence(data: MatrixData, c: TopChoice, weights: dict[str, float]) -> str:
    """The top choice in words, honestly: a tie when a weight moved within TIE_BAND changes it."""
    name = {o: opt.name for o, opt in data.options.items()}
    lo, hi = TIE_BAND
    if not c.top:
        return "No option to choose."
    if c.tie:
        why = (
            f"it turns on **{data.criteria[c.pivot].name}**: its weight x{fmt_number(c.pivot_factor, 3)} (from "
            f"{weights[c.pivot]:g} to {fmt_number(weights[c.pivot] * c.pivot_factor, 3)}) makes {name[c.flips_to]} "
            f"first; what breaks the tie is how much {data.criteria[c.pivot].name.lower()} matters to you"
            if c.pivot
            else "their weighted scores are equal"
        )
        return f"**A tie between {name[c.top]} and {name[c.other]}**; {why}."
    flip = (
        f"what would flip it: {data.criteria[c.pivot].name} weight x{fmt_number(c.pivot_factor, 3)} (from "
        f"{weights[c.pivot]:g} to {fmt_number(weights[c.pivot] * c.pivot_factor, 3)}) makes {name[c.flips_to]} first"
        if c.pivot
        else "no single weight between x0 and x100 changes it"
    )
    return f"**Top choice: {name[c.top]}**; it holds with every weight moved by x{lo:g} to x{hi:g}; {flip}."


def sensitivity_markdown(r: MatrixResult) -> str:
    """The sensitivity check in words and a table: which single-weight change flips the top choice."""
    name = {o: opt.name for o, opt in r.data.options.items()}
    cname = {c: cr.name for c, cr in r.data.criteria.items()}
    flips = r.grid[r.grid["flips"]]
    out = [choice_sentence(r.data, r.choice, r.scores.weights)]
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
        out.append(f"| {label} | " + " | ".join(md_cell(short.get(str(x), "none")) for x in u[col]) + " |")
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

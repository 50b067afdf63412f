"""The decision matrix as a CTO reads it (Markdown per page): the recommendation for the reader's
constraints, one page per group of criteria (deployment, compliance, cost, lock-in), the cost at the
reader's load with each self-hosted family's capacity and where it comes from, and the sources with
how many cells were verified. `matrix_pdf.write_matrix_pdf` lays them out, one page each."""

from __future__ import annotations

import math

from cliffbench.config import fmt_number
from cliffbench.decide.constraints import ConstraintPath
from cliffbench.decide.matrix.data import CERTIFICATIONS, MatrixData
from cliffbench.decide.matrix.model import gpu_price
from cliffbench.decide.matrix.score import MatrixResult, usd_text
from cliffbench.decide.matrix.values import cost_setting, exit_weeks
from cliffbench.decide.matrix.verdict import COST_WARNING_RATIO, Verdict
from cliffbench.report.matrix_text import choice_sentence, load_text, md_cell

__all__ = [
    "capacity_markdown",
    "certifications_markdown",
    "cost_markdown",
    "exit_markdown",
    "group_markdown",
    "recommendation_markdown",
    "summary_markdown",
    "verified_markdown",
]


def _name(r: MatrixResult, o: str) -> str:
    return r.data.options[o].name


def recommendation_markdown(r: MatrixResult, v: Verdict, path: ConstraintPath | None = None) -> str:
    """Page 1: the cost warning first where it applies, then the recommendation, its runner-up and
    what would flip it, for the reader's constraints (or every ranked option without them)."""
    c, p = v.choice, r.params
    out: list[str] = []
    cost = r.values["cost"]
    if v.cost_warning:
        out.append(
            f"**Cost first: the top choice, {_name(r, c.top)}, costs {usd_text(float(cost.loc[c.top]))} per 1M "
            f"output tokens at your load, {fmt_number(v.cost_ratio, 3)} times the cheapest option that meets "
            f"every hard constraint ({_name(r, v.cheapest)}, {usd_text(float(cost.loc[v.cheapest]))}; more "
            f"than x{COST_WARNING_RATIO:g}). The weights below rank it first anyway; lower them or raise cost's "
            "weight if cost decides.**"
        )
    who = (
        f"prompts {path.constraints.data}; GPU {path.constraints.gpu}; ops team "
        f"{'yes' if path.constraints.ops_team else 'no'}; traffic {path.constraints.traffic_class}"
        if path is not None
        else "no hard constraints given (every ranked option)"
    )
    out.append(
        f"For **{p.users} peak users** ({load_text(r)}), TTFT SLO {p.ttft_slo_s:g} s, {who}: "
        f"{len(v.allowed)} option(s) left of {len(r.eligible)} ranked."
    )
    if not c.top:
        out.append("**No option is left to recommend**: relax a constraint.")
        return "\n\n".join(out)
    out.append(choice_sentence(r.data, c, r.scores.weights))
    runner = c.runner_up or "none"
    out.append(
        f"Runner-up: {_name(r, runner) if runner in r.data.options else runner}; weighted scores "
        f"{fmt_number(float(r.scores.total.loc[c.top]), 3)} against "
        f"{fmt_number(float(r.scores.total.loc[runner]), 3) if runner in r.data.options else '-'} (margin "
        f"{fmt_number(c.margin, 2)}). A single top choice needs to survive every weight moved by x0.8 to x1.25."
    )
    flips = [f for f in r.utilisation_flips if f.what == "top"]
    if flips:
        f = flips[0]
        out.append(
            f"Utilisation flips it too: below {fmt_number(f.below, 2)} of the day at peak (about "
            f"{fmt_number(24 * f.below, 2)} h) the top choice of all ranked options turns from "
            f"{_name(r, f.before)} to {_name(r, f.after)}."
        )
    if path is not None:
        gone = {o: why for s in path.steps for o, why in s.ruled_out.items()}
        if gone:
            out.append(
                "Ruled out by your constraints: "
                + "; ".join(f"{_name(r, o)} ({md_cell(why)})" for o, why in list(gone.items())[:8])
                + ("; ..." if len(gone) > 8 else "")
                + "."
            )
    return "\n\n".join(out)


def group_markdown(r: MatrixResult, group: str) -> str:
    """One group of criteria: each ranked option's value and score per criterion, with its weight."""
    crits = [c for c, cr in r.data.criteria.items() if cr.group == group]
    order = [o for o in r.scores.total.loc[r.eligible].sort_values(ascending=False).index]
    head = "| option | " + " | ".join(f"{r.data.criteria[c].name} (w {r.scores.weights[c]:g})" for c in crits) + " |"
    lines = [head, "|" + "---|" * (len(crits) + 1)]
    # options whose cells read the same share one row (self-hosted engines on compliance, say)
    rows: dict[tuple[str, ...], list[str]] = {}
    for o in order:
        rows.setdefault(tuple(md_cell(str(r.text.loc[o, c]) or "-") for c in crits), []).append(md_cell(_name(r, o)))
    for cells, names in rows.items():
        lines.append(f"| {'; '.join(names)} | " + " | ".join(cells) + " |")
    desc = " ".join(f"**{r.data.criteria[c].name}**: {r.data.criteria[c].description}." for c in crits)
    return desc + "\n\n" + "\n".join(lines)


def certifications_markdown(r: MatrixResult) -> str:
    """Certifications named per managed option, residency by region, and retention."""
    cols = list(CERTIFICATIONS)
    lines = [
        "| option | " + " | ".join(CERTIFICATIONS.values()) + " | residency by region | source (as of, verified) |",
        "|" + "---|" * (len(cols) + 3),
    ]
    for o, cert in r.data.certifications.items():
        if o not in r.eligible:
            continue
        marks = [str(getattr(cert, k)) for k in cols]
        lines.append(
            f"| {md_cell(_name(r, o))} | " + " | ".join(marks) + f" | {md_cell(cert.regions)} | "
            f"{cert.source_url.removeprefix('https://')} ({cert.as_of}, {cert.verified}) |"
        )
    own = [
        _name(r, o) for o in r.eligible if r.data.options[o].kind == "self-hosted" and o not in r.data.certifications
    ]
    return (
        "yes / no = what the source says; unknown = not read in any source (never guessed); n/a = the hosts are "
        "yours. Self-hosted options carry no vendor certificate: the audit is of your own controls ("
        + ", ".join(own)
        + ").\n\n"
        + "\n".join(lines)
    )


def capacity_markdown(r: MatrixResult) -> str:
    """Each self-hosted option's capacity (users one server meets the SLO for) and cost at the reader's
    profile, with where each number comes from: the closing note of the cost page."""
    p = r.params
    lines = [
        f"| self-hosted option | users within the SLO (one server) | cost / 1M at {p.users} users | meets the SLO at "
        f"{p.users} | where the numbers come from |",
        "|---|---|---|---|---|",
    ]
    for o, (n, how) in r.capacity.items():
        meets = "yes" if r.meets_slo.get(o) else "no"
        lines.append(
            f"| {md_cell(_name(r, o))} | {n} | {r.text.loc[o, 'cost']!s} | {meets} | {md_cell(how)}; "
            f"at {p.users} users: {md_cell(r.throughput_source.get(o, ''))} |"
        )
    studied = sorted({f.study for f in r.measured.values()})
    lead = (
        f"Measured in study {', '.join(studied)} where its engine family ran; projected to {p.hardware} "
        "(memory and compute ceilings of the target over those of the measured machine, at the target's "
        "precision: the measured fraction of the roofline carried over) where the study ran another machine "
        "or model; the roofline at the default efficiency, labelled so, for families the study did not run."
        if studied
        else f"No study given: every self-hosted number is a roofline estimate at x{p.efficiency:g} efficiency."
    )
    return lead + "\n\n" + "\n".join(lines)


def cost_markdown(r: MatrixResult) -> str:
    """The cost at the reader's load, in parts: compute, staff, exit."""
    p, data = r.params, r.data
    price = gpu_price(p, data)
    year = cost_setting(p, data, "engineer_usd_per_year")
    src = data.costs["engineer_usd_per_year"]
    lines = [
        "| option | compute / 1M | staff / 1M (FTE, a month) | exit / 1M (weeks, one-off) | total / 1M |",
        "|---|---|---|---|---|",
    ]
    order = sorted((o for o in r.costs if o in r.eligible), key=lambda o: r.costs[o].total)
    for o in order:
        t = r.costs[o]
        fte = p.staff_fte.get(o, data.options[o].ops_fte)
        lines.append(
            f"| {md_cell(_name(r, o))} | {usd_text(t.compute)} | {usd_text(t.staff)} ({fte:g}, "
            f"${t.staff_usd_per_month:,.0f}) | {usd_text(t.exit)} ({fmt_number(t.exit_weeks)}, "
            f"${t.exit_usd:,.0f}) | **{usd_text(t.total)}** |"
        )
    demand = r.demand_tokens_per_day
    return (
        f"Your load: {load_text(r)}; {p.input_tokens} input and {p.output_tokens} output tokens a request. "
        f"Demand: {fmt_number(demand / 1e6, 3)}M output tokens a day (the most a self-hosted option serves within "
        f"the SLO), the same for every option, so fixed costs compare like with like. Compute: GPU-hours paid a "
        f"day at ${price.usd_per_hour:g}/h ({price.provider}, {price.as_of}, {price.verified}) / tokens served, or "
        f"list prices. Staff: ops fraction of an engineer at ${year:,.0f} a year ({src.note}; "
        f"{src.source_url or 'a parameter'}). "
        f"Exit: engineer-weeks to leave, spread over {fmt_number(cost_setting(p, data, 'horizon_months'))} months "
        "(lock-in page). Unknown costs stay unknown and are left out of the cost ranking.\n\n" + "\n".join(lines)
    )


def exit_markdown(r: MatrixResult) -> str:
    """What leaving each ranked option takes: the three lock-in facts and the exit cost they add up to."""
    lines = [
        "| options | API | weights | logs and fine-tunes | engineer-weeks | exit cost |",
        "|---|---|---|---|---|---|",
    ]
    year = cost_setting(r.params, r.data, "engineer_usd_per_year")
    groups: dict[tuple[str, str, str], list[str]] = {}
    for o in r.eligible:
        opt = r.data.options[o]
        groups.setdefault((opt.exit_api, opt.exit_weights, opt.exit_data), []).append(o)
    for (api, weights, held), opts in sorted(
        groups.items(), key=lambda g: exit_weeks(r.data.options[g[1][0]], r.params, r.data)
    ):
        weeks = exit_weeks(r.data.options[opts[0]], r.params, r.data)
        names = "; ".join(md_cell(_name(r, o)) for o in opts)
        lines.append(f"| {names} | {api} | {weights} | {held} | {fmt_number(weeks)} | ${weeks * year / 52:,.0f} |")
    w = {k: r.data.costs[k].value for k in r.data.costs if k.startswith("exit_")}
    return (
        f"Weeks: {w['exit_base_weeks']:g} for any move, +{w['exit_own_api_weeks']:g} for an API of the vendor's own, "
        f"+{w['exit_closed_weights_weeks']:g} for closed weights (another model: prompts and evaluations redone), "
        f"+{w['exit_vendor_data_weeks']:g} for data the vendor holds (judgements in data/matrix/costs.csv; "
        "parameters).\n\n" + "\n".join(lines)
    )


def verified_markdown(data: MatrixData) -> str:
    """How many cells were verified against a primary source, a copy, or not at all."""
    n = data.verified_counts()
    total = sum(n.values())
    share = n.get("primary", 0) / total if total else math.nan
    return (
        f"**{n.get('primary', 0)} of {total} cells ({100 * share:.0f}%) verified against a primary source** (the "
        f"vendor's own page or repository, named with its date); {n.get('secondary', 0)} against a third-party "
        f"copy; {n.get('no', 0)} not re-verified (from knowledge, dated 2025-06 so they show as stale)."
    )


def summary_markdown(r: MatrixResult, path: ConstraintPath | None = None, top: int = 6) -> str:
    """The whitepaper's matrix section: one page that points to the decision document."""
    from cliffbench.decide.matrix.verdict import verdict

    v = verdict(r, path.steps[-1].left if path is not None else None)
    order = [o for o in r.scores.total.loc[v.allowed].sort_values(ascending=False).index][:top]
    lines = ["| option | weighted score | total cost / 1M output | throughput source |", "|---|---|---|---|"]
    for o in order:
        src = r.throughput_source.get(o, "managed: list prices" if r.data.options[o].kind == "managed" else "")
        lines.append(
            f"| {md_cell(_name(r, o))} | {fmt_number(float(r.scores.total.loc[o]), 2)} | {r.text.loc[o, 'cost']} | "
            f"{md_cell(src.split(', from study')[0])} |"
        )
    caps = "; ".join(
        f"{_name(r, o).removeprefix('Self-hosted ')} {n} ({how.split(':')[0].split(' to ')[0].split(' for ')[0]})"
        for o, (n, how) in r.capacity.items()
    )
    return "\n\n".join(
        [
            recommendation_markdown(r, v, path),
            "\n".join(lines),
            f"Users one server serves within the SLO on {r.params.hardware}: {caps}.",
            verified_markdown(r.data),
            "**The decision document** (report/decision_matrix.pdf, about 8 pages) gives one page per group of "
            "criteria (deployment, compliance with named certifications and residency by region, cost at your "
            "load, lock-in and exit), the sensitivity to weights and utilisation, and every cell with its source "
            "and date; report/decision_matrix.csv holds the matrix as a table.",
        ]
    )

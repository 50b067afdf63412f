"""The body's sections, written for people: engines by name, one statistic per label, every number
through `fmt` with its source. The full tables behind each (every level, every search step, the
causes in full) are the appendices' (results.py, cliff.py, audit.py).

Statistics: throughput is the median over repeats of output tok/s; a ratio printed beside two
medians is the ratio of those medians, and the per-repeat ratios' range is labelled as such; TTFT
p90 is the pooled percentile over the steady requests of every repeat, the one the SLO verdict uses.
"""

from __future__ import annotations

import pandas as pd

from cliffbench.audit.shape_verdicts import shape_verdicts
from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.decide.causes import cliff_cause, latency_components, study_cliffs
from cliffbench.decide.matrix.score import MatrixResult
from cliffbench.decide.matrix.verdict import verdict
from cliffbench.decide.tree import DecisionNode, DecisionTree, Leaf
from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_names
from cliffbench.report.sections.common import fmt
from cliffbench.report.sections.comparisons import comparisons
from cliffbench.trace import Source, record

__all__ = ["cliff_table", "comparison_table", "fmt_label", "matrix_summary", "seed_claims_table", "tree_ranges"]

# a cliff's mechanism (decide.causes) in words
_MECHANISM = {
    "queue": "requests wait for a free slot",
    "prefill": "prompt processing delays the first token",
    "decode": "each decode step serves a bigger batch",
    "kv": "the KV cache is full: sequences wait or are preempted",
    "failures": "requests fail",
    "none": "no cliff within the measured loads",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def comparison_table(data: ReportData, level_set: str = "chat") -> str:
    """vLLM against llama.cpp in the three comparisons, at the lowest and highest load."""
    rows = comparisons(data, level_set)
    if not rows:
        return "The study has no load both a vLLM and a llama.cpp engine completed: nothing to compare."
    names = engine_names(data)
    out = [
        "| comparison | users | vLLM engine | llama.cpp engine | vLLM tok/s | llama.cpp tok/s "
        "| ratio of the medians | per-repeat ratios, min-max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        src = Source("levels", "output_tok_s median over repeats", f"{c.vllm}/{c.llamacpp}, {c.users}")
        paired = Source("levels", "output_tok_s ratio per paired repeat", f"{c.vllm}/{c.llamacpp}, {c.users}")
        spread = f"x{fmt(c.ratio.lo, 2, paired)}-x{fmt(c.ratio.hi, 2, paired)}" if c.ratio.pairs >= 2 else "one repeat"
        out.append(
            f"| {c.label} | {fmt(c.users, src=src)} | {_cell(names[c.vllm])} | {_cell(names[c.llamacpp])} "
            f"| {fmt(c.vllm_tok_s, 2, src)} | {fmt(c.llamacpp_tok_s, 2, src)} "
            f"| x{fmt(c.vllm_tok_s / c.llamacpp_tok_s, 2, src)} | {spread} |"
        )
    out += [
        "",
        "Throughput: median output tok/s over repeats, two significant digits (the repeats' range, Appendix C, "
        "rarely supports a third). *As shipped*: today's defaults. *Matched precision*: the same weights in both. "
        "*Best of each*: the fastest engine of each family at that load. Configurations: Appendix A.",
    ]
    return "\n".join(out)


def _resolution(data: ReportData, level_set: str) -> str:
    """The study's search resolution for `level_set`, in words ('2 users')."""
    ls = next((s for s in data.results.study.level_sets if s.name == level_set), None)
    search = ls.load.search if ls is not None else None
    if search is None:
        return "its resolution"
    if search.over != "users" and search.resolution is None:
        return "5 % of the rate"
    res = search.step(search.low)  # the search's own default where the study gives none
    n = fmt(res, src=Source("study", "search.resolution", level_set))
    return f"{n} {'user' if res == 1 else 'users'}" if search.over == "users" else f"{n} req/s"


def cliff_table(data: ReportData, judged: pd.DataFrame, judge: SloJudge, level_set: str = "chat") -> str:
    """Each engine's cliff and why, in one line each: the mechanism and where the time goes."""
    res = data.results
    comp = latency_components(res, level_set)
    cliffs = study_cliffs(judged, level_set, data.searches)
    if not cliffs:
        return f"No successful level in level set {level_set!r}: no cliff to name."
    names, specs = engine_names(data), res.engine_specs
    long_docs = any(s.name == level_set and s.workload.long_fraction > 0 for s in res.study.level_sets)
    out = [
        "| engine | meets the SLO up to | first miss | why | queue / prefill / decode at the first miss, ms |",
        "|---|---|---|---|---|",
    ]
    order = sorted(cliffs.items(), key=lambda kv: (-(kv[1].meets_up_to or 0), names.get(kv[0], kv[0])))
    for engine, c in order:
        slots = specs[engine].batch_capacity() if engine in specs else None
        cause = cliff_cause(comp, judged, engine, c.meets_up_to, c.first_miss, judge, slots, long_docs)
        src = Source("cliff", c.source, engine)
        at = comp[(comp["engine"] == engine) & (comp["concurrency"] == c.first_miss)]
        split = "-"
        if len(at):
            r = at.iloc[0]
            ms = Source("latency components", "mean per request", f"{engine}, {c.first_miss:g}")
            split = " / ".join(fmt(1000 * float(r[k]), 2, ms) for k in ("queue_s", "prefill_s", "decode_s"))
        out.append(
            f"| {_cell(names.get(engine, engine))} "
            f"| {fmt(int(c.meets_up_to), src=src) if c.meets_up_to else 'none'} "
            f"| {fmt(int(c.first_miss), src=src) if c.first_miss else 'none measured'} "
            f"| {_MECHANISM.get(cause.mechanism, cause.mechanism)} | {split} |"
        )
    out += [
        "",
        f"SLO: {record(judge.text(), Source('study', 'slo'))}, each percentile pooled over the steady requests of "
        f"every repeat and judged by its {fmt(100 * judge.level, src=Source('study', 'slo confidence'))} % interval. "
        f"Where a search ran, the cliff is its bisection to {_resolution(data, level_set)}; else the grid's bracket. "
        "Each cause in full, with the search paths: Appendix D.",
    ]
    return "\n".join(out)


def seed_claims_table(data: ReportData, level_set: str = "chat") -> str:
    """The seed's claims one by one: claim | measured here | verdict | why (the roofline)."""
    shapes = shape_verdicts(data.results, level_set, data.claims)
    if not shapes:
        return "The study lacks vLLM or an Ollama-like engine at a common load, so no claim of the seed is checked."
    names = engine_names(data)

    def named(text: str) -> str:  # the audit names the study's stand-in by label: '(ollama here)'
        for label, name in names.items():
            text = text.replace(f"({label} here)", f"({name} here)")
        return _cell(text)

    out = ["| claim (published) | measured here | verdict | why, with the roofline |", "|---|---|---|---|"]
    out += [
        f"| {named(s.shape)}: {_cell(s.published)} | {_cell(s.measured)} | **{s.verdict or 'not judged'}** "
        f"| {_cell(s.reason)} |"
        for s in shapes
    ]
    out += [
        "",
        "A growth factor reproduces when it falls in the published class or one further the same way; a ratio "
        "when it is at least half the published one, on the same side of 1. Magnitudes cannot transfer from an "
        "A100 to this machine; shapes can. Every published number against its hardware's ceiling: Appendix I.",
    ]
    return "\n".join(out)


def tree_ranges(tree: DecisionTree, names: dict[str, str]) -> str:
    """The tree's recommendations as a table: traffic, users, engine."""
    rows = ["| traffic | peak users | choose |", "|---|---|---|"]
    branches = (
        [(label, b) for label, b in tree.root.branches]
        if tree.root.question.startswith("long documents")
        else [("no", tree.root)]
    )
    for docs, node in branches:
        traffic = "with long documents" if docs == "yes" else "chat"
        if not isinstance(node, DecisionNode):
            continue
        for label, leaf in node.branches:
            if not isinstance(leaf, Leaf):
                continue
            users = fmt_label(label)
            nothing = "not measured" if label.startswith(">") else "nothing measured meets the SLO"
            choice = names.get(leaf.engine, leaf.engine) if leaf.engine else nothing
            rows.append(f"| {traffic} | {users} | {_cell(choice)} |")
    return "\n".join(rows)


def fmt_label(label: str) -> str:
    """A tree branch's user range ('<= 8 users') for people, its numbers logged as the tree's."""
    return record(label.replace("<=", "up to").replace(">", "above"), Source("decision tree", "users", label))


def matrix_summary(r: MatrixResult, top: int = 3) -> str:
    """The matrix's top options under the chosen weights, in one sentence; the matrix in full is an appendix."""
    total = r.scores.total.sort_values(ascending=False)
    ranked = [o for o in total.index if o in r.eligible][:top]
    if not ranked:
        return "No option of the matrix is eligible under the chosen constraints (Appendix M)."
    parts = [
        f"{r.data.options[o].name} ({fmt(float(total.loc[o]), 2, Source('decision matrix', 'weighted score', o))})"
        for o in ranked
    ]
    v = verdict(r)

    def name(o: str) -> str:
        return r.data.options[o].name

    if v.choice.tie:
        head = (
            f"No single top choice: a tie between {name(v.choice.top)} and {name(v.choice.other)}; "
            f"it turns on the weight of {v.choice.pivot or 'several criteria'}."
        )
    else:
        head = f"Top choice: {name(v.choice.top)}; runner-up {name(v.choice.runner_up)}."
    if v.cost_warning:
        ratio = fmt(v.cost_ratio, 2, Source("decision matrix", "cost ratio", v.choice.top))
        head += f" It costs x{ratio} the cheapest option that meets every hard constraint ({name(v.cheapest)})."
    return (
        f"{head} The architecture decision matrix scores every way to serve the model (self-hosted "
        "engines, managed APIs) on cost, speed, operations and risk, each cell sourced. Under the chosen weights "
        f"the top options are {', '.join(parts)} (weighted score, higher is better). The decision document "
        "(report/decision_matrix.pdf) and Appendix M have weights, sources, sensitivity and the full matrix."
    )

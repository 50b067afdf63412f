"""Page 1: the answer. Title, the setup in one line, how many users each engine serves within the
SLO per traffic profile (with the cliff's interval), the headline figure and three sentences:
what to choose, how far to trust it, what differs from the seed.

Every number goes through `fmt` with its source (`cliffbench.trace`); the page reads the same
judged levels, cliffs and tree as the body, so it cannot disagree with them.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cliffbench.audit.roofline import MODELS
from cliffbench.audit.seed import SEED_HIGH_USERS, seed_pair
from cliffbench.audit.shape_verdicts import shape_verdicts
from cliffbench.bench.metrics.repeats import SloJudge, paired_ratio, pool_repeats
from cliffbench.bench.store.levels import ok_levels
from cliffbench.decide.causes import EngineCliff, study_cliffs
from cliffbench.decide.tree import DecisionNode, DecisionTree, Leaf
from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_names, engine_precisions
from cliffbench.report.sections.body import fmt_label
from cliffbench.report.sections.common import figure_html, fmt, headline_level
from cliffbench.report.sections.reuse import REUSE_KINDS, reuse_profile_text
from cliffbench.trace import Source, record

__all__ = [
    "Profile",
    "answer_html",
    "choice_sentence",
    "judged_levels",
    "profiles_of",
    "seed_sentence",
    "spread_sentence",
]


@dataclass(frozen=True)
class Profile:
    """A traffic profile of the page-1 table: a level set and its column heading."""

    level_set: str
    heading: str


def profiles_of(data: ReportData, level_sets: list[str]) -> list[Profile]:
    """The traffic profiles (level sets) of the page-1 table, each headed by what its traffic is."""
    out = []
    for ls in data.results.study.level_sets:
        if ls.name not in level_sets:
            continue
        lf = ls.workload.long_fraction
        if ls.workload.kind in REUSE_KINDS:
            what = reuse_profile_text(data.results.study, ls.name, short=True)
        elif lf > 0:
            what = f"{fmt(100 * lf, 2, Source('study', 'workload.long_fraction', ls.name))} % long documents"
        else:
            what = "short prompts"
        out.append(Profile(ls.name, f"{ls.name} ({what}): users"))
    return out


def judged_levels(data: ReportData, tree: DecisionTree | None) -> pd.DataFrame:
    """The study's levels pooled over repeats and judged by the SLO the tree uses."""
    res = data.results
    judge = SloJudge.of(res.study.slo, **({} if tree is None else tree.slo))
    return pool_repeats(res.levels, res.requests, judge)


def _cliff_cell(c: EngineCliff | None, level_set: str, engine: str) -> str:
    def n(x: float | None, what: str) -> str:
        return fmt(int(x or 0), src=Source("cliff", what, f"{engine}, {level_set}"))

    if c is None:
        return "not measured"
    if c.meets_up_to is None:
        return f"none (misses at {n(c.first_miss, 'first miss')})" if c.first_miss else "none"
    if c.first_miss is None:
        return f"{n(c.meets_up_to, 'meets up to')} or more (none missed)"
    return (
        f"{n(c.meets_up_to, 'meets up to')} (cliff {n(c.meets_up_to, 'meets up to')}-{n(c.first_miss, 'first miss')})"
    )


def _tok_at(lv: pd.DataFrame, engine: str, users: float | None, level_set: str) -> str:
    if users is None:
        return "-"
    row = lv[(lv["engine"] == engine) & (lv["level_set"] == level_set) & (lv["concurrency"] == users)]
    if row.empty:
        return "-"
    return fmt(float(row["output_tok_s"].iloc[0]), 2, Source("levels", "output_tok_s median", f"{engine}, {users:g}"))


def _setup_line(data: ReportData, judge: SloJudge) -> str:
    m = data.results.manifest
    cpu = m.cpu
    gpus = ", ".join(g.name for g in m.gpu) or "no GPU"
    models = dict.fromkeys(es.model.name for es in data.results.study.engines)
    shapes = next(iter(m.models.values()), None)
    model = ", ".join(MODELS[k].name if k in MODELS else k for k in models)
    size = (
        f" ({fmt(shapes.n_params / 1e6, src=Source('manifest', 'models.n_params'))} M parameters)"
        if shapes is not None
        else ""
    )
    hw = html.escape(cpu.model or "an unrecorded CPU")
    cores = fmt(cpu.usable_cpus or 0, src=Source("manifest", "cpu.usable_cpus"))
    mem = fmt(cpu.memory_gib or 0, src=Source("manifest", "cpu.memory_gib"))
    slo = record(judge.text(), Source("study", "slo"))
    created = m.created_at[:10]
    return (
        f"<b>Setup</b>: {hw}, {cores} usable cores, {mem} GiB, {html.escape(gpus)}; model {html.escape(model)}{size}; "
        f"weights per engine as in the table; SLO {html.escape(slo)} over the steady requests of every repeat; "
        f"measured {html.escape(created)}."
    )


def _leaves(tree: DecisionTree, long_docs: bool) -> list[tuple[str, Leaf]]:
    node = tree.root
    if node.question.startswith("long documents"):
        node = next(b for label, b in node.branches if label == ("yes" if long_docs else "no"))  # type: ignore[assignment]
    if not isinstance(node, DecisionNode):
        return []
    return [(label, b) for label, b in node.branches if isinstance(b, Leaf)]


def choice_sentence(tree: DecisionTree | None, names: dict[str, str]) -> str:
    """What to choose for how many users: the decision tree's ranges without long documents."""
    if tree is None:
        return "No decision tree was built for this study."
    parts = []
    for label, leaf in _leaves(tree, long_docs=False):
        users = fmt_label(label)
        if leaf.engine is None:
            parts.append(f"{users}: {'not measured' if label.startswith('>') else 'nothing measured meets the SLO'}")
        else:
            parts.append(f"{users}: {names.get(leaf.engine, leaf.engine)}")
    return "Choose by peak users (the decision tree below): " + "; ".join(parts) + "."


def spread_sentence(data: ReportData, level_set: str) -> str:
    """How far to trust it: how much repeats of one level differed in throughput."""
    lv = ok_levels(data.results.levels, level_set)
    g = lv.groupby(["engine", "concurrency"])["output_tok_s"]
    n = g.count()
    spread = ((g.max() - g.min()) / g.median())[n >= 2]
    if spread.empty:
        return "Every level ran once, so the run-to-run spread is not known: read each number as one run."
    src = Source("levels", "output_tok_s (max-min)/median over repeats", level_set)
    return (
        f"Repeats of one level differed by a median of {fmt(100 * spread.median(), 2, src)} % in throughput "
        f"(at most {fmt(100 * spread.max(), 2, src)} %, over {fmt(int(n.min()), src=Source('levels', 'repeats'))} "
        "repeats or more); a cliff is known only to within its bracket."
    )


def seed_sentence(data: ReportData, level_set: str, vllm: str | None, ollama: str | None, names: dict[str, str]) -> str:
    """What differs from the seed: how many of its claims reproduce, and its headline ratio here."""
    shapes = shape_verdicts(data.results, level_set, data.claims)
    src = Source("shape verdicts", "verdict", "count")
    text = (
        f"Of the seed's {fmt(len(shapes), src=src)} claims checked here, "
        f"{fmt(sum(s.verdict == 'reproduced' for s in shapes), src=src)} reproduce (table below)"
        if shapes
        else "The seed's claims could not be checked on this study"
    )
    pair = seed_pair(data.claims)
    if pair is None or vllm is None or ollama is None:
        return text + "."
    lv = ok_levels(data.pooled, level_set)
    users = headline_level(lv[lv["engine"].isin([vllm, ollama])])
    r = paired_ratio(data.results.levels, vllm, ollama, level_set, users)
    if math.isnan(r.median):
        return text + "."
    cited = Source("data/published/claims.csv", "value", pair.vllm.claim_id, cited=True)
    measured = Source("levels", "output_tok_s, median of per-repeat ratios", f"{vllm}/{ollama}, {users}")
    band = record(f"{SEED_HIGH_USERS[0]}-{SEED_HIGH_USERS[1]}", cited)
    return (
        f"{text}; the seed puts vLLM at x{fmt(pair.ratio, 2, cited)} Ollama's throughput at {band} users, and "
        f"here {names.get(vllm, vllm)} serves x{fmt(r.median, 2, measured)} of {names.get(ollama, ollama)} at "
        f"{fmt(users, src=measured)} users ("
        + (f"median of {fmt(r.pairs, src=measured)} paired repeats)." if r.pairs >= 2 else "one repeat).")
    )


def answer_html(
    data: ReportData,
    tree: DecisionTree | None,
    figure: Path,
    caption: str,
    profiles: list[Profile],
    seed_engines: tuple[str | None, str | None] = (None, None),
) -> str:
    """Page 1 as one HTML block (the contents follow it)."""
    res = data.results
    judge = SloJudge.of(res.study.slo, **({} if tree is None else tree.slo))
    judged = judged_levels(data, tree)
    names, prec = engine_names(data), engine_precisions(data)
    present = [p for p in profiles if (judged["level_set"] == p.level_set).any()]
    cliffs = {p.level_set: study_cliffs(judged, p.level_set, data.searches) for p in present}
    first = present[0].level_set if present else ""

    def key(engine: str) -> tuple[float, str]:
        c = cliffs.get(first, {}).get(engine)
        return (-(c.meets_up_to or 0) if c else 1.0, names.get(engine, engine))

    engines = sorted(res.engine_specs, key=key)
    head = "".join(f"<th>{html.escape(p.heading)}</th>" for p in present)
    rows = []
    for e in engines:
        cells = "".join(f"<td>{_cliff_cell(cliffs[p.level_set].get(e), p.level_set, e)}</td>" for p in present)
        c = cliffs.get(first, {}).get(e)
        tok = _tok_at(judged, e, c.meets_up_to if c else None, first)
        weights = res.engine_specs[e].weights_text(prec.get(e, "?"))
        rows.append(
            f"<tr><td>{html.escape(names.get(e, e))}</td><td>{html.escape(weights)}</td>{cells}<td>{tok}</td></tr>"
        )
    table = (
        '<table class="answer-table"><caption>Users each engine serves within the SLO, per traffic profile '
        "(the highest measured load that meets it; the cliff lies between that load and the first that misses)"
        f"</caption><tr><th>engine</th><th>weights</th>{head}<th>output tok/s at that load ({html.escape(first)})"
        f"</th></tr>{''.join(rows)}</table>"
    )
    sentences = [
        choice_sentence(tree, names),
        spread_sentence(data, first),
        seed_sentence(data, first, *seed_engines, names),
    ]
    return (
        '<div class="answer">'
        f'<h1 class="title">Which engine for how many users: {html.escape(_families(data))}</h1>'
        f'<p class="setup">{_setup_line(data, judge)}</p>'
        f'<p class="bottom-line">{" ".join(html.escape(s) for s in sentences)}</p>'
        f"{table}{figure_html(figure, caption, width_pct=50)}</div>"
    )


def _families(data: ReportData) -> str:
    titles = dict.fromkeys(es.title() for es in data.results.study.engines)
    return " against ".join(titles) or "the study's engines"

"""The title page, the executive summary and the seed's ratio, from the study's levels."""

from __future__ import annotations

import html

import pandas as pd

from cliffbench.audit.seed import SEED_HIGH_USERS, comparable_pair, seed_pair
from cliffbench.audit.shape_verdicts import ollama_like
from cliffbench.bench.metrics.repeats import RatioEstimate, median_range_level, paired_ratio
from cliffbench.decide.tree import Cliff, DecisionTree
from cliffbench.engines.specs import VLLM
from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_names
from cliffbench.report.sections.common import fmt, headline_level, measured_levels
from cliffbench.report.sections.comparisons import comparisons_sentence
from cliffbench.report.sections.methods import engine_transport
from cliffbench.report.sections.overhead import overhead_gap_sentence

__all__ = [
    "cliff_sentence",
    "executive_summary",
    "seed_comparison",
    "seed_engines",
    "title_page_html",
]


def _subtitle(data: ReportData) -> str:
    """'vLLM and llama.cpp under concurrent load, measured in-process' for the engines the study ran."""
    engines = data.results.study.engines
    # what the title calls each engine (an openai-http engine: the server it started, else a generic one)
    families = dict.fromkeys(e.title() for e in engines)
    ways = {engine_transport(e) == "in-process" for e in engines}
    how = "in-process" if ways == {True} else "over HTTP" if ways == {False} else "in-process and over HTTP"
    names = list(families)
    listed = " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{listed} under concurrent load, measured {how}"


def title_page_html(data: ReportData) -> str:
    manifest = data.results.manifest
    cpu = manifest.cpu
    gpus = ", ".join(g.name for g in manifest.gpu) or "no GPU"
    created = manifest.created_at[:10]
    return (
        '<div class="title-page">'
        '<h1 class="title">Where is the concurrency cliff?</h1>'
        f'<p class="subtitle">{html.escape(_subtitle(data))}</p>'
        f'<p class="meta">Study <b>{html.escape(data.study)}</b> &middot; measured {html.escape(created)}</p>'
        f'<p class="meta">{html.escape(cpu.model or "unknown CPU")}, '
        f"{cpu.usable_cpus or '?'} usable cores, {cpu.memory_gib or '?'} GiB, {html.escape(gpus)}</p>"
        f'<p class="meta">git {html.escape(manifest.git_sha[:12])}</p>'
        "</div>"
    )


def _tok(row: pd.Series) -> str:
    """Median output tok/s of a pooled level with its range over repeats."""
    med = fmt(row.output_tok_s)
    if int(row.get("repeats", 1)) < 2:
        return f"{med} tok/s (one repeat)"
    return f"{med} tok/s (range {fmt(row.output_tok_s_min)}-{fmt(row.output_tok_s_max)})"


def _ratio(data: ReportData, a: str, b: str, users: int, level_set: str = "chat") -> RatioEstimate:
    return paired_ratio(data.results.levels, a, b, level_set, users)


def _repeats_note(lv: pd.DataFrame, data: ReportData) -> str:
    n = int(lv["repeats"].min()) if "repeats" in lv and len(lv) else 1
    if n < 2:
        text = "Every level of this study was measured once, so no number below carries its run-to-run spread"
        stored = data.fidelity_repeats
        runs = [r for r in (stored.data.get("runs", []) if stored else []) if str(r["variant"]).startswith("default")]
        if stored is not None and len(runs) >= 2:
            tok = [float(r["server"]["tok_s"]) for r in runs]
            text += (
                f"; one configuration run {len(runs)} times as is on this machine gave {fmt(min(tok))}-"
                f"{fmt(max(tok))} tok/s (`benchmarks/results/{stored.name}`)"
            )
        return text + "."
    return (
        f"Every level was measured {n} times, interleaved with the other engines (repeat r of every engine "
        f"before repeat r+1). Numbers are medians over the repeats; a range is min-max over them, which "
        f"covers the median of the repeat distribution with probability {100 * median_range_level(n):.0f} % "
        "(distribution-free), and a ratio's range comes from repeats paired in time."
    )


def executive_summary(data: ReportData, tree: DecisionTree | None = None) -> str:
    lv = measured_levels(data)
    if lv.empty:
        return "No level of this study finished successfully, so there is nothing to summarise."
    users = headline_level(lv)
    at = lv[lv["concurrency"] == users].sort_values("output_tok_s", ascending=False)
    best, runner = at.iloc[0], at.iloc[1] if len(at) > 1 else None
    s = [_repeats_note(lv, data)]
    lead = f"At **{users} concurrent users** the **{best.engine}** engine delivered **{_tok(best)}**"
    if runner is not None:
        r = _ratio(data, str(best.engine), str(runner.engine), users)
        lead += f", {r.text(fmt, str(runner.engine))}: {_tok(runner)}"
    s.append(lead + f", with a median TTFT p90 of {fmt(best.ttft_s_p90)} s per repeat.")
    one = lv[lv["concurrency"] == lv["concurrency"].min()].sort_values("ttft_s_p50")
    if len(one):
        f = one.iloc[0]
        s.append(
            f"With {int(f.concurrency)} user the fastest first token came from **{f.engine}** "
            f"(TTFT p50 {fmt(f.ttft_s_p50)} s, {_tok(f)})."
        )
    for eng, g in lv.groupby("engine"):
        lo, hi = g.iloc[0], g.iloc[-1]
        s.append(
            f"{eng}: throughput x{fmt(hi.output_tok_s / lo.output_tok_s)} (medians) from {int(lo.concurrency)} to "
            f"{int(hi.concurrency)} users, while TTFT p90 grew x{fmt(hi.ttft_s_p90 / lo.ttft_s_p90)} "
            f"({fmt(lo.ttft_s_p90)} s to {fmt(hi.ttft_s_p90)} s)."
        )
    compared = comparisons_sentence(data)
    if compared:
        s.append(compared)
    if tree is not None and tree.cliffs:
        s.append(cliff_sentence(tree))
    s.append(seed_comparison(data))
    return "\n\n".join(s)


def cliff_sentence(tree: DecisionTree) -> str:
    """Each engine's cliff as a bracket of measured levels, long-document cliffs apart."""
    chat = {e: c for e, c in tree.cliffs.items() if "(long documents)" not in e}
    docs = {e: c for e, c in tree.cliffs.items() if "(long documents)" in e}

    def say(cliffs: dict[str, Cliff]) -> str:
        order = sorted(cliffs.items(), key=lambda kv: (-kv[1].meets_up_to, kv[0]))
        return "; ".join(f"{e}: {c.text()}" for e, c in order)

    text = (
        f"The cliff of each engine, between the highest measured level that meets the SLO ({tree.slo_text}, "
        "over the steady requests of every repeat, failures counted as misses, judged by the "
        f"percentile's 95 % interval rather than its point estimate) and the first that does not: {say(chat)}."
    )
    if docs:
        text += f" With long documents in the traffic (the mixed set): {say(docs)}."
    return text


def _seed_engines(data: ReportData, engines: list[str]) -> tuple[str | None, str | None, str]:
    """The pair the seed's ratio is checked on, and the comparison it is: vLLM and Ollama as
    shipped when the study has both presets, else its `vllm` against its Ollama-like engine."""
    specs = data.results.engine_specs
    shipped_vllm = [n for n in engines if specs[n].family == VLLM and specs[n].preset]
    ollama = [n for n in engines if (specs[n].preset or "").startswith("ollama")]
    if shipped_vllm and ollama:
        return shipped_vllm[0], ollama[0], "both as shipped"
    ref = ollama[0] if ollama else ollama_like(engines, specs)
    return ("vllm" if "vllm" in engines else None), ref, "the study's vLLM against its Ollama-like engine"


def seed_engines(data: ReportData, level_set: str = "chat") -> tuple[str | None, str | None]:
    """The vLLM and the Ollama-like engine the seed's ratio is checked on (None: the study has none)."""
    engines = sorted(measured_levels(data, level_set)["engine"].unique())
    vllm, ref, _ = _seed_engines(data, engines)
    return vllm, ref


def seed_comparison(data: ReportData) -> str:
    """Does the seed's shape (vLLM several times an Ollama-like engine at 25-32 users) hold here?"""
    lv = measured_levels(data)
    engines = sorted(lv["engine"].unique())
    vllm, ref, comparison = _seed_engines(data, engines)
    if vllm is None or ref is None:
        return "The study lacks vLLM or an Ollama-like llama.cpp engine, so the seed's ratio is not checked."
    pair = seed_pair(data.claims)
    if pair is None:
        return (
            "The claims hold no seed vLLM and Ollama throughputs at its high load, so the seed's ratio is not checked."
        )
    users = headline_level(lv[lv["engine"].isin([vllm, ref])])
    r = _ratio(data, vllm, ref, users)
    ratio = r.median
    names = engine_names(data)
    claimed = pair.ratio
    best_llama = lv[(lv["concurrency"] == users) & lv["engine"].str.startswith("llamacpp")]
    tuned = best_llama.sort_values("output_tok_s").iloc[-1] if len(best_llama) else None
    # same order as the claim (at least half of it) = reproduced; vLLM ahead by less = the direction
    # only. The range over paired repeats must agree, or the verdict says it moves with the run.
    lo, hi = (r.lo, r.hi) if r.pairs >= 2 else (ratio, ratio)
    if lo >= 0.5 * claimed:
        verdict = "reproduces"
    elif hi >= 0.5 * claimed and lo > 1:
        verdict = "reproduces in some repeats and only the direction in others of"
    elif lo > 1:
        verdict = "reproduces only the direction of"
    elif hi > 1:
        verdict = "does not consistently reproduce the direction of"
    else:
        verdict = "does not reproduce"
    # short sentences: the claim, its source, the measurement, the verdict
    text = (
        f"The seed claims vLLM delivers about {fmt(claimed)} times Ollama's throughput at "
        f"{SEED_HIGH_USERS[0]}-{SEED_HIGH_USERS[1]} users. Source, data/published/claims.csv: {pair.cite()}. "
        f"Here, at {users} users, *{comparison}*, {names[vllm]} delivered {r.text(fmt, names[ref])}. "
        f"This run **{verdict}** the seed's ratio."
    )
    a100 = comparable_pair(data.claims, "output_tok_s_total")
    if a100 is not None and a100 != pair:
        at = "at each engine's peak" if a100.users is None else f"at {a100.users} users"
        text += (
            f" On the {a100.vllm.hardware} the seed states, {a100.vllm.source_id} measured x{fmt(a100.ratio)} {at}. "
            f"Source: {a100.cite()}. The table below sets this study beside it."
        )
    if data.overhead is not None:
        text += overhead_gap_sentence(data, vllm, ref, ratio, names)
    if tuned is not None and tuned.engine != ref:
        r2 = _ratio(data, vllm, str(tuned.engine), users)
        moved = "narrows the gap substantially" if r2.median < 0.75 * ratio else "changes the ratio little"
        text += (
            f" Against the fastest llama.cpp configuration in this study at {users} users "
            f"({names[str(tuned.engine)]}), {names[vllm]} delivered {r2.text(fmt, names[str(tuned.engine)])}. "
            f"Tuning llama.cpp {moved} here."
        )
    return text

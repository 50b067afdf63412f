"""Traffic with reuse: conversations, shared system prompts and RAG documents. Per profile (a level
set whose workload repeats prompt tokens), each engine's SLO verdict at each load beside its
prefix-cache hit rate: what the engine told it served from cache against what an infinite cache
would serve of the same requests (`bench/workload/reuse.theoretical_hit_rate`).

A measured rate far under the theoretical one at the heavier load, with the lighter one close,
is the cache running out: the KV pool cannot hold every user's history, so reusable tokens are
computed again. That is a KV-capacity cliff, not a compute one, and the table lets it be read.
"""

from __future__ import annotations

import math

import pandas as pd

from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import ok_levels
from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_names
from cliffbench.report.sections.common import fmt
from cliffbench.trace import Source

__all__ = ["REUSE_KINDS", "evicted_share", "reuse_level_sets", "reuse_profile_text", "reuse_section"]

REUSE_KINDS = ("sessions", "shared_prefix", "rag")

# measured under this share of the theoretical rate: the cache lost what it could have served
_EVICTED_BELOW = 0.5


def reuse_level_sets(study: StudySpec) -> list[str]:
    """The study's level sets whose workload repeats prompt tokens, in the study's order."""
    return [ls.name for ls in study.level_sets if ls.workload.kind in REUSE_KINDS]


def reuse_profile_text(study: StudySpec, level_set: str, short: bool = False) -> str:
    """What a reuse profile's traffic is, in words; `short` for a table heading."""
    ls = next(s for s in study.level_sets if s.name == level_set)
    w = ls.workload
    src = Source("study", "workload", level_set)
    if w.kind == "sessions" and w.sessions is not None:
        t = w.sessions.turns
        turns = f"{fmt(t.low, src=src)}-{fmt(t.high, src=src)}" if t.dist != "fixed" else fmt(t.mean, src=src)
        return f"{turns} turns" if short else f"conversations of {turns} turns, each re-sending the history"
    if w.kind == "rag" and w.rag is not None:
        r = w.rag
        if short:
            return f"{fmt(r.k, src=src)} of {fmt(r.documents, src=src)} documents"
        return (
            f"{fmt(r.k, src=src)} of {fmt(r.documents, src=src)} shared documents of "
            f"{fmt(r.doc_tokens, src=src)} tokens per request"
        )
    if w.kind == "shared_prefix" and w.shared_prefix is not None:
        p = w.shared_prefix
        if short:
            return f"{fmt(p.prompts, src=src)} system prompts"
        return f"{fmt(p.prompts, src=src)} shared system prompts of {fmt(p.prefix_tokens, src=src)} tokens"
    return w.kind


def _rate(x: float, what: str, where: str) -> str:
    if math.isnan(x):
        return "not reported"
    return fmt(100 * x, 2, Source("levels", f"{what} (median over repeats)", where)) + " %"


def evicted_share(pooled: pd.DataFrame, engine: str, level_set: str, users: float) -> float:
    """Measured over theoretical hit rate of `engine` at `users` (NaN where either is unknown)."""
    row = pooled[(pooled["engine"] == engine) & (pooled["level_set"] == level_set) & (pooled["concurrency"] == users)]
    if row.empty or "hit_rate_measured" not in row or "hit_rate_theory" not in row:
        return math.nan
    measured, theory = float(row["hit_rate_measured"].iloc[0]), float(row["hit_rate_theory"].iloc[0])
    return measured / theory if theory > 0 else math.nan


def _table(data: ReportData, judged: pd.DataFrame, level_set: str) -> str:
    lv = ok_levels(judged, level_set).sort_values(["engine", "concurrency"])
    names = engine_names(data)
    specs = data.results.engine_specs
    lines = [
        "| engine | reuse | users | TTFT (s) | TPOT (s) | output tok/s | SLO | hit rate, possible | "
        "hit rate, measured |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in lv.iterrows():
        eng, users = str(r["engine"]), float(r["concurrency"])
        where = f"{eng}, {users:g} users, {level_set}"
        reuse = specs[eng].reuse_text() if eng in specs else "?"
        # the SLO's own percentiles, pooled over repeats (the judge's columns)
        ttft = fmt(float(r.get("slo_ttft_s", math.nan)), 2, Source("levels", "slo_ttft_s pooled", where))
        tpot = fmt(float(r.get("slo_tpot_s", math.nan)), 2, Source("levels", "slo_tpot_s pooled", where))
        tok = fmt(float(r["output_tok_s"]), 3, Source("levels", "output_tok_s median", where))
        verdict = str(r.get("slo_verdict", "?"))
        theory = _rate(float(r.get("hit_rate_theory", math.nan)), "hit_rate_theory", where)
        measured = _rate(float(r.get("hit_rate_measured", math.nan)), "hit_rate_measured", where)
        lines.append(
            f"| {names.get(eng, eng)} | {reuse} | {fmt(users, src=Source('study', 'concurrency', level_set))} | "
            f"{ttft} | {tpot} | {tok} | {verdict} | {theory} | {measured} |"
        )
    return "\n".join(lines)


def _evictions(data: ReportData, judged: pd.DataFrame, level_set: str) -> list[str]:
    """One sentence per engine whose measured rate fell under half the possible one at some load."""
    out = []
    names = engine_names(data)
    specs = data.results.engine_specs
    lv = ok_levels(judged, level_set)
    for eng, g in lv.groupby("engine", sort=True):
        if str(eng) in specs and specs[str(eng)].reuse_text() == "off":
            continue  # a control: it serves nothing from cache by design
        block = _block_tokens(g)
        for users in sorted(g["concurrency"]):
            share = evicted_share(judged, str(eng), level_set, users)
            if not math.isnan(share) and share < _EVICTED_BELOW:
                src = Source("levels", "hit_rate_measured / hit_rate_theory", f"{eng}, {users:g}, {level_set}")
                why = (
                    f"its cache keeps whole blocks of {fmt(block, src=Source('levels', 'cfg_block_size', str(eng)))} "
                    "tokens, and a prefix shorter than a block is computed again"
                    if block > 1
                    else "a slot's tokens were overwritten by another user's request before its owner came back "
                    "(fewer slots than users), or the KV pool evicted them"
                )
                out.append(
                    f"{names.get(str(eng), str(eng))} served {fmt(100 * share, 2, src)} % of the reusable tokens from "
                    f"cache at {fmt(users, src=src)} users: {why}."
                )
                break
    return out


def _block_tokens(levels: pd.DataFrame) -> float:
    """The engine's KV block in tokens where it reported one (vLLM's `block_size`), else 1."""
    if "cfg_block_size" not in levels:
        return 1.0
    block = pd.to_numeric(levels["cfg_block_size"], errors="coerce").dropna()
    return float(block.iloc[0]) if len(block) else 1.0


def reuse_section(data: ReportData, judged: pd.DataFrame) -> str:
    """Markdown: per reuse profile, its traffic, each engine's levels with hit rates, and where a
    cache lost what it could have served. Empty string when the study has no such profile."""
    sets = [s for s in reuse_level_sets(data.results.study) if (judged["level_set"] == s).any()]
    if not sets:
        return ""
    out = [
        "Chat clients re-send the whole conversation every turn, and RAG pipelines send the same documents "
        "to many users. An engine that keeps those tokens' KV computes only what is new. *Possible* is what "
        "an infinite prefix cache would serve of the prompt tokens of the same requests. *Measured* is what "
        "the engine reported it served from cache, over the steady window. vLLM reports it per request, "
        "and so do the llama.cpp engines with prompt reuse; *not reported* means the engine told nothing. "
        "*Possible* starts from an empty cache at each level, so an engine whose cache still holds an earlier "
        "repeat's documents can measure more."
    ]
    for ls in sets:
        out += ["", f"**{ls}**: {reuse_profile_text(data.results.study, ls)}.", "", _table(data, judged, ls)]
        lost = _evictions(data, judged, ls)
        if lost:
            out += ["", *lost]
    return "\n".join(out)

"""The title page, the executive summary and the seed's ratio, from the study's levels."""

from __future__ import annotations

import html

import pandas as pd

from cliffbench.audit.shape_verdicts import ollama_like
from cliffbench.report.data import ReportData
from cliffbench.report.sections.common import fmt, headline_level, measured_levels
from cliffbench.report.sections.overhead import overhead_gap_sentence

__all__ = ["SEED_SOURCE", "SEED_VLLM_OVER_OLLAMA", "executive_summary", "seed_comparison", "title_page_html"]

# The seed post's own story (shared/seed): the shapes it argues from, for comparison only.
SEED_VLLM_OVER_OLLAMA = 1450 / 320
SEED_SOURCE = "seed post: ~1,450 vs ~320 TPS at 25-32 users, traced to Spheron's H100 table"


def _at(lv: pd.DataFrame, engine: str, users: int, col: str) -> float:
    row = lv[(lv["engine"] == engine) & (lv["concurrency"] == users)]
    return float(row[col].iloc[0]) if len(row) else float("nan")


def title_page_html(data: ReportData) -> str:
    manifest = data.results.manifest
    cpu = manifest.get("cpu", {})
    gpus = ", ".join(g["name"] for g in manifest.get("gpu", [])) or "no GPU"
    created = str(manifest.get("created_at", ""))[:10]
    return (
        '<div class="title-page">'
        '<h1 class="title">Where is the concurrency cliff?</h1>'
        '<p class="subtitle">vLLM and llama.cpp under concurrent load, measured in-process</p>'
        f'<p class="meta">Study <b>{html.escape(data.study)}</b> &middot; measured {html.escape(created)}</p>'
        f'<p class="meta">{html.escape(str(cpu.get("model", "unknown CPU")))}, '
        f"{cpu.get('usable_cpus', '?')} usable cores, {cpu.get('memory_gib', '?')} GiB, {html.escape(gpus)}</p>"
        f'<p class="meta">git {html.escape(str(manifest.get("git_sha", "unknown"))[:12])}</p>'
        "</div>"
    )


def executive_summary(data: ReportData, ttft_slo_s: float, cliffs: dict[str, float] | None = None) -> str:
    lv = measured_levels(data)
    if lv.empty:
        return "No level of this study finished successfully, so there is nothing to summarise."
    users = headline_level(lv)
    at = lv[lv["concurrency"] == users].sort_values("output_tok_s", ascending=False)
    best, runner = at.iloc[0], at.iloc[1] if len(at) > 1 else None
    s = [
        f"At **{users} concurrent users** the **{best.engine}** engine delivered "
        f"**{fmt(best.output_tok_s)} output tok/s**"
        + (
            f", {fmt(best.output_tok_s / runner.output_tok_s)} times {runner.engine} ({fmt(runner.output_tok_s)} tok/s)"
            if runner is not None
            else ""
        )
        + f", with a p99 time to first token of {fmt(best.ttft_s_p99)} s."
    ]
    one = lv[lv["concurrency"] == lv["concurrency"].min()].sort_values("ttft_s_p50")
    if len(one):
        f = one.iloc[0]
        s.append(
            f"With {int(f.concurrency)} user the fastest first token came from **{f.engine}** "
            f"(TTFT p50 {fmt(f.ttft_s_p50)} s, {fmt(f.output_tok_s)} tok/s)."
        )
    for eng, g in lv.groupby("engine"):
        lo, hi = g.iloc[0], g.iloc[-1]
        s.append(
            f"{eng}: throughput x{fmt(hi.output_tok_s / lo.output_tok_s)} from {int(lo.concurrency)} to "
            f"{int(hi.concurrency)} users, while TTFT p99 grew x{fmt(hi.ttft_s_p99 / lo.ttft_s_p99)} "
            f"({fmt(lo.ttft_s_p99)} s to {fmt(hi.ttft_s_p99)} s)."
        )
    if cliffs:
        s.append(_cliff_sentence(cliffs, ttft_slo_s, lv))
    s.append(seed_comparison(data))
    return "\n\n".join(s)


def _cliff_sentence(cliffs: dict[str, float], ttft_slo_s: float, lv: pd.DataFrame) -> str:
    top = lv.groupby("engine")["concurrency"].max()

    def say(engine: str, users: float) -> str:
        base = engine.replace(" (long documents)", "")
        if users <= 0:
            return f"{engine} misses it already at the lowest measured level"
        if base in top and users >= top[base]:
            return f"{engine} holds it up to the highest measured level ({int(top[base])} users)"
        return f"{engine} ~{fmt(users, 2)} users"

    chat = {e: c for e, c in cliffs.items() if "(long documents)" not in e}
    docs = {e: c for e, c in cliffs.items() if "(long documents)" in e}
    text = (
        f"The cliff, the largest user count that still meets the SLO (TTFT p99 <= {fmt(ttft_slo_s)} s and the "
        "TPOT target): " + "; ".join(say(e, c) for e, c in sorted(chat.items(), key=lambda kv: -kv[1])) + "."
    )
    if docs:
        text += (
            " With long documents in the traffic: "
            + "; ".join(say(e, c) for e, c in sorted(docs.items(), key=lambda kv: -kv[1]))
            + "."
        )
    return text


def seed_comparison(data: ReportData) -> str:
    """Does the seed's shape (vLLM several times an Ollama-like engine at 25-32 users) hold here?"""
    lv = measured_levels(data)
    engines = sorted(lv["engine"].unique())
    ref = ollama_like(engines)
    if "vllm" not in engines or ref is None:
        return "The study lacks vLLM or an Ollama-like llama.cpp engine, so the seed's ratio is not checked."
    users = headline_level(lv[lv["engine"].isin(["vllm", ref])])
    ratio = _at(lv, "vllm", users, "output_tok_s") / _at(lv, ref, users, "output_tok_s")
    claimed = SEED_VLLM_OVER_OLLAMA
    best_llama = lv[(lv["concurrency"] == users) & lv["engine"].str.startswith("llamacpp")]
    tuned = best_llama.sort_values("output_tok_s").iloc[-1] if len(best_llama) else None
    # same order as the claim (at least half of it) = reproduced; vLLM ahead by less = the direction only
    if ratio >= 0.5 * claimed:
        verdict = "reproduces"
    elif ratio > 1:
        verdict = "reproduces only the direction of"
    else:
        verdict = "does not reproduce"
    text = (
        f"The seed claims vLLM delivers about {fmt(claimed)} times Ollama's throughput at 25-32 users "
        f"({SEED_SOURCE}). Here, at {users} users, vLLM delivered {fmt(ratio)} times "
        f"{ref} (the Ollama-like configuration): this run **{verdict}** the seed's ratio."
    )
    if data.overhead is not None:
        text += overhead_gap_sentence(data, "vllm", ref, ratio)
    if tuned is not None and tuned.engine != ref:
        r2 = _at(lv, "vllm", users, "output_tok_s") / float(tuned.output_tok_s)
        moved = "narrows the gap substantially" if r2 < 0.75 * ratio else "changes the ratio little"
        text += (
            f" Against the best llama.cpp configuration in this study ({tuned.engine}) the ratio is {fmt(r2)}: "
            f"tuning llama.cpp's slots {moved} here."
        )
    return text

"""The working-set axis of shared documents (benchmarks/working_set.py): the users held fixed, the pool
of documents grown, each engine's prefix reuse measured against what an infinite cache would serve.

A compute cliff moves with the users; a KV-capacity cliff moves with the working set. The reuse
profiles of the study run at one pool size, so they cannot tell the two apart; this axis can. An
engine whose share of the possible reuse holds as the pool grows is limited by compute at that
load; one whose share falls has outgrown what its cache keeps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_names
from cliffbench.report.sections.common import fmt
from cliffbench.trace import Source

__all__ = ["HELD", "working_set_rows", "working_set_section", "working_set_sentence"]

#: the share of the possible reuse at the largest pool over the smallest's, at or above which the
#: cache is said to have kept the working set (under it, reusable tokens were computed again)
HELD = 0.8

_COLS = ["engine", "documents", "working_set_tokens", "cache_tokens", "cache_prompts", "served", "served_min",
         "served_max", "possible", "ttft_over_control", "ttft_over_control_min", "ttft_over_control_max",
         "repeats"]  # fmt: skip


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _median(values: list[Any]) -> tuple[float, float, float]:
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    return (float(np.median(v)), min(v), max(v)) if v else (math.nan, math.nan, math.nan)


def working_set_rows(data: ReportData) -> pd.DataFrame:
    """One row per reuse engine and pool of the stored benchmark: the share of the possible reuse
    served and TTFT p50 over the control's (medians over repeats and their range), by engine then pool."""
    if data.working_set is None:
        return pd.DataFrame(columns=_COLS)
    rows = []
    for s in data.working_set.data.get("summary", []):
        served, ttft = _median(s["served_of_possible"]), _median(s["ttft_p50_over_control"])
        rows.append({"engine": s["engine"], "documents": int(s["documents"]),
                     "working_set_tokens": int(s["working_set_tokens"]), "cache_tokens": float(s["cache_tokens"]),
                     "cache_prompts": _num(s.get("cache_prompts")), "possible": _median(s["hit_rate_theory"])[0],
                     "served": served[0], "served_min": served[1], "served_max": served[2],
                     "ttft_over_control": ttft[0], "ttft_over_control_min": ttft[1], "ttft_over_control_max": ttft[2],
                     "repeats": len(s["served_of_possible"])})  # fmt: skip
    return pd.DataFrame(rows, columns=_COLS).sort_values(["engine", "working_set_tokens"], ignore_index=True)


def _src(column: str, row: str) -> Source:
    return Source("benchmarks/results/working_set.json", column, row)


def _pct(x: float, lo: float, hi: float, row: str) -> str:
    src = _src("served_of_possible median [min-max over repeats]", row)
    if math.isnan(x):
        return "n/a"
    return f"{fmt(100 * x, 3, src)} % [{fmt(100 * lo, 3, src)}-{fmt(100 * hi, 3, src)}]"


def _engine_text(data: ReportData, eng: str, g: pd.DataFrame) -> str:
    names = engine_names(data)
    specs = data.results.engine_specs
    first, last = g.iloc[0], g.iloc[-1]
    row = f"{eng}, {int(first['documents'])}-{int(last['documents'])} documents"
    reuse = f"{specs[eng].reuse_text()}, " if eng in specs else ""
    cache = f"a KV cache of {fmt(float(first['cache_tokens']), 3, _src('cache_tokens', eng))} tokens"
    prompts = float(first["cache_prompts"])
    if math.isfinite(prompts) and prompts > 0:  # a slot keeps one prompt, its last: the cache counts prompts
        cache += f" that keeps one prompt per slot, {fmt(prompts, 3, _src('cache_prompts', eng))} in all"
    ratio = _src("ttft_p50_over_control median", row)
    text = (
        f"{names.get(eng, eng)} ({reuse}{cache}) served "
        f"{_pct(first['served'], first['served_min'], first['served_max'], row)} of the possible reuse at "
        f"{fmt(float(first['working_set_tokens']), src=_src('working_set_tokens', row))} tokens of documents and "
        f"{_pct(last['served'], last['served_min'], last['served_max'], row)} at "
        f"{fmt(float(last['working_set_tokens']), src=_src('working_set_tokens', row))}; its TTFT p50 was "
        f"{fmt(float(first['ttft_over_control']), 3, ratio)} then {fmt(float(last['ttft_over_control']), 3, ratio)} "
        "times its control's (the same engine, reuse off)."
    )
    verdict = _verdict(g)
    if verdict == "none":
        return text + " It served nothing from cache at the smallest pool, so the axis cannot tell its limit."
    held = fmt(100 * HELD, 2, Source("cliffbench.report.sections.working_set", "HELD"))
    lost = _lost(g)
    if verdict == "fell" and lost is not None:
        at = fmt(float(lost), src=_src("working_set_tokens", row))
        return text + (
            f" Its share fell once the pool reached {at} tokens (every repeat under {held} % of the smallest pool's "
            "least): a KV-capacity limit. The cache kept fewer of the documents than the pool holds, and prompts it "
            "could have served were computed again; more users on the same documents would move this cliff less "
            "than more documents would."
        )
    if verdict == "low":
        how = "one prompt per slot, reused only from an idle slot" if math.isfinite(prompts) else "how it keeps them"
        return text + (
            f" Its share held within the spread of its repeats, but under {held} % even at the smallest pool: what "
            f"limits it is how it keeps prompts ({how}), not the size of the working set."
        )
    text += (
        f" Its share held (no pool under {held} % of the smallest pool's in every repeat): at this load and these "
        "pools its limit is compute, not cache capacity."
    )
    p0, p1 = float(first["possible"]), float(last["possible"])
    if p1 < HELD * p0:  # the gain shrank with the workload's own reuse: a document sent once is in no cache
        src = _src("hit_rate_theory median", row)
        text += (
            f" What shrank its gain over reuse off is the possible reuse itself, {fmt(100 * p0, 2, src)} % then "
            f"{fmt(100 * p1, 2, src)} %: in a larger pool more documents are sent only once, and no cache serves those."
        )
    return text


def _verdict(g: pd.DataFrame) -> str:
    """One engine's rows (by pool): "none" (nothing served at the smallest pool), "fell" (a KV-capacity
    limit, `_lost`), "low" (under HELD from the smallest pool on, no fall) or "kept"."""
    base = float(g["served"].iloc[0])
    if math.isnan(base) or base <= 0:
        return "none"
    if _lost(g) is not None:
        return "fell"
    return "low" if base < HELD else "kept"


def _lost(g: pd.DataFrame) -> float | None:
    """The first pool's tokens where the share of every repeat fell under HELD x the smallest pool's
    least (a fall beyond the repeats' spread), else None."""
    floor = HELD * float(g["served_min"].iloc[0])
    fell = g[g["served_max"] < floor]
    return float(fell["working_set_tokens"].iloc[0]) if len(fell) else None


def working_set_section(data: ReportData) -> str:
    """Markdown for Appendix E: what the benchmark did and, per reuse engine, whether its reuse held."""
    rows = working_set_rows(data)
    bench = data.working_set
    if bench is None or rows.empty:
        return (
            "The working-set axis (`benchmarks/working_set.py`: the users fixed, the pool of shared documents "
            "grown) has not been measured for this report."
        )
    d = bench.data
    same_cpu = d.get("record", {}).get("cpu", {}).get("model") == data.results.manifest.cpu.model  # the envelope's
    src = Source(f"benchmarks/results/{bench.name}", "run")
    out = [
        f"**The working set against the cache.** Measured by `benchmarks/working_set.py` "
        f"(`benchmarks/results/{bench.name}`, {fmt(int(d['reps']), src=src)} repeats"
        + ("" if same_cpu else ", on another CPU than this study's")
        + f"): the `rag` profile at {fmt(int(d['users']), src=src)} users, {fmt(int(d['k']), src=src)} documents "
        f"of {fmt(int(d['doc_tokens']), src=src)} tokens per request, the pool grown from "
        f"{fmt(int(min(d['pools'])), src=src)} to {fmt(int(max(d['pools'])), src=src)} documents, each point "
        "with a pool no earlier point had sent. A compute cliff moves with the users, a KV-capacity cliff with "
        "the working set; the share of the possible reuse an engine serves as the pool grows tells them apart."
    ]
    for eng, g in rows.groupby("engine", sort=True):
        out += ["", "- " + _engine_text(data, str(eng), g.reset_index(drop=True))]
    return "\n".join(out)


def working_set_sentence(data: ReportData) -> str:
    """One sentence for the body's reuse section: where the working-set axis is and what it found."""
    rows = working_set_rows(data)
    if rows.empty:
        return ""
    kinds: dict[str, list[str]] = {"kept": [], "low": [], "fell": [], "none": []}
    names = engine_names(data)
    for eng, g in rows.groupby("engine", sort=True):
        kinds[_verdict(g.reset_index(drop=True))].append(names.get(str(eng), str(eng)))
    words = {
        "kept": "kept {poss} share of the possible reuse",
        "low": "served well under the possible reuse from the smallest pool on, held back by how {subj} "
        "keep{s} prompts",
        "fell": "lost {poss} share as the pool grew, a KV-capacity limit",
        "none": "served nothing from cache at the smallest pool",
    }
    parts = [
        f"{' and '.join(who)} "
        + words[k].format(
            poss="its" if len(who) == 1 else "their",
            subj="it" if len(who) == 1 else "they",
            s="s" if len(who) == 1 else "",
        )
        for k, who in kinds.items()
        if who
    ]
    return f"With the users fixed and the pool of documents grown, {'; '.join(parts)} (Appendix E)."

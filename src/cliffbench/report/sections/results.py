"""The result tables: engine configuration, every level, KV memory (the tuning sweep: tuning.py)."""

from __future__ import annotations

import pandas as pd

from cliffbench.bench.metrics.level import min_n_for_ci
from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.report.data import ReportData
from cliffbench.report.sections.common import fmt, measured_levels

__all__ = ["config_table", "levels_table", "memory_section"]


def config_table(data: ReportData) -> str:
    """Engine configuration as measured (from the manifest): shown beside every result."""
    engines = data.results.manifest.engines
    keys = [
        "kind",
        "engine_version",
        "dtype",
        "dtype_setting",
        "precision",
        "slots",
        "n_ctx",
        "n_ctx_seq",
        "kv_unified",
        "n_threads",
        "omp_threads_bind",
        "enforce_eager",
        "max_num_seqs",
        "block_size",
        "kv_cache_bytes",
        "gguf",
    ]
    names = list(engines)
    rows = ["| setting | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        if not any(k in engines[n] for n in names):
            continue
        cells = []
        for n in names:
            v = engines[n].get(k, "")
            cells.append(str(v).split("/")[-1] if k == "gguf" else str(v))
        rows.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def levels_table(data: ReportData, level_set: str = "chat") -> str:
    """One row per engine and users: medians over repeats with their range, the pooled SLO
    percentile with its interval, and the level's verdict."""
    lv = measured_levels(data, level_set)
    judge = SloJudge.of(data.results.study.slo)
    q = judge.percentile("ttft_s")
    head = (
        f"| engine | users | repeats | out tok/s median (range) | TTFT p50 s | TTFT p{q:g} s pooled (95% CI) "
        "| TPOT p50 s | ok/submitted | SLO |"
    )
    rows = [head, "|" + "---|" * 9]
    busy = 0
    for _, r in lv.iterrows():
        tok = fmt(r.output_tok_s)
        if int(r.repeats) > 1:
            tok += f" ({fmt(r.output_tok_s_min)}-{fmt(r.output_tok_s_max)})"
        ci = "n too small" if pd.isna(r.get("slo_ttft_s_lo")) else f"{fmt(r.slo_ttft_s_lo)}-{fmt(r.slo_ttft_s_hi)}"
        flags = f", {int(r.busy_repeats)} busy" if int(r.get("busy_repeats", 0)) else ""
        busy += int(r.get("busy_repeats", 0))
        rows.append(
            f"| {r.engine} | {int(r.concurrency)} | {int(r.ok_repeats)}/{int(r.repeats)}{flags} | {tok} "
            f"| {fmt(r.ttft_s_p50)} | {fmt(r.get('slo_ttft_s'))} ({ci}) | {fmt(r.tpot_s_p50)} "
            f"| {int(r.n_submitted - r.n_missed_requests)}/{int(r.n_submitted)} | {r.slo_verdict or 'not judged'} |"
        )
    rows.append("")
    rows.append(
        f"SLO: {judge.text()} over the steady requests of every repeat (a failed request counts as a miss); "
        "`meets` when the interval's upper end is within budget, `misses` when its lower end is above it, "
        '`uncertain` otherwise ("n too small": no distribution-free 95 % interval exists at that many '
        f"requests; p{q:g} needs {min_n_for_ci(q)})."
    )
    if busy:
        rows.append(
            f" {busy} stored repeat(s) ran while other processes used more than "
            f"{fmt(data.results.study.busy.max_foreign_cores)} cores even after re-running: marked `busy`."
        )
    for key, problem in data.results.damaged.items():
        rows.append(f" Level {key} is damaged on disk and left out ({problem}); `cliffbench run` measures it again.")
    levels = data.results.levels
    failed = levels[levels["status"] != "ok"]
    if len(failed):
        rows.append("")
        rows.append(
            f"{len(failed)} level run(s) failed and count as SLO misses: "
            + "; ".join(
                f"{k} ({str(e).splitlines()[0][:120]})" for k, e in zip(failed.level_key, failed.error, strict=True)
            )
        )
    return "\n".join(rows)


def memory_section(data: ReportData) -> str:
    mem = data.results.memory
    if mem.empty:
        return "No memory samples were stored."
    g = mem.groupby(["engine", "concurrency"]).agg(reserved=("reserved_bytes", "max"), live=("live_bytes", "max"))
    g = g.reset_index()
    top = g.sort_values("concurrency").groupby("engine").tail(1)
    mib = 2**20
    lines = [
        "llama.cpp reserves its whole KV cache when the context is created: `slots x ctx_per_slot` tokens, "
        "each slot a fixed region whether it holds 10 tokens or 1,000 (with `kv_unified` off). vLLM carves "
        "its KV pool into fixed-size blocks and gives a sequence a block only when its tokens need one, "
        "so memory follows the live tokens, not the worst case.",
        "",
        "| engine | users | KV reserved MiB | peak KV holding live tokens MiB | share in use |",
        "|---|---|---|---|---|",
    ]
    for _, r in top.iterrows():
        share = r.live / r.reserved if r.reserved else float("nan")
        lines.append(
            f"| {r.engine} | {int(r.concurrency)} | {fmt(r.reserved / mib)} | {fmt(r.live / mib)} "
            f"| {fmt(100 * share, 2)}% |"
        )
    return "\n".join(lines)

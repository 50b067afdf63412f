"""The published numbers against physics: the claims' ceilings, the seed's shapes, the measured
efficiency, and the published setup as a GPU study."""

from __future__ import annotations

import pandas as pd

from cliffbench.audit.claims import audit_claims
from cliffbench.audit.seed import claim, seed_users
from cliffbench.audit.shape_verdicts import GROWTH_CLASSES, efficiency, local_hardware_of, shape_verdicts
from cliffbench.report.data import GPU_STUDY, ReportData
from cliffbench.report.sections.common import fmt

__all__ = ["claims_section", "efficiency_section", "gpu_study_section", "shapes_section"]


def claims_section(data: ReportData) -> str:
    """The published numbers (data/published/claims.csv) against the roofline ceilings."""
    audit = audit_claims(data.claims)
    rows = [
        "| claim | engine | hardware | users | metric | published | ceiling tok/s | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in audit.iterrows():
        rows.append(
            f"| {r.claim_id} | {r.engine} | {r.hardware} | {r.concurrency} | {r.metric} | {fmt(r.value)} {r.unit} "
            f"| {fmt(r.ceiling_tok_s)} | {r.verdict} |"
        )
    rows.append("")
    rows.append("How each ceiling was computed:")
    rows.append("")
    rows += [f"- **{r.claim_id}**: {r.arithmetic}" for _, r in audit.iterrows()]
    return "\n".join(rows)


def shapes_section(data: ReportData, level_set: str = "chat") -> str:
    """The seed's shapes against this study's (cliffbench.audit.shape_verdicts), with the roofline reasons."""
    shapes = shape_verdicts(data.results, level_set, data.claims)
    if not shapes:
        return "The study lacks vLLM or a llama.cpp engine at a common level, so no shape is compared."
    bounds = ", ".join(f"{name} below x{b:g}" for b, name in GROWTH_CLASSES[:-1])

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| shape | published | measured here | verdict |", "|---|---|---|---|"]
    rows += [f"| {cell(s.shape)} | {cell(s.published)} | {cell(s.measured)} | **{s.verdict}** |" for s in shapes]
    n_ok = sum(s.verdict == "reproduced" for s in shapes)
    n_small = sum(s.verdict.startswith("n too small") for s in shapes)
    seed = claim(data.claims, "vllm", "output_tok_s_total", seed_users(data.claims))
    setup = f"{seed.hardware} serving {seed.model}" if seed else "the published setup"
    rows += [
        "",
        f"{n_ok} of {len(shapes)} shapes reproduce"
        + (f"; {n_small} cannot be judged for want of requests" if n_small else "")
        + f". A growth factor is classed ({bounds}, else {GROWTH_CLASSES[-1][1]}) and reproduces when the "
        "measured one falls in the published class or one further the same way; a ratio reproduces from half "
        "the published one up, on the side of 1 the source claims, and is the direction only below that. "
        f"Magnitudes cannot transfer from {setup} to this machine, so a result more extreme in the claimed "
        "direction counts as reproduced. Each side uses the same statistic (a p50 against a typical value, a "
        "p99 against a p99 or a spike, a peak against a peak). Why each shape looks as it does:",
        "",
    ]
    rows += [f"- **{s.shape}**: {s.reason}." for s in shapes]
    return "\n".join(rows)


def _binding_runs(levels: pd.DataFrame) -> str:
    """Which roof binds over an engine's levels, as runs: 'memory at 1-2 users, compute from 4'."""
    runs: list[tuple[str, int, int]] = []
    for users, roof in zip(levels["concurrency"].astype(int), levels["binding"], strict=True):
        if runs and runs[-1][0] == roof:
            runs[-1] = (roof, runs[-1][1], users)
        else:
            runs.append((str(roof), users, users))
    if len(runs) == 1:
        return f"{runs[0][0]}-bound at every level"
    parts = [f"{roof}-bound at {lo}" + (f"-{hi}" if hi != lo else "") for roof, lo, hi in runs[:-1]]
    roof, lo, _ = runs[-1]
    return ", ".join(parts) + f", {roof}-bound from {lo} users"


def efficiency_section(data: ReportData, level_set: str = "chat") -> str:
    """Measured throughput against the local roofline (the lower of the memory and compute roofs),
    per engine at its lowest and highest level, and which roof binds at every level."""
    hw = local_hardware_of(data.results)
    eff = efficiency(data.results, level_set)
    if hw is None or eff.empty:
        return (
            "This study's manifest holds no hardware probe (it was run before probes were stored), so the "
            "measured efficiency is not computed; `cliffbench run` on the study adds the probe."
        )
    rates = eff.drop_duplicates("precision").sort_values("precision")
    text = (
        f"The local ceiling comes from the probes stored with the study: {fmt(hw.memory_bandwidth_gb_s)} GB/s "
        f"memory bandwidth (STREAM-like triad), {fmt(hw.fp32_tflops)} TFLOP/s fp32 and {fmt(hw.bf16_tflops)} "
        f"TFLOP/s bf16 matmul ({hw.note}). Each level's ceiling is the lower of two roofs for a batch of "
        "min(users, slots) sequences at the level's mean context: the memory roof reads the engine's weights "
        "and every sequence's KV cache once per step; the compute roof costs each token 2 FLOP per parameter "
        "plus 4 x layers x hidden size x context for attention, at the probed matmul rate of the engine's "
        "precision:\n\n"
        + "".join(f"- {r.precision}: {fmt(r.compute_tflops)} TFLOP/s, {r.compute_source}\n" for r in rates.itertuples())
        + "\n| engine | precision | users | batch | output tok/s | memory roof tok/s | compute roof tok/s "
        "| binds | efficiency |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    over = eff[eff["efficiency"] > 1]
    if len(over):
        text = (
            f"**{len(over)} of {len(eff)} levels exceed 100%**, which no engine can do: the probes underestimate "
            "the bandwidth or matmul rate the engines get (a busy machine while probing, caches holding part of "
            "the weights, or a stand-in rate below the engine's own kernels), so read these efficiencies as "
            "relative, not absolute.\n\n" + text
        )
    binds = []
    for engine, g in eff.groupby("engine"):
        g = g.sort_values("concurrency")
        binds.append(f"- **{engine}** ({g['precision'].iloc[0]}): {_binding_runs(g)}")
        for r in (g.iloc[0], g.iloc[-1]):
            text += (
                f"| {engine} | {r.precision} | {int(r.concurrency)} | {int(r.batch)} | {fmt(r.output_tok_s)} "
                f"| {fmt(r.memory_ceiling_tok_s)} | {fmt(r.compute_ceiling_tok_s)} | {r.binding} "
                f"| {r.efficiency:.0%} |\n"
            )
    return text + "\nWhich roof binds, level by level (users):\n\n" + "\n".join(binds) + "\n"


def gpu_study_section(data: ReportData) -> str:
    """The published setup as a runnable study: its plan, memory and roofline duration on its GPU."""
    gpu = data.gpu_study
    if gpu is None:
        return f"No GPU study stored (`{GPU_STUDY.as_posix()}` is missing), so the published setup is not estimated."
    hw, ls = gpu.hardware, gpu.spec.level_sets[0]
    gpus = data.results.manifest.gpu
    rows = [
        f"`{gpu.path}` reproduces the "
        f"published setup on {hw.name} ({fmt(hw.memory_gib)} GiB, {fmt(hw.memory_bandwidth_gb_s)} GB/s): "
        f"users {', '.join(str(c) for c in ls.load.concurrency)}; prompts of {ls.workload.prompt.mean} and "
        f"answers of {ls.workload.output.mean} tokens (the sources state neither). Its models are the "
        "model-scale presets (`cliffbench prepare-model --preset llama-3.1-8b`: Llama shapes, synthetic "
        "weights) unless real weights are given. It validates and dry-runs on any machine and runs where "
        "a CUDA GPU exists; "
        + (
            f"the study's machine has {', '.join(g.name for g in gpus)}, but its results are not in this report."
            if gpus
            else "the study's machine has none, so its results are not in this report."
        )
        + " The dry run's estimate:",
        "",
        "| engine | precision | weights GiB | KV reserved GiB | batch cap | duration at the ceiling |",
        "|---|---|---|---|---|---|",
    ]
    rows += [
        f"| {e.engine} | {e.precision} | {fmt(e.weights_gib)} | {fmt(e.kv_gib)} | {e.batch_cap} "
        f"| {fmt(e.duration_s / 60)} min |"
        for e in gpu.estimate
    ]
    return "\n".join(rows)

"""The published numbers against physics: the claims' ceilings, the seed's shapes, the measured
efficiency, and the published setup as a GPU study."""

from __future__ import annotations

from cliffbench.audit.claims import audit_claims
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
    rows = ["| shape | published | measured here | verdict |", "|---|---|---|---|"]
    rows += [f"| {s.shape} | {s.published} | {s.measured} | **{s.verdict}** |" for s in shapes]
    n_ok = sum(s.verdict == "reproduced" for s in shapes)
    rows += [
        "",
        f"{n_ok} of {len(shapes)} shapes reproduce. A growth factor is classed ({bounds}, else "
        f"{GROWTH_CLASSES[-1][1]}) and a shape reproduces when both sides fall in the same class, since "
        "magnitudes cannot transfer from an A100 serving 8B to this machine. Why each shape looks as it does:",
        "",
    ]
    rows += [f"- **{s.shape}**: {s.reason}." for s in shapes]
    return "\n".join(rows)


def efficiency_section(data: ReportData, level_set: str = "chat") -> str:
    """Measured throughput against the local roofline, per engine at its lowest and highest level."""
    hw = local_hardware_of(data.results)
    eff = efficiency(data.results, level_set)
    if hw is None or eff.empty:
        return (
            "This study's manifest holds no hardware probe (it was run before probes were stored), so the "
            "measured efficiency is not computed; `cliffbench run` on the study adds the probe."
        )
    text = (
        f"The local ceiling comes from the probes stored with the study: {fmt(hw.memory_bandwidth_gb_s)} GB/s "
        f"memory bandwidth (STREAM-like triad), {fmt(hw.fp32_tflops)} TFLOP/s fp32 and {fmt(hw.bf16_tflops)} "
        f"TFLOP/s bf16 matmul ({hw.note}). Each level's ceiling reads the engine's weights once per step "
        "for a batch of min(users, slots) sequences at the level's mean context.\n\n"
        "| engine | precision | users | batch | output tok/s | ceiling tok/s | efficiency |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    over = eff[eff["efficiency"] > 1]
    if len(over):
        text = (
            f"**{len(over)} of {len(eff)} levels exceed 100%**, which no engine can do: the probe underestimates "
            "the bandwidth the engines get (a busy machine while probing, or caches holding part of the "
            "weights), so read these efficiencies as relative, not absolute.\n\n" + text
        )
    for engine, g in eff.groupby("engine"):
        g = g.sort_values("concurrency")
        for r in (g.iloc[0], g.iloc[-1]):
            text += (
                f"| {engine} | {r.precision} | {int(r.concurrency)} | {int(r.batch)} | {fmt(r.output_tok_s)} "
                f"| {fmt(r.ceiling_tok_s)} | {r.efficiency:.0%} |\n"
            )
    return text


def gpu_study_section(data: ReportData) -> str:
    """The published setup as a runnable study: its plan, memory and roofline duration on its GPU."""
    gpu = data.gpu_study
    if gpu is None:
        return f"No GPU study stored (`{GPU_STUDY.as_posix()}` is missing), so the published setup is not estimated."
    hw, ls = gpu.hardware, gpu.spec.level_sets[0]
    rows = [
        f"`{gpu.path}` reproduces the "
        f"published setup on {hw.name} ({fmt(hw.memory_gib)} GiB, {fmt(hw.memory_bandwidth_gb_s)} GB/s): "
        f"users {', '.join(str(c) for c in ls.load.concurrency)}; prompts of {ls.workload.prompt.mean} and "
        f"answers of {ls.workload.output.mean} tokens (the sources state neither). Its models are the "
        "model-scale presets (`cliffbench prepare-model --preset llama-3.1-8b`: Llama shapes, synthetic "
        "weights) unless real weights are given. It validates and dry-runs on any machine and runs where "
        "a CUDA GPU exists; this machine has none, so its results are not in this report. The dry run's "
        "estimate:",
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

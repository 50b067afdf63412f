"""Engine tuning alternatives, measured side by side (the study files keep the chosen tuning).

vLLM on CPU: OpenMP binding (vLLM's default `auto` keeps one core for the front end vs `all`),
fp32 vs bf16, eager vs compiled (start-up time too). llama.cpp: Q4_1 vs F32 weights, unified KV
on/off for slots. Each variant serves the same closed-loop load (c users x 2 requests, 32-token
prompts, 64-token outputs). Writes benchmarks/results/engine_tuning.json.

    .venv/bin/python benchmarks/engine_tuning.py [--concurrency 1,8,32] [--skip-compiled]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from cliffbench.bench.loadgen import run_level
from cliffbench.bench.provenance import collect_provenance
from cliffbench.bench.study import WorkloadSpec
from cliffbench.bench.workload import build_requests
from cliffbench.engines import make_engine
from cliffbench.engines.specs import LlamaCppSlotsSpec, VllmSpec
from cliffbench.models import prepare_model
from cliffbench.models.spec import ModelSpec
from cliffbench.models.tokenizer import model_tokenizer

OUT = Path(__file__).parent / "results" / "engine_tuning.json"


async def measure(spec: Any, levels: list[int], reqs: dict[int, list[Any]]) -> list[dict[str, Any]]:
    engine = make_engine(spec)
    t0 = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - t0
    rows = []
    try:
        await run_level(engine, reqs[1][:1], concurrency=1)  # warm-up
        for c in levels:
            run = await run_level(engine, reqs[c], concurrency=c)
            toks = sum(r.output_tokens for r in run.records if r.status == "ok")
            first = min(r.t_submit_s for r in run.records)
            last = max(r.token_times_s[-1] for r in run.records if r.token_times_s)
            rows.append(
                {
                    "variant": spec.name,
                    "concurrency": c,
                    "output_tok_s": toks / (last - first),
                    "start_s": start_s,
                    "config": engine.describe(),
                }
            )
            print(f"{spec.name:28s} c={c:3d}: {toks / (last - first):7.1f} tok/s  (start {start_s:.0f} s)", flush=True)
    finally:
        await engine.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--skip-compiled", action="store_true", help="skip the compiled vLLM variant (~2 min start)")
    a = ap.parse_args()
    levels = [int(x) for x in a.concurrency.split(",")]
    prepare_model()
    tok = model_tokenizer([ModelSpec()])
    wl = WorkloadSpec(kind="fixed", prompt={"mean": 32}, output={"mean": 64})
    reqs = {c: build_requests(wl.model_copy(update={"seed": c}), 2 * c, tok) for c in sorted({1, *levels})}
    base = {"max_model_len": 512, "kv_cache_gib": 1.0}
    variants: list[Any] = [
        VllmSpec(label="vllm-fp32-bind-all-eager", omp_threads_bind="all", **base),
        VllmSpec(label="vllm-fp32-bind-auto-eager", omp_threads_bind="auto", **base),
        VllmSpec(label="vllm-bf16-bind-all-eager", dtype="bfloat16", omp_threads_bind="all", **base),
    ]
    if not a.skip_compiled:
        variants.append(VllmSpec(label="vllm-fp32-bind-all-compiled", enforce_eager=False, **base))
    variants += [
        LlamaCppSlotsSpec(label="slots32-q4_1", slots=32, ctx_per_slot=256),
        LlamaCppSlotsSpec(label="slots32-f32", slots=32, ctx_per_slot=256, model=ModelSpec(gguf_variant="f32")),
        LlamaCppSlotsSpec(label="slots32-q4_1-kv-unified", slots=32, ctx_per_slot=256, kv_unified=True),
    ]
    rows: list[dict[str, Any]] = []
    for spec in variants:
        rows += asyncio.run(measure(spec, levels, reqs))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": collect_provenance(), "rows": rows}, indent=2, default=str))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

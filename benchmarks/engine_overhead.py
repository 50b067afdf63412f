"""Adapter overhead: each cliffbench engine adapter vs the engine's own raw loop, same load.

- vllm: c concurrent `VllmEngine.stream` calls vs `vllm.LLM.generate` of the same c prompts
- llamacpp-slots (slots = c): c concurrent streams vs a bare batched `llama_decode` loop
- llamacpp-serial: c concurrent streams (queued) vs the bare high-level `Llama.generate` per prompt

Output tok/s = all output tokens / wall time from first submit to last token. Prompts are the
same token ids for both sides. Writes benchmarks/results/engine_overhead.json.

    .venv/bin/python benchmarks/engine_overhead.py [--concurrency 1,8,32] [--output-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np

from cliffbench.bench.provenance import collect_provenance
from cliffbench.bench.study import WorkloadSpec
from cliffbench.bench.workload import build_requests
from cliffbench.engines import GenRequest, make_engine
from cliffbench.engines.specs import LlamaCppSerialSpec, LlamaCppSlotsSpec, VllmSpec
from cliffbench.models import prepare_model, resolve_model
from cliffbench.models.spec import ModelSpec
from cliffbench.models.tokenizer import model_tokenizer

OUT = Path(__file__).parent / "results" / "engine_overhead.json"
# fp32 on both sides: the adapter-vs-raw ratio, not the fastest precision, is the question here
VLLM_DTYPE: Final = "float32"  # both sides: LLM takes no "best"
VLLM = VllmSpec(dtype=VLLM_DTYPE, max_model_len=512, kv_cache_gib=1.0, max_num_seqs=256)


async def adapter_tok_s(engine: Any, reqs: list[GenRequest]) -> float:
    async def one(r: GenRequest) -> int:
        n = 0
        async for _ in engine.stream(r):
            n += 1
        return n

    t0 = time.perf_counter()
    n = sum(await asyncio.gather(*(one(r) for r in reqs)))
    return n / (time.perf_counter() - t0)


async def run_adapter(spec: Any, reqs: list[GenRequest]) -> float:
    engine = make_engine(spec)
    await engine.start()
    try:
        await adapter_tok_s(engine, reqs[:1])  # warm-up
        return await adapter_tok_s(engine, reqs)
    finally:
        await engine.stop()


def adapter_sync(spec: Any, reqs: list[GenRequest]) -> float:
    return asyncio.run(run_adapter(spec, reqs))


def in_thread(fn: Any, *args: Any) -> float:
    """Run a raw loop in a thread of its own, as the adapter's worker runs (one OpenMP team each)."""
    out: list[float] = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    t.join()
    return out[0]


def interleaved(raw: Any, adapter: Any, reps: int) -> tuple[float, float]:
    """Alternate raw and adapter runs (the machine is noisy); medians of each."""
    r, a = [], []
    for _ in range(reps):
        r.append(raw())
        a.append(adapter())
    return float(np.median(a)), float(np.median(r))


def raw_vllm(all_reqs: dict[int, list[GenRequest]], max_tokens: int, reps: int) -> dict[int, float]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    hf, _, _ = resolve_model(VLLM.model)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{len(os.sched_getaffinity(0)) - 1}"
    llm = LLM(
        model=str(hf),
        dtype=VLLM_DTYPE,
        max_model_len=VLLM.max_model_len,
        enforce_eager=True,
        block_size=VLLM.block_size,
        kv_cache_memory_bytes=int(VLLM.kv_cache_gib * 2**30),
        max_num_seqs=VLLM.max_num_seqs,
        seed=0,
    )
    sp = SamplingParams(
        temperature=0.0, max_tokens=max_tokens, min_tokens=max_tokens, ignore_eos=True, detokenize=False
    )
    out = {}
    try:
        llm.generate([TokensPrompt(prompt_token_ids=list(all_reqs[1][0].prompt_token_ids))], sp, use_tqdm=False)
        for c, reqs in all_reqs.items():
            prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_token_ids)) for r in reqs]
            runs = []
            for _ in range(reps):
                t0 = time.perf_counter()
                res = llm.generate(prompts, sp, use_tqdm=False)
                runs.append(sum(len(o.outputs[0].token_ids) for o in res) / (time.perf_counter() - t0))
            out[c] = float(np.median(runs))
    finally:
        llm.llm_engine.engine_core.shutdown()
    return out


def raw_llamacpp_batched(reqs: list[GenRequest], n_threads: int) -> float:
    import llama_cpp as lc

    _, gguf, _ = resolve_model(LlamaCppSlotsSpec().model)
    n = len(reqs)
    lc.llama_backend_init()
    model = lc.llama_model_load_from_file(str(gguf).encode(), lc.llama_model_default_params())
    cp = lc.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 512 * n, 512, 512, n
    cp.n_threads = cp.n_threads_batch = n_threads
    cp.kv_unified = False
    ctx = lc.llama_init_from_model(model, cp)
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    batch = lc.llama_batch_init(512, 0, 1)

    def argmax(i: int) -> int:
        ptr = lc.llama_get_logits_ith(ctx, i)
        return int(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (n_vocab,)).argmax())

    def put(k: int, tok: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, pos, 1
        batch.seq_id[k][0], batch.logits[k] = seq, logits

    t0 = time.perf_counter()
    last, pos, produced = [0] * n, [0] * n, 0
    # prefill: every prompt's tokens packed into n_batch-sized llama_decode calls, as llama-server does
    flat = [(s, k, tok) for s, r in enumerate(reqs) for k, tok in enumerate(r.prompt_token_ids)]
    for start in range(0, len(flat), 512):
        chunk = flat[start : start + 512]
        ends = {}
        for i, (s, k, tok) in enumerate(chunk):
            is_last = k == len(reqs[s].prompt_token_ids) - 1
            put(i, tok, k, s, is_last)
            if is_last:
                ends[s] = i
        batch.n_tokens = len(chunk)
        lc.llama_decode(ctx, batch)
        for s, i in ends.items():
            last[s], pos[s] = argmax(i), len(reqs[s].prompt_token_ids)
            produced += 1
    for _ in range(reqs[0].max_tokens - 1):
        for s in range(n):
            put(s, last[s], pos[s], s, True)
            pos[s] += 1
        batch.n_tokens = n
        lc.llama_decode(ctx, batch)
        for s in range(n):
            last[s] = argmax(s)
        produced += n
    wall = time.perf_counter() - t0
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    lc.llama_model_free(model)
    return produced / wall


def raw_llamacpp_highlevel(reqs: list[GenRequest], n_threads: int) -> float:
    from llama_cpp import Llama

    _, gguf, _ = resolve_model(LlamaCppSerialSpec().model)
    llm = Llama(str(gguf), n_ctx=512, n_batch=512, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
    t0, produced = time.perf_counter(), 0
    for r in reqs:
        for k, _tok in enumerate(llm.generate(list(r.prompt_token_ids), top_k=1, temp=0.0, reset=True)):
            produced += 1
            if k + 1 == r.max_tokens:
                break
    wall = time.perf_counter() - t0
    llm.close()
    return produced / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--output-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions per level (medians)")
    ap.add_argument("--engines", default="llamacpp-serial,llamacpp-slots,vllm")
    a = ap.parse_args()
    levels = [int(x) for x in a.concurrency.split(",")]
    prepare_model()
    tok = model_tokenizer([ModelSpec()])
    wl = WorkloadSpec(kind="fixed", prompt={"mean": 32}, output={"mean": a.output_tokens})
    reqs = {c: build_requests(wl.model_copy(update={"seed": c}), c, tok) for c in levels}
    threads = len(os.sched_getaffinity(0))
    rows: list[dict[str, Any]] = []

    def add(engine: str, c: int, adapter: float, raw: float) -> None:
        rows.append(
            {"engine": engine, "concurrency": c, "adapter_tok_s": adapter, "raw_tok_s": raw, "ratio": adapter / raw}
        )
        print(
            f"{engine:16s} c={c:3d}: adapter {adapter:7.1f} tok/s  raw {raw:7.1f} tok/s  ratio {adapter / raw:.3f}",
            flush=True,
        )

    wanted = a.engines.split(",")
    for c in levels:
        if "llamacpp-serial" in wanted:
            add("llamacpp-serial", c, *interleaved(
                partial(in_thread, raw_llamacpp_highlevel, reqs[c], threads),
                partial(adapter_sync, LlamaCppSerialSpec(n_ctx=512), reqs[c]), a.reps))  # fmt: skip
        if "llamacpp-slots" in wanted:
            add("llamacpp-slots", c, *interleaved(
                partial(in_thread, raw_llamacpp_batched, reqs[c], threads),
                partial(adapter_sync, LlamaCppSlotsSpec(slots=c, ctx_per_slot=512), reqs[c]), a.reps))  # fmt: skip
    if "vllm" in wanted:

        async def vllm_adapter() -> dict[int, float]:
            engine = make_engine(VLLM)
            await engine.start()
            try:
                await adapter_tok_s(engine, reqs[levels[0]][:1])
                return {
                    c: float(np.median([await adapter_tok_s(engine, reqs[c]) for _ in range(a.reps)])) for c in levels
                }
            finally:
                await engine.stop()

        adapted = asyncio.run(vllm_adapter())
        raw_v = raw_vllm(reqs, a.output_tokens, a.reps)
        for c in levels:
            add("vllm", c, adapted[c], raw_v[c])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if OUT.is_file():  # keep the other engines' rows when only some engines were re-measured
        measured = {r["engine"] for r in rows}
        rows = [r for r in json.loads(OUT.read_text())["rows"] if r["engine"] not in measured] + rows
    OUT.write_text(
        json.dumps({"machine": collect_provenance(), "output_tokens": a.output_tokens, "rows": rows}, indent=2)
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

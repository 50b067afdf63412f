"""Harness overhead, measured through the path `cliffbench run` takes: kit vs the engine's raw loop.

Kit: the engine built from the default study's own spec (`make_engine`), driven by `run_level`
with every probe on (lag / GIL-wait probe thread, KV-memory sampler) and the CLI's live progress
display (rich, redrawn from its own thread) fed by `on_record`, exactly as `cliffbench run` does.
Raw: the same requests through the engine's own loop (loaded once and warm, like the kit's):
- vllm: `LLM.generate` (same dtype, binding, eager, block size, KV budget), one call per wave
- llamacpp-slots N / llamacpp-serial: a bare batched `llama_decode` loop over waves of N
  sequences (N = 1 for serial), greedy argmax, same GGUF, context per slot and threads.

Per engine configuration and user count, the variants run interleaved in a rotated order, repeat
after repeat (raw, kit with every probe, and kit with each probe switched off in turn), so slow
drift of the machine hits every variant alike. Output tok/s = all output tokens / (last token -
first submit). Medians over repeats and their spread (min-max) are printed; every run is kept in
benchmarks/results/engine_overhead.json with the load average before it.

    .venv/bin/python benchmarks/engine_overhead.py [--engines vllm,llamacpp-slots-8] [--users 1,8,32] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
from rich.console import Console

from cliffbench.bench.load.driver import Probes, run_level
from cliffbench.bench.progress.terminal import ProgressReporter, run_progress
from cliffbench.bench.spec.study import load_study
from cliffbench.bench.store.provenance import collect_provenance
from cliffbench.bench.workload.requests import build_requests
from cliffbench.config import PROJECT_ROOT
from cliffbench.engines import Engine, GenRequest, make_engine
from cliffbench.engines.llamacpp import FLASH_ATTN_TYPE
from cliffbench.engines.specs import EngineSpec, LlamaCppSpec, VllmSpec, omp_bind
from cliffbench.models import prepare_model, resolve_model
from cliffbench.models.spec import ModelSpec
from cliffbench.models.tokenizer import model_tokenizer

OUT = Path(__file__).parent / "results" / "engine_overhead.json"
STUDY = PROJECT_ROOT / "studies" / "default.yaml"
KIT_VARIANTS: dict[str, tuple[Probes, bool]] = {  # name -> (probes, live progress display)
    "kit": (Probes(), True),
    "kit-no-lag-probe": (Probes(lag=False), True),
    "kit-no-memory-sampler": (Probes(memory=False), True),
    "kit-no-progress": (Probes(), False),
}


def configs() -> dict[str, EngineSpec]:
    """The default study's engines, plus llamacpp-slots with 8 slots (the same spec, 8 slots)."""
    engines = {e.name: e for e in load_study(STUDY).engines}
    four = engines["llamacpp-slots-4"]
    engines["llamacpp-slots-8"] = four.model_copy(update={"label": "llamacpp-slots-8", "slots": 8})
    return engines


def n_requests(spec: EngineSpec, users: int) -> int:
    """One wave per user, at least 2 requests (1 user: 2 in a row); serial holds 8 at most (it
    runs one at a time, so more users only queue the same work)."""
    n = max(users, 2)
    return min(n, 8) if spec.kind == "llamacpp-serial" else n


def _tok_s(submits: list[float], lasts: list[float], tokens: int) -> float:
    return tokens / (max(lasts) - min(submits))


# -- kit: the path of `cliffbench run` ---------------------------------------------------------
async def kit_level(engine: Engine, reqs: list[GenRequest], users: int, probes: Probes, progress: bool) -> float:
    display = run_progress(Console(file=open(os.devnull, "w"), force_terminal=True, width=120))  # noqa: SIM115
    reporter = ProgressReporter(display)
    with display if progress else contextlib.nullcontext():
        if progress:
            reporter.level_started("benchmark", len(reqs))
        run = await run_level(
            engine,
            reqs,
            concurrency=users,
            probes=probes,
            on_record=reporter.request_done if progress else None,
        )
    records = [r for r in run.records if r.status == "ok"]
    if len(records) != len(reqs):
        raise RuntimeError(f"{len(reqs) - len(records)} requests failed: {run.records[0].error}")
    return _tok_s(
        [r.t_submit_s for r in records], [r.token_times_s[-1] for r in records], sum(r.output_tokens for r in records)
    )


# -- raw loops ---------------------------------------------------------------------------------
class RawVllm:
    """`LLM.generate` with the kit spec's settings; one generate call per wave of `users` prompts."""

    def __init__(self, spec: VllmSpec) -> None:
        from vllm import LLM

        hf, _, _ = resolve_model(spec.model)
        bind = omp_bind(spec.omp_threads_bind)
        if bind is not None:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
        self.llm = LLM(
            model=str(hf),
            dtype=cast(Any, spec.dtype_on()),
            max_model_len=spec.max_model_len,
            enforce_eager=spec.enforce_eager,
            block_size=spec.block_size,
            kv_cache_memory_bytes=int(spec.kv_cache_gib * 2**30),
            max_num_seqs=spec.max_num_seqs,
            enable_prefix_caching=spec.enable_prefix_caching,
            seed=0,
        )

    def __call__(self, reqs: list[GenRequest], users: int) -> float:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sp = SamplingParams(
            temperature=0.0,
            max_tokens=reqs[0].max_tokens,
            min_tokens=reqs[0].max_tokens,
            ignore_eos=True,
            detokenize=False,
        )
        t0, tokens = time.perf_counter(), 0
        for w in range(0, len(reqs), users):
            prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_token_ids)) for r in reqs[w : w + users]]
            tokens += sum(len(o.outputs[0].token_ids) for o in self.llm.generate(prompts, sp, use_tqdm=False))
        return tokens / (time.perf_counter() - t0)

    def close(self) -> None:
        self.llm.llm_engine.engine_core.shutdown()


class RawLlamaCpp:
    """A bare batched llama_decode loop over waves of min(users, slots) sequences, with the kit
    spec's context settings. Model and context are loaded once, in one thread that runs every
    wave (as the kit's worker thread does: one OpenMP team, a warm KV cache)."""

    def __init__(self, spec: LlamaCppSpec) -> None:
        self.spec = spec
        self._jobs: queue.Queue[tuple[list[GenRequest], int] | None] = queue.Queue()
        self._results: queue.Queue[float | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def __call__(self, reqs: list[GenRequest], users: int) -> float:
        self._jobs.put((reqs, users))
        out = self._results.get()
        if isinstance(out, BaseException):
            raise out
        return out

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _main(self) -> None:
        import llama_cpp as lc

        spec = self.spec
        _, gguf, _ = resolve_model(spec.model)
        slots, per_slot, unified = spec.slot_layout()
        lc.llama_backend_init()
        model = lc.llama_model_load_from_file(str(gguf).encode(), lc.llama_model_default_params())
        cp = lc.llama_context_default_params()
        self.n_batch = max(spec.n_batch, slots)
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = slots * per_slot, self.n_batch, self.n_batch, slots
        cp.n_threads = cp.n_threads_batch = spec.threads()
        cp.kv_unified = unified
        cp.flash_attn_type = FLASH_ATTN_TYPE[spec.flash_attn]
        cp.no_perf = True
        self.ctx = lc.llama_init_from_model(model, cp)
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
        self.batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self.slots = slots
        try:
            while (job := self._jobs.get()) is not None:
                try:
                    self._results.put(self._waves(lc, *job))
                except BaseException as exc:
                    self._results.put(exc)
        finally:
            lc.llama_batch_free(self.batch)
            lc.llama_free(self.ctx)
            lc.llama_model_free(model)

    def _waves(self, lc: Any, reqs: list[GenRequest], users: int) -> float:
        ctx, batch, n_batch = self.ctx, self.batch, self.n_batch
        mem = lc.llama_get_memory(ctx)

        def argmax(i: int) -> int:
            ptr = lc.llama_get_logits_ith(ctx, i)
            return int(
                np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (self.n_vocab,)).argmax()
            )

        def put(k: int, tok: int, pos: int, seq: int, logits: bool) -> None:
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, pos, 1
            batch.seq_id[k][0], batch.logits[k] = seq, logits

        wave = min(users, self.slots)
        t0, produced = time.perf_counter(), 0
        for w in range(0, len(reqs), wave):
            group = reqs[w : w + wave]
            n = len(group)
            for s in range(n):
                lc.llama_memory_seq_rm(mem, s, -1, -1)
            last, pos = [0] * n, [0] * n
            flat = [(s, k, tok) for s, r in enumerate(group) for k, tok in enumerate(r.prompt_token_ids)]
            for start in range(0, len(flat), n_batch):  # prefill packed into n_batch chunks, as llama-server does
                chunk = flat[start : start + n_batch]
                ends = {}
                for i, (s, k, tok) in enumerate(chunk):
                    is_last = k == len(group[s].prompt_token_ids) - 1
                    put(i, tok, k, s, is_last)
                    if is_last:
                        ends[s] = i
                batch.n_tokens = len(chunk)
                lc.llama_decode(ctx, batch)
                for s, i in ends.items():
                    last[s], pos[s] = argmax(i), len(group[s].prompt_token_ids)
                    produced += 1
            for _ in range(group[0].max_tokens - 1):
                for s in range(n):
                    put(s, last[s], pos[s], s, True)
                    pos[s] += 1
                batch.n_tokens = n
                lc.llama_decode(ctx, batch)
                for s in range(n):
                    last[s] = argmax(s)
                produced += n
        return produced / (time.perf_counter() - t0)


# -- the run -----------------------------------------------------------------------------------
def measure_engine(
    name: str, spec: EngineSpec, reqs_by_users: dict[int, list[GenRequest]], reps: int, rows: list[dict[str, Any]]
) -> None:
    loop = asyncio.new_event_loop()
    engine = make_engine(spec)
    loop.run_until_complete(engine.start())
    raw: RawVllm | RawLlamaCpp = RawVllm(spec) if isinstance(spec, VllmSpec) else RawLlamaCpp(cast(LlamaCppSpec, spec))
    variants = ["raw", *KIT_VARIANTS]
    try:
        warm = next(iter(reqs_by_users.values()))[:1]
        raw(warm, 1)
        loop.run_until_complete(kit_level(engine, warm, 1, Probes(), False))
        for rep in range(reps):
            for users, reqs in reqs_by_users.items():
                k = (rep + users) % len(variants)
                for variant in variants[k:] + variants[:k]:  # rotated: no variant always runs first
                    load = os.getloadavg()[0]
                    if variant == "raw":
                        tok_s = raw(reqs, users)
                    else:
                        probes, progress = KIT_VARIANTS[variant]
                        tok_s = loop.run_until_complete(kit_level(engine, reqs, users, probes, progress))
                    rows.append(
                        {
                            "engine": name,
                            "users": users,
                            "requests": len(reqs),
                            "repeat": rep,
                            "variant": variant,
                            "tok_s": tok_s,
                            "loadavg_1m_before": load,
                        }
                    )
                    print(f"{name:18s} users {users:3d} rep {rep} {variant:22s} {tok_s:8.1f} tok/s  load {load:.2f}")
    finally:
        loop.run_until_complete(engine.stop())
        loop.close()
        raw.close()


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per engine x users x variant: median tok/s and the median of the per-repeat ratios to raw
    (paired: same repeat), with their min-max spread."""
    out = []
    keys = sorted({(r["engine"], r["users"]) for r in rows})
    for engine, users in keys:
        sel = [r for r in rows if r["engine"] == engine and r["users"] == users]
        raw = {r["repeat"]: r["tok_s"] for r in sel if r["variant"] == "raw"}
        for variant in dict.fromkeys(r["variant"] for r in sel):
            runs = [r for r in sel if r["variant"] == variant]
            ratios = [r["tok_s"] / raw[r["repeat"]] for r in runs if r["repeat"] in raw]
            out.append(
                {
                    "engine": engine,
                    "users": users,
                    "variant": variant,
                    "tok_s_median": float(np.median([r["tok_s"] for r in runs])),
                    "tok_s_min": float(min(r["tok_s"] for r in runs)),
                    "tok_s_max": float(max(r["tok_s"] for r in runs)),
                    "over_raw_median": float(np.median(ratios)),
                    "over_raw_min": float(min(ratios)),
                    "over_raw_max": float(max(ratios)),
                    "repeats": len(runs),
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="vllm,llamacpp-serial,llamacpp-slots-4,llamacpp-slots-8,llamacpp-slots-32")
    ap.add_argument("--users", default="1,8,32")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    prepare_model()
    specs = configs()
    study = load_study(STUDY)
    chat = next(ls for ls in study.level_sets if ls.name == "chat").workload
    tok = model_tokenizer([ModelSpec()])
    users = [int(x) for x in a.users.split(",")]
    rows: list[dict[str, Any]] = []
    started = time.time()
    for name in a.engines.split(","):
        spec = specs[name]
        reqs = {
            u: build_requests(chat.model_copy(update={"seed": 1000 + u}), n_requests(spec, u), tok, max_context=1024)
            for u in users
        }
        measure_engine(name, spec, reqs, a.reps, rows)
    summary = summarize(rows)
    for s in summary:
        if s["variant"] != "raw":
            print(
                f"{s['engine']:18s} users {s['users']:3d} {s['variant']:22s} kit/raw {s['over_raw_median']:.3f} "
                f"[{s['over_raw_min']:.3f}-{s['over_raw_max']:.3f}]  {s['tok_s_median']:.1f} tok/s"
            )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "what": __doc__.split("\n\n")[0],
        "path": "kit = make_engine(spec) + run_level with probes + the CLI's progress display (cliffbench run)",
        "study": str(STUDY.relative_to(PROJECT_ROOT)),
        "specs": {n: specs[n].model_dump(mode="json") for n in a.engines.split(",")},
        "reps": a.reps,
        "wall_s": time.time() - started,
        "machine": collect_provenance(),
        "summary": summary,
        "runs": rows,
    }
    a.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

"""Harness overhead, each side in its own process: the kit's `cliffbench run` path vs the engine's raw loop.

Every run is a fresh subprocess (this script with `--child`), so a raw engine never shares a process,
its threads or its memory with the kit's: the former version loaded both in one process and measured
raw 0.95 of the kit where a raw process alone ran 0.77-0.92 (issue 26 item 7).

Engines are the default study's, found by what they are: vLLM at dtype `best` (bf16 where the CPU has
the kernels) and llama.cpp slots with F32 weights and at least 32 slots (`--engines` names others).

Kit: `run_study_async` (the sweep `cliffbench run` drives: the load driver, the lag probe, the KV
sampler, the busy check, the store, and the terminal progress display drawn to /dev/null) on a
one-engine study cut from the default study: the engine's own spec, the chat level set at one user
count, one repeat, no search. Its level is a steady-state level (lognormal answers of median
`--answer-tokens`, users refilling as their answers end) that starts every user at once
(`ramp_s: 0`), as the raw loops do, so both sides count the same work over the same span.
Raw, the same requests (the sweep's own `preflight`: identical prompts and answer lengths):
- vllm `generate`: `LLM.generate` over every request, `max_num_seqs` = users (the closed loop's refill)
- vllm `asyncllm`: a minimal `AsyncLLM` loop, one coroutine per user, no harness
- llamacpp `decode`: a bare batched `llama_decode` loop, one slot per user refilled from the queue,
  on the model and context the kit's engine loads (`LlamaCppEngine._load`: the same model params,
  n_threads and n_threads_batch, n_batch = n_ubatch, KV layout, flash attention), run in one thread
  that owns llama.cpp from load to free, as the kit's worker does.

Kit with its self-checks off (`kit-no-probes`): the same path with the study's `lag_probe` and
`memory_probe` off and no progress display, to price them against the raw loops (the report's
"probes off" line). `--split-probes` adds `kit-no-lag-probe` and `kit-no-sampler` (one check off,
the others on): what each costs apart.

Output tok/s = output tokens of the measured requests / (last token - first submit), warm-up left
out on both sides. Per engine the variants alternate in an order rotated every repeat. Prints the
paired kit/raw ratio per repeat, its median and its range (with R repeats [min, max] covers the
median with probability 1 - 2 x 0.5^R); writes the JSON through the benchmark envelope (date, git
sha, versions, CPU, load before and after).

    .venv/bin/python benchmarks/engine_overhead.py [--engines vllm,llamacpp-f32-32] [--users 32] [--reps 3]
    .venv/bin/python benchmarks/engine_overhead.py --engines vllm --raw asyncllm   # one raw loop only
    .venv/bin/python benchmarks/engine_overhead.py --quick     # llama.cpp, 4 users, 1 repeat, JSON to a temp dir
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
from rich.console import Console

from cliffbench.bench.metrics.repeats import median_range_level
from cliffbench.bench.plan import plan_levels, preflight, study_tokenizer
from cliffbench.bench.progress.terminal import ProgressReporter, run_progress
from cliffbench.bench.spec.study import StudySpec, load_study
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.levels import load_results
from cliffbench.bench.store.provenance import collect_provenance
from cliffbench.bench.sweep import run_study_async
from cliffbench.config import PROJECT_ROOT
from cliffbench.engines import GenRequest
from cliffbench.engines.specs import EngineSpec, LlamaCppSpec, VllmSpec, omp_bind
from cliffbench.engines.vllm import engine_args
from cliffbench.models import prepare_model, resolve_model

OUT = Path(__file__).parent / "results" / "engine_overhead.json"
STUDY = PROJECT_ROOT / "studies" / "default.yaml"
RAW = {"vllm": ("generate", "asyncllm"), "llamacpp-slots": ("decode",)}
# kit variant -> (lag probe, KV sampler, progress display) on: `cliffbench run`'s path as is, with its
# self-checks off, and (--split-probes) with one of them off at a time, to price each apart
KIT_FLAGS = {
    "kit": (True, True, True),
    "kit-no-probes": (False, False, False),
    "kit-no-lag-probe": (False, True, True),
    "kit-no-sampler": (True, False, True),
}
KIT = ("kit", "kit-no-probes")  # the variants run by default


def default_engines(engines: list[EngineSpec]) -> list[str]:
    """The study's vLLM at dtype best (else its first vLLM) and its F32 llama.cpp with the most
    slots, >= 32 (else the most slots): the steady-state levels of issue 26, by what they are."""
    vllm = [e for e in engines if isinstance(e, VllmSpec) and e.kind == "vllm"]
    best = [e for e in vllm if e.dtype == "best"] or vllm
    slots = [e for e in engines if e.kind == "llamacpp-slots" and isinstance(e, LlamaCppSpec)]
    f32 = [e for e in slots if e.model.gguf_variant == "f32"] or slots
    f32 = sorted(f32, key=lambda e: -e.slot_layout()[0])
    return [e.name for e in best[:1] + f32[:1]]


def family(spec: EngineSpec) -> str:
    if spec.kind == "vllm":
        return "vllm"
    if spec.kind == "llamacpp-slots":
        return "llamacpp-slots"
    raise SystemExit(f"{spec.name}: no raw loop for kind {spec.kind} (vllm and llamacpp-slots have one)")


def study_for(
    engine: str,
    users: int,
    repeat: int,
    steady_requests: int,
    answer_tokens: int,
    probes: bool = True,
    memory: bool | None = None,
) -> StudySpec:
    """The default study cut to one engine, its chat level set at `users`, answers of median
    `answer_tokens`, one repeat (seeded by `repeat`), every user starting at once; `probes` False:
    the lag probe and the KV sampler off (`memory`, where given, sets the sampler apart)."""
    base = load_study(STUDY)
    es = next(e for e in base.engines if e.name == engine)
    chat = base.level_set_doc("chat")
    chat["load"].update(
        concurrency=[users], repeats=1, only_at={}, search=None, steady_requests=steady_requests, ramp_s=0.0,
        lag_probe=probes, memory_probe=probes if memory is None else memory,
        end_at_window=False,  # every request to its end, as the raw loops
    )  # fmt: skip
    out = chat["workload"]["output"]
    out.update(mean=answer_tokens, high=max(out.get("high") or 0, 4 * answer_tokens))
    # a busy level is flagged, not measured again: the raw side has no rerun either
    busy = {"max_foreign_cores": 64.0, "reruns": 0}
    return base.one_level_set(f"overhead-{engine}-{users}", es, chat, repeat, busy=busy)


def _span_tok_s(first_submit_s: float, last_token_s: float, tokens: int) -> float:
    return tokens / (last_token_s - first_submit_s)


# -- kit: the path of `cliffbench run` ---------------------------------------------------------
def run_kit(spec: StudySpec, display: bool = True) -> dict[str, Any]:
    """The level through `run_study_async`, with the progress display drawn to /dev/null (`display`)."""
    with tempfile.TemporaryDirectory() as root:
        if display:
            live = run_progress(Console(file=open(os.devnull, "w"), force_terminal=True, width=120))  # noqa: SIM115
            with live:
                asyncio.run(run_study_async(spec, reporter=ProgressReporter(live), root=Path(root)))
        else:
            asyncio.run(run_study_async(spec, root=Path(root)))
        res = load_results(spec.name, Path(root))
    req = res.requests[~res.requests["warmup"].astype(bool)]
    if (req["status"] != "ok").any() or (res.levels["status"] != "ok").any():
        raise RuntimeError(f"kit level failed: {res.levels[['status', 'error']].to_dict('records')}")
    lv = res.levels.iloc[0]
    tokens = int(req["output_tokens"].sum())
    return {
        "tok_s": _span_tok_s(float(req["t_submit_s"].min()), float(req["t_end_s"].max()), tokens),
        "steady_window_output_tok_s": float(lv["output_tok_s"]),
        "requests": len(req),
        "output_tokens": tokens,
    }


# -- raw loops ---------------------------------------------------------------------------------
def _sampling(r: GenRequest, delta: bool = False) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    kind = RequestOutputKind.DELTA if delta else RequestOutputKind.CUMULATIVE
    return SamplingParams(temperature=0.0, max_tokens=r.max_tokens, min_tokens=r.max_tokens, ignore_eos=True,
                          detokenize=False, output_kind=kind)  # fmt: skip


def _vllm_env(spec: VllmSpec) -> None:
    """The process environment the kit's vLLM engine sets before it starts (engines/vllm.py)."""
    bind = omp_bind(spec.omp_threads_bind)
    if bind is not None:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)


def raw_vllm_generate(spec: VllmSpec, reqs: list[GenRequest], warm: list[GenRequest], users: int) -> float:
    from vllm import LLM
    from vllm.inputs import TokensPrompt

    _vllm_env(spec)
    hf, _, _ = resolve_model(spec.model)
    args = engine_args(spec, str(hf), spec.dtype_on(), "cpu", "auto")
    args["max_num_seqs"] = min(users, spec.max_num_seqs)  # LLM.generate's closed loop: `users` in flight
    llm = LLM(**{k: v for k, v in args.items() if k != "disable_log_stats"})

    def go(rs: list[GenRequest]) -> int:
        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_token_ids)) for r in rs]
        outs = llm.generate(prompts, [_sampling(r) for r in rs], use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    try:
        go(warm)
        t0 = time.perf_counter()
        tokens = go(reqs)
        return tokens / (time.perf_counter() - t0)
    finally:
        llm.llm_engine.engine_core.shutdown()


def raw_vllm_asyncllm(spec: VllmSpec, reqs: list[GenRequest], warm: list[GenRequest], users: int) -> float:
    from vllm import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    _vllm_env(spec)
    hf, _, _ = resolve_model(spec.model)
    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args(spec, str(hf), spec.dtype_on(), "cpu", "auto")))

    async def one(r: GenRequest, tag: str) -> int:
        n = 0
        prompt: Any = {"prompt_token_ids": list(r.prompt_token_ids)}
        async for out in engine.generate(prompt, _sampling(r, delta=True), f"{tag}{r.request_id}"):
            n += len(out.outputs[0].token_ids)
        return n

    async def run() -> float:
        for r in warm:
            await one(r, "w")
        queue = list(reversed(reqs))
        counts: list[int] = []

        async def user() -> None:
            while queue:
                counts.append(await one(queue.pop(), "r"))

        t0 = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(users)))
        return sum(counts) / (time.perf_counter() - t0)

    try:
        return asyncio.run(run())
    finally:
        engine.shutdown()


def _decode_loop(eng: Any, todo: list[GenRequest], width: int) -> int:
    """Closed loop over `todo` with `width` slots, scheduled as the kit's engine does (its `_run`):
    each step packs the next token of every generating slot, then pending prompt tokens into what
    is left of n_batch; a finished slot is refilled from the queue. Greedy argmax, logits only
    where a token is sampled. Returns the output tokens."""
    import llama_cpp as lc

    ctx, batch, cap, n_vocab = eng._ctx, eng._batch, eng._batch_cap, eng._n_vocab
    mem = lc.llama_get_memory(ctx)
    queue = list(reversed(todo))
    # per slot: request, prompt tokens fed, position, last token, tokens generated
    live: dict[int, list[Any]] = {}
    produced = 0
    while queue or live:
        for s in range(width):
            if s not in live and queue:
                live[s] = [queue.pop(), 0, 0, 0, 0]
        n, outs = 0, {}
        for s, st in live.items():
            if st[1] == len(st[0].prompt_token_ids):
                batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.seq_id[n][0], batch.logits[n] = (
                    st[3], st[2], 1, s, True)  # fmt: skip
                outs[s], n, st[2] = n, n + 1, st[2] + 1
        for s, st in live.items():
            prompt = st[0].prompt_token_ids
            if s in outs or st[1] == len(prompt):
                continue
            take = min(len(prompt) - st[1], cap - n)
            for k in range(st[1], st[1] + take):
                batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.seq_id[n][0] = prompt[k], k, 1, s
                batch.logits[n] = k == len(prompt) - 1
                n += 1
            st[1] += take
            st[2] = st[1]
            if st[1] == len(prompt):
                outs[s] = n - 1
        if n == 0:
            continue
        batch.n_tokens = n
        if lc.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        for s, i in outs.items():
            ptr = ctypes.cast(lc.llama_get_logits_ith(ctx, i), ctypes.POINTER(ctypes.c_float))
            st = live[s]
            st[3], st[4] = int(np.ctypeslib.as_array(ptr, (n_vocab,)).argmax()), st[4] + 1
            produced += 1
            if st[4] == st[0].max_tokens:
                lc.llama_memory_seq_rm(mem, s, -1, -1)
                del live[s]
    return produced


def raw_llamacpp(spec: LlamaCppSpec, reqs: list[GenRequest], warm: list[GenRequest], users: int) -> float:
    from cliffbench.engines.llamacpp import LlamaCppEngine

    eng = LlamaCppEngine(spec)
    out: dict[str, Any] = {}

    def owner() -> None:
        # one thread owns llama.cpp from load to free, as the kit's worker does (one OpenMP team)
        try:
            eng._load()  # the kit's own model and context parameters: only the harness differs
            _decode_loop(eng, warm, 1)
            t0 = time.perf_counter()
            tokens = _decode_loop(eng, reqs, min(users, eng.n_slots))
            out["tok_s"] = tokens / (time.perf_counter() - t0)
        except BaseException as exc:
            out["error"] = exc
        finally:
            eng._free()

    worker = threading.Thread(target=owner, name="raw-llamacpp")
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return float(out["tok_s"])


def child(job: dict[str, Any]) -> dict[str, Any]:
    """One variant run (in its own process): the kit's level, or a raw loop over the same requests."""
    lag, memory, display = KIT_FLAGS.get(job["variant"], (True, True, True))
    spec = study_for(
        job["engine"], job["users"], job["repeat"], job["steady_requests"], job["answer_tokens"], lag, memory
    )
    if job["variant"] in KIT_FLAGS:
        return run_kit(spec, display=display)
    levels = plan_levels(spec)
    reqs, warm = preflight(spec, levels, study_tokenizer(spec))[levels[0].index, 0]
    es = spec.engines[0]
    if isinstance(es, VllmSpec):
        run = raw_vllm_generate if job["variant"] == "generate" else raw_vllm_asyncllm
        tok_s = run(es, reqs, warm, job["users"])
    else:
        tok_s = raw_llamacpp(cast(LlamaCppSpec, es), reqs, warm, job["users"])
    return {"tok_s": tok_s, "requests": len(reqs), "output_tokens": sum(r.max_tokens for r in reqs)}


def run_child(job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", json.dumps(job)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{job}: exit {done.returncode}\n{done.stderr[-3000:]}")
    res = cast(dict[str, Any], json.loads(lines[-1][len("RESULT ") :]))
    return {**res, "process_wall_s": time.perf_counter() - t0}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per engine x users x kit variant x raw loop: kit/raw paired by repeat, median and min-max.
    Rows keep the report's keys (`variant` 'kit' or 'kit-no-probes', `over_raw_*`:
    report/sections/overhead.py) and name the raw loop."""
    out = []
    for engine, users in sorted({(r["engine"], r["users"]) for r in rows}):
        sel = [r for r in rows if r["engine"] == engine and r["users"] == users and "tok_s" in r]
        ran = {r["variant"] for r in sel}
        kits, raws = [k for k in KIT_FLAGS if k in ran], sorted(ran - set(KIT_FLAGS))
        for kit_variant, variant in [(k, v) for k in kits for v in raws]:
            kit = {r["repeat"]: r["tok_s"] for r in sel if r["variant"] == kit_variant}
            raw = {r["repeat"]: r["tok_s"] for r in sel if r["variant"] == variant}
            ratios = [kit[k] / raw[k] for k in sorted(raw) if k in kit]
            if not ratios:
                continue
            out.append({
                "engine": engine, "users": users, "variant": kit_variant, "raw": variant, "repeats": len(ratios),
                "kit_tok_s": [kit[k] for k in sorted(raw) if k in kit], "raw_tok_s": [raw[k] for k in sorted(raw)],
                "over_raw": ratios, "over_raw_median": float(np.median(ratios)),
                "over_raw_min": float(min(ratios)), "over_raw_max": float(max(ratios)),
                "range_covers_median": median_range_level(len(ratios)),
            })  # fmt: skip
    return out


def payload_of(
    a: argparse.Namespace, names: list[str], engines: dict[str, EngineSpec], rows: list[dict[str, Any]], started: float
) -> dict[str, Any]:
    return {
        "what": __doc__.split("\n\n")[0],
        "study": str(STUDY.relative_to(PROJECT_ROOT)),
        "quick": a.quick,
        "specs": {n: engines[n].model_dump(mode="json") for n in names},
        "users": [int(x) for x in a.users.split(",")],
        "reps": a.reps,
        "steady_requests": a.steady_requests,
        "answer_tokens_median": a.answer_tokens,
        "wall_s": time.time() - started,
        "machine": collect_provenance().model_dump(mode="json"),  # what the report matches the CPU on
        "summary": summarize(rows),
        "runs": rows,
    }


def save(path: Path, payload: dict[str, Any], load_before: list[float], final: bool) -> None:
    """Write the runs so far through the envelope (every repeat's kit/raw ratio); print the ratios when `final`."""
    numbers = []
    for s in payload["summary"]:
        numbers.append(RepeatedNumber(name=f"{s['engine']} {s['users']} users {s['variant']}/{s['raw']}", unit="x",
                                      values=s["over_raw"]))  # fmt: skip
        if final:
            rng = (
                (
                    f"[{s['over_raw_min']:.3f}-{s['over_raw_max']:.3f}] over {s['repeats']} paired repeats (the range "
                    f"covers the median {s['range_covers_median']:.0%})"
                )
                if s["repeats"] > 1
                else "(1 repeat)"
            )
            name = f"{s['variant']}/{s['raw']}"
            print(f"{s['engine']:18s} users {s['users']:3d} {name:22s} {s['over_raw_median']:.3f} {rng}; "
                  f"kit {np.median(s['kit_tok_s']):.1f}, raw {np.median(s['raw_tok_s']):.1f} tok/s")  # fmt: skip
    write_result(path, payload, new_record("engine_overhead", payload["reps"], numbers, load_before))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=None, help="study engine labels (default: vLLM best and llama.cpp F32)")
    ap.add_argument("--users", default="32")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steady-requests", type=int, default=32, help="the level's steady requests (+ 2 x users)")
    ap.add_argument("--answer-tokens", type=int, default=64, help="median answer length (lognormal)")
    ap.add_argument("--raw", default=None, help="raw loops to measure (default: every one of the engine's kind)")
    ap.add_argument(
        "--split-probes", action="store_true", help="also the kit with only the lag probe, then only the sampler, off"
    )
    ap.add_argument("--quick", action="store_true", help="llama.cpp only, 4 users, 1 repeat, JSON to a temp dir")
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    ap.add_argument(
        "--budget-s", type=float, default=None, help="start no run that would end past this (from its last time)"
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print("RESULT " + json.dumps(child(json.loads(a.child))), flush=True)
        return
    study = load_study(STUDY)
    names = a.engines.split(",") if a.engines else default_engines(study.engines)
    if a.quick:
        names = [n for n in names if family(next(e for e in study.engines if e.name == n)) != "vllm"] or names
        a.users, a.reps, a.steady_requests, a.answer_tokens = "4", 1, 4, 16
    out_path = a.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if a.quick else OUT)
    prepare_model()
    engines = {e.name: e for e in study.engines}
    unknown = [n for n in names if n not in engines]
    if unknown:
        raise SystemExit(f"--engines: {unknown} not in {STUDY.name} ({', '.join(engines)})")
    users = [int(x) for x in a.users.split(",")]
    rows: list[dict[str, Any]] = []
    load_before, started = loadavg(), time.time()
    for rep in range(a.reps):
        for name in names:
            raws = [v for v in RAW[family(engines[name])] if a.raw is None or v in a.raw.split(",")]
            variants = [*(KIT_FLAGS if a.split_probes else KIT), *raws]
            for u in users:
                k = (rep + u) % len(variants)
                for variant in variants[k:] + variants[:k]:  # alternating: no variant always runs first
                    job = {"engine": name, "users": u, "repeat": rep, "variant": variant,
                           "steady_requests": a.steady_requests, "answer_tokens": a.answer_tokens}  # fmt: skip
                    last = next((r["process_wall_s"] for r in reversed(rows) if r.get("process_wall_s") and
                                 (r["engine"], r["variant"]) == (name, variant)), 0.0)  # fmt: skip
                    if a.budget_s is not None and time.time() - started + last > a.budget_s:
                        print(f"{name} users {u} rep {rep} {variant}: not started, past --budget-s", flush=True)
                        continue
                    load = loadavg()
                    try:
                        res = run_child(job, timeout_s=900)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:  # kept, and the others still run
                        print(f"{name} users {u} rep {rep} {variant} FAILED: {str(exc)[-1500:]}", flush=True)
                        rows.append({**job, "error": str(exc)[-3000:], "loadavg_before": load})
                        continue
                    rows.append({**job, **res, "loadavg_before": load})
                    # after every run: a benchmark cut short keeps what it measured
                    save(out_path, payload_of(a, names, engines, rows, started), load_before, final=False)
                    print(f"{name:18s} users {u:3d} rep {rep} {variant:9s} {res['tok_s']:8.1f} tok/s  "
                          f"load {load[0]:.2f}  process {res['process_wall_s']:.0f} s", flush=True)  # fmt: skip
    save(out_path, payload_of(a, names, engines, rows, started), load_before, final=True)
    print(f"wrote {out_path}")
    if any("error" in r for r in rows):
        raise SystemExit(f"{sum('error' in r for r in rows)} runs failed (kept in {out_path})")


if __name__ == "__main__":
    main()

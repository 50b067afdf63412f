"""Prompt reuse in-process vs the real servers (issue 28 item 5): on a `sessions` level, with reuse on
both sides, does each in-process engine serve conversations like the server it stands for?

- in-process `llamacpp-slots` (cache_prompt on, llama-server's slot pick) vs `llama-server -np N`
  with the same slots (`make reference-servers`; where it is not built the pair is recorded as
  "not built", nothing is measured in its place),
- in-process `vllm` (prefix caching on) vs `vllm serve --enable-prefix-caching`.

Paired: both sides up at once, the level run on each in turn, alternating which goes first; repeated
`--reps` times. Per side and repeat: TTFT p50 and the measured hit rate (cached prompt tokens / prompt
tokens of the ok requests, as each engine reports them per request), beside the workload's
theoretical hit rate. A side starts cold each repeat only in the sense that new conversations are
drawn: the engines keep their caches between repeats (as a server would), so repeats after the
first may see warmer caches; the level's sessions are distinct, so no conversation is seen twice.
Writes benchmarks/results/reuse_servers.json (envelope: cliffbench.bench.store.bench_record).

llama-server streams text; the ids a user needs to build its next turn come back in each chunk's
logprobs, which the server side asks for (`n_probs: 1`, the top-1 probability of each sampled token:
a softmax over the vocabulary per token, the same on every turn).

    .venv/bin/python benchmarks/reuse_servers.py [--quick] [--pairs llamacpp,vllm] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cliffbench.bench.load.driver import RequestRecord, run_level
from cliffbench.bench.spec.workload import WorkloadSpec
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.workload.requests import build_requests
from cliffbench.bench.workload.reuse import theoretical_hit_rate
from cliffbench.engines import make_engine
from cliffbench.engines.servers import reference_llama_server
from cliffbench.engines.specs import LlamaCppSlotsSpec, OpenAIHttpSpec, VllmSpec
from cliffbench.models import prepare_model
from cliffbench.models.tokenizer import model_tokenizer

OUT = Path(__file__).parent / "results" / "reuse_servers.json"
TOLERANCE = 0.10  # the bar: TTFT p50 and hit rate within 10%
CTX_PER_SLOT = 1024


def workload(quick: bool, seed: int) -> WorkloadSpec:
    """Conversations of 2-4 turns: a 128-token first message (one CPU KV block of vLLM, so a second
    turn has a whole block to reuse), 16-token user turns, 24-token answers."""
    return WorkloadSpec.model_validate(
        {
            "kind": "sessions",
            "prompt": {"mean": 128},
            "output": {"mean": 16 if quick else 24},
            "sessions": {"turns": {"dist": "uniform", "mean": 3, "low": 2, "high": 4}, "user": {"mean": 16}},
            "seed": seed,
        }
    )


def summarize(records: list[RequestRecord], loop_cpu_share: float = math.nan) -> dict[str, float]:
    """TTFT p50 and the measured hit rate of a level's ok requests (NaN where no engine told); TPOT p50
    and the client loop's CPU share (cores), where a difference in TTFT between the sides comes from."""
    ok = [r for r in records if not r.warmup and r.status == "ok"]
    told = [r for r in ok if not math.isnan(r.cached_tokens)]
    prompt = sum(r.prompt_tokens for r in told)
    tpot = [
        (r.token_times_s[-1] - r.token_times_s[0]) / (len(r.token_times_s) - 1) for r in ok if len(r.token_times_s) > 1
    ]
    return {
        "ttft_p50_s": float(np.median([r.token_times_s[0] - r.t_submit_s for r in ok])) if ok else math.nan,
        "tpot_p50_s": float(np.median(tpot)) if tpot else math.nan,
        "client_loop_cores": loop_cpu_share,
        "hit_rate": sum(r.cached_tokens for r in told) / prompt if prompt else math.nan,
        "ok": len(ok),
        "failed": sum(1 for r in records if not r.warmup) - len(ok),
        "cached_told": len(told),
    }


def pairs(slots: int) -> dict[str, tuple[Any, Any]]:
    """(in-process spec, server spec) of each pair, reuse on both sides."""
    twin = LlamaCppSlotsSpec(slots=slots, ctx_per_slot=CTX_PER_SLOT, cache_prompt=True)
    vllm = VllmSpec(
        max_model_len=CTX_PER_SLOT, kv_cache_gib=0.5, max_num_seqs=max(slots, 4), enable_prefix_caching=True
    )
    return {
        "llamacpp": (
            twin,
            # n_probs 1: the sampled tokens' ids ride in the stream's logprobs (engines/http.py `_delta`)
            OpenAIHttpSpec(server={"kind": "llama-server", "mirrors": twin.model_dump()}, extra_body={"n_probs": 1}),
        ),
        "vllm": (vllm, OpenAIHttpSpec(server={"kind": "vllm", "mirrors": vllm.model_dump()})),
    }


async def measure_pair(name: str, inproc_spec: Any, server_spec: Any, users: int, reps: int, a: Any) -> dict[str, Any]:
    tok = model_tokenizer([inproc_spec.model])
    t0 = time.perf_counter()
    server, inproc = make_engine(server_spec), make_engine(inproc_spec)
    await server.start()
    try:
        await inproc.start()
        try:
            print(f"{name}: both up in {time.perf_counter() - t0:.0f} s", flush=True)
            sides: dict[str, list[dict[str, float]]] = {"inproc": [], "server": []}
            theory: list[float] = []
            for rep in range(reps):
                # a fresh set of conversations per repeat, the same for both sides
                reqs = build_requests(workload(a.quick, seed=rep), a.turns, tok, max_context=CTX_PER_SLOT)
                order = [("inproc", inproc), ("server", server)]
                for side, eng in order if rep % 2 == 0 else order[::-1]:
                    run = await run_level(eng, reqs, concurrency=users, request_timeout_s=600)
                    sides[side].append(summarize(run.records, run.loop_cpu_share))
                    if side == "inproc":  # over the turns the users sent, at their lengths as sent
                        sent = {r.request_id: r.prompt_tokens for r in run.records if not r.warmup}
                        theory.append(theoretical_hit_rate(reqs, sent_prompt_tokens=sent))
                    print(f"  rep {rep + 1} {side}: {sides[side][-1]}", flush=True)
                    await asyncio.sleep(0.5)  # idle OpenMP threads stop spinning before the other side runs
        finally:
            await inproc.stop()
    finally:
        await server.stop()
    med = {s: {k: float(np.median([r[k] for r in runs])) for k in runs[0]} for s, runs in sides.items()}
    # equal zeros (neither side reused anything) are a ratio of 1, not a division by zero
    ratios = {
        k: med["inproc"][k] / med["server"][k] if med["server"][k] else (1.0 if med["inproc"][k] == 0 else math.inf)
        for k in ("ttft_p50_s", "hit_rate")
    }
    return {
        "pair": name,
        "status": "measured",
        "users": users,
        "turns": a.turns,
        "reps": reps,
        "theoretical_hit_rate": theory,
        "runs": sides,
        "median": med,
        "ratio_inproc_over_server": ratios,
        "within_tolerance": {k: abs(v - 1) <= TOLERANCE for k, v in ratios.items()},
        "loadavg_1m": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer turns and repeats, shorter answers")
    p.add_argument("--pairs", default="llamacpp,vllm", help="comma-separated: llamacpp, vllm")
    p.add_argument("--slots", type=int, default=4, help="llama.cpp slots (and users of the level)")
    p.add_argument("--reps", type=int, default=None, help="repeats per pair (default 3, --quick 2)")
    p.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    p.add_argument(
        "--llama-server-args",
        default="",
        help="extra llama-server arguments, e.g. '--cache-ram 0' (its host-RAM prompt cache off: the in-process "
        "twin has none, and with it on llama-server's TTFT p50 was x1.35 of off here)",
    )
    a = p.parse_args()
    a.out = a.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if a.quick else OUT)
    a.turns = 12 if a.quick else 48
    reps = a.reps or (2 if a.quick else 3)
    before = loadavg()
    prepare_model()
    rows: list[dict[str, Any]] = []
    for name in [n.strip() for n in a.pairs.split(",") if n.strip()]:
        inproc_spec, server_spec = pairs(a.slots)[name]
        if name == "llamacpp" and a.llama_server_args:
            doc = server_spec.model_dump()
            doc["server"]["extra_args"] = a.llama_server_args.split()
            server_spec = type(server_spec).model_validate(doc)
        if name == "llamacpp" and not reference_llama_server().exists():
            # nothing measured in its place: the row says why
            rows.append({"pair": name, "status": "not built", "binary": str(reference_llama_server())})
            print(f"{name}: llama-server not built ({reference_llama_server()}); run `make reference-servers`")
            continue
        rows.append(asyncio.run(measure_pair(name, inproc_spec, server_spec, a.slots, reps, a)))
    numbers = [
        RepeatedNumber(
            name=f"{r['pair']} {side} {k}",
            unit="s" if k == "ttft_p50_s" else "",
            higher_is_better=k != "ttft_p50_s",
            values=[run[k] for run in r["runs"][side]],
        )
        for r in rows
        if r["status"] == "measured"
        for side in ("inproc", "server")
        for k in ("ttft_p50_s", "hit_rate")
    ]
    doc = {
        "quick": a.quick,
        "slots": a.slots,
        "llama_server_args": a.llama_server_args,
        "tolerance": TOLERANCE,
        "pairs": rows,
    }
    # the envelope needs a measured number: with nothing measured (llama-server not built, vLLM not
    # asked), the file records the pairs' status and no numbers
    if numbers:
        write_result(a.out, doc, new_record("reuse_servers", reps, numbers, before))
        print(f"wrote {a.out}")
    else:
        print("nothing measured; no result written:", rows)


if __name__ == "__main__":
    main()

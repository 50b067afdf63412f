"""Fidelity: do the in-process engines behave like the real servers they stand for?

Same workload (token-exact prompts), same model file, same threads, same load generator:
- in-process `llamacpp-slots` (N slots) vs real `llama-server -np N -c N*ctx` (`--no-kv-unified`),
- the same with `kv_unified` vs `llama-server --kv-unified` (N > 1),
- in-process `vllm` (AsyncLLM) vs `vllm serve` (`python -m vllm.entrypoints.openai.api_server`),
at each concurrency. Both sides of a pair are up at once and measured level by level,
alternating which goes first, so background load on the shared machine hits both alike.

Ratio = in-process / server: output tok/s (all output tokens / first submit to last token),
TTFT p50 and p99. `same_text`: every request's greedy text is identical on both sides. The
harness (client) runs on the same cores as the server: its SSE parsing competes with the server
for CPU, which is part of what the HTTP side pays. Writes benchmarks/results/fidelity.json.

    .venv/bin/python benchmarks/fidelity.py [--quick] [--slots 1,4,8] [--concurrency 1,4,16,32]

--quick: 2 slots, 1 and 2 users, 16-token answers, JSON to a temp dir; without a llama-server
binary (`make reference-servers`) it runs the A/A control pair, so the path is still checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cliffbench.bench.load.driver import RequestRecord, run_level
from cliffbench.bench.spec.workload import WorkloadSpec
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.provenance import collect_provenance
from cliffbench.bench.workload.requests import build_requests
from cliffbench.engines import GenRequest, make_engine
from cliffbench.engines.servers import reference_llama_server
from cliffbench.engines.specs import LlamaCppSlotsSpec, OpenAIHttpSpec, VllmSpec
from cliffbench.models import prepare_model
from cliffbench.models.spec import ModelSpec
from cliffbench.models.tokenizer import model_tokenizer

OUT = Path(__file__).parent / "results" / "fidelity.json"
CTX_PER_SLOT = 512
TOLERANCE = 0.10


class Capture:
    """Wraps an engine; keeps each request's token ids and text for the identity check."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.name
        self.ids: dict[int, list[int]] = {}
        self.text: dict[int, str] = {}

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()

    def memory(self) -> Any:
        return self.engine.memory()

    def describe(self) -> dict[str, object]:
        return dict(self.engine.describe())

    async def stream(self, request: GenRequest) -> Any:
        ids, parts = [], []
        async for ev in self.engine.stream(request):
            ids.append(ev.token_id)
            parts.append(ev.text)
            yield ev
        self.ids[request.request_id] = ids
        self.text[request.request_id] = "".join(parts)

    def texts(self, tokenizer: Any) -> dict[int, str]:
        """Server text where the server sent text, else the decoded token ids."""
        return {
            rid: self.text[rid] if any(i < 0 for i in ids) or not ids else tokenizer.decode(ids)
            for rid, ids in self.ids.items()
        }


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _server_threads_cpu_s(engine: Any) -> list[float] | None:
    """CPU seconds of each thread of a managed server process (None for in-process engines)."""
    import psutil

    pid = getattr(getattr(engine, "_server", None), "pid", None)
    if pid is None:
        return None
    try:
        return [t.user_time + t.system_time for t in psutil.Process(pid).threads()]
    except psutil.Error:
        return None


def _cpu_split(before: list[float] | None, after: list[float] | None, client_s: float, wall_s: float) -> dict[str, Any]:
    """Where the cores went during one server-side level, in cores (CPU s per wall s): the server's
    busiest threads (its compute threads first), all its threads, and this client process."""
    out: dict[str, Any] = {"client_cores": client_s / wall_s}
    if before is not None and after is not None and len(before) == len(after):
        used = sorted((b - a for a, b in zip(before, after, strict=True)), reverse=True)
        out["server_top_thread_cores"] = [u / wall_s for u in used[:4]]
        out["server_total_cores"] = sum(used) / wall_s
    return out


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def summarize(records: list[RequestRecord]) -> dict[str, float]:
    ok = [r for r in records if not r.warmup and r.status == "ok"]
    measured = [r for r in records if not r.warmup]
    if not ok:
        return {"tok_s": float("nan"), "ttft_p50_s": float("nan"), "ttft_p99_s": float("nan"), "failed": len(measured)}
    ttft = np.array([r.token_times_s[0] - r.t_submit_s for r in ok])
    t0 = min(r.t_submit_s for r in ok)
    t1 = max(r.token_times_s[-1] for r in ok)
    return {
        "tok_s": sum(r.output_tokens for r in ok) / (t1 - t0),
        "ttft_p50_s": float(np.percentile(ttft, 50)),
        "ttft_p99_s": float(np.percentile(ttft, 99)),
        "failed": len(measured) - len(ok),
    }


async def measure_pair(
    pair: str,
    slots: int | None,
    inproc_spec: Any,
    server_spec: Any,
    levels: dict[int, tuple[list[GenRequest], list[GenRequest]]],
    tokenizer: Any,
    rows: list[dict[str, Any]],
    reps: int = 1,
) -> None:
    t_start = time.perf_counter()
    server = Capture(make_engine(server_spec))
    inproc = Capture(make_engine(inproc_spec))
    await server.start()
    try:
        await inproc.start()
        try:
            print(f"{pair} slots={slots}: both up in {time.perf_counter() - t_start:.0f} s", flush=True)
            for k, (c, (reqs, warm)) in enumerate(levels.items()):
                runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
                cpu_splits: list[dict[str, Any]] = []
                for rep in range(reps):
                    # ABBA...: alternating who goes first spreads slow drifts in background load evenly
                    order = [inproc, server] if (k + rep) % 2 == 0 else [server, inproc]
                    for eng in order:
                        cpu0, threads0 = time.process_time(), _server_threads_cpu_s(eng.engine)
                        run = await run_level(eng, reqs, concurrency=c, warmup=warm, request_timeout_s=600)
                        runs[eng is inproc].append(summarize(run.records))
                        if eng is server:  # where the cores go while the server serves
                            split = _cpu_split(
                                threads0, _server_threads_cpu_s(eng.engine), time.process_time() - cpu0, run.wall_s
                            )
                            cpu_splits.append(split)
                        await asyncio.sleep(0.5)  # idle OpenMP threads stop spinning before the other side runs
                a, b = _median(runs[True]), _median(runs[False])
                ids = [r.request_id for r in reqs]
                ta, tb = inproc.texts(tokenizer), server.texts(tokenizer)
                differ = [rid for rid in ids if ta.get(rid) is None or ta.get(rid) != tb.get(rid)]
                same = not differ
                parted = min((_common_prefix(ta.get(r, ""), tb.get(r, "")) for r in differ), default=None)
                row = {
                    "pair": pair,
                    "slots": slots,
                    "concurrency": c,
                    "tok_s_ratio": a["tok_s"] / b["tok_s"],
                    # each repeat's in-process / server pair, in order: the range the median hides
                    "tok_s_ratio_per_rep": [
                        x["tok_s"] / y["tok_s"] for x, y in zip(runs[True], runs[False], strict=True)
                    ],
                    "ttft_p50_ratio_per_rep": [
                        x["ttft_p50_s"] / y["ttft_p50_s"] for x, y in zip(runs[True], runs[False], strict=True)
                    ],
                    "ttft_p50_ratio": a["ttft_p50_s"] / b["ttft_p50_s"],
                    "ttft_p99_ratio": a["ttft_p99_s"] / b["ttft_p99_s"],
                    "same_text": same,
                    "n_text_differs": len(differ),
                    # where greedy decoding parted: characters of identical text before the first difference
                    "first_diff_char": parted,
                    "inproc": a,
                    "server": b,
                    "requests": len(reqs),
                    "reps": reps,
                    "server_side_cpu": cpu_splits,
                    "server_extra_body": dict(getattr(server_spec, "extra_body", {}) or {}),
                    "server_extra_args": list(getattr(getattr(server_spec, "server", None), "extra_args", []) or []),
                    # other users of the 2 cores disturb single runs: the load says how much
                    "loadavg_1m": os.getloadavg()[0],
                }
                rows.append(row)
                print(
                    f"  c={c:3d}: tok/s {a['tok_s']:7.1f} vs {b['tok_s']:7.1f} (x{row['tok_s_ratio']:.3f})  "
                    f"TTFT p50 {a['ttft_p50_s']:.3f} vs {b['ttft_p50_s']:.3f} s (x{row['ttft_p50_ratio']:.3f})  "
                    f"p99 x{row['ttft_p99_ratio']:.3f}  same_text={same} ({len(differ)} differ)  "
                    f"failed {a['failed']}/{b['failed']}",
                    flush=True,
                )
            stats = getattr(server.engine, "stats", {})
            if stats.get("retried"):
                print(f"  {pair}: {stats['retried']} requests retried after a dropped keep-alive", flush=True)
        finally:
            await inproc.stop()
    finally:
        await server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a check of the script: 2 slots, 1-2 users, under a minute")
    ap.add_argument("--slots", default=None, help="llama.cpp slot counts (default 1,4,8)")
    ap.add_argument("--concurrency", default="1,4,16,32")
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--min-requests", type=int, default=None, help="requests per level: max(this, concurrency)")
    ap.add_argument(
        "--pairs", default=None, help="of slots,unified,vllm,control (A/A noise floor); default all but control"
    )
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    ap.add_argument(
        "--server-extra-body",
        type=json.loads,
        default={},
        help='JSON merged into every llama-server request, e.g. \'{"samplers": ["top_k"], "top_k": 1}\' '
        "(an argmax-only sampler chain, like the in-process engine's)",
    )
    ap.add_argument(
        "--server-extra-args", default="", help="appended to llama-server's command line, e.g. '--cache-ram 0'"
    )
    ap.add_argument("--reps", type=int, default=1, help="interleaved repetitions per level (medians)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="compute threads on both sides (default: every core). On a machine shared with other jobs, "
        "1 keeps llama.cpp's spinning thread barrier from being descheduled mid-step (see notes)",
    )
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every server's stop() runs
    if a.quick:
        a.slots, a.concurrency, a.min_requests, a.output_tokens = a.slots or "2", "1,2", a.min_requests or 2, 16
        a.out = a.out or Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name
        if a.pairs is None:
            a.pairs = "slots" if reference_llama_server().is_file() else "control"
    a.out, a.pairs = a.out or OUT, a.pairs or "slots,unified,vllm"
    slots = [int(x) for x in (a.slots or ("1,8" if a.quick else "1,4,8")).split(",")]
    conc = [int(x) for x in a.concurrency.split(",")]
    min_req = a.min_requests or (4 if a.quick else 8)
    prepare_model()
    tok = model_tokenizer([ModelSpec()])
    wl = WorkloadSpec(kind="fixed", prompt={"mean": a.prompt_tokens}, output={"mean": a.output_tokens})
    levels = {
        c: (build_requests(wl.model_copy(update={"seed": c}), max(c, min_req), tok), build_requests(
            wl.model_copy(update={"seed": 1000 + c}), 1, tok, start_id=1_000_000))
        for c in conc
    }  # fmt: skip
    rows: list[dict[str, Any]] = []
    wanted = a.pairs.split(",")
    t0 = time.perf_counter()
    before = loadavg()

    async def run_all() -> None:
        for n in slots:
            for unified in (False, True):
                if (unified and (n == 1 or "unified" not in wanted)) or (not unified and "slots" not in wanted):
                    continue
                spec = LlamaCppSlotsSpec(slots=n, ctx_per_slot=CTX_PER_SLOT, kv_unified=unified, n_threads=a.threads)
                server = OpenAIHttpSpec(
                    label="llama-server",
                    server={
                        "kind": "llama-server",
                        "mirrors": spec.model_dump(),
                        "extra_args": a.server_extra_args.split(),
                    },
                    max_connections=max(conc),
                    extra_body=a.server_extra_body,
                )
                pair = "slots-unified-vs-llama-server-kvu" if unified else "slots-vs-llama-server"
                await measure_pair(pair, n, spec, server, levels, tok, rows, a.reps)
        if "control" in wanted:
            # A/A: the in-process engine against a second copy of itself. Its scatter is this
            # machine's noise floor, below which no in-process vs server difference is measurable.
            for n in slots:
                spec = LlamaCppSlotsSpec(slots=n, ctx_per_slot=CTX_PER_SLOT, n_threads=a.threads)
                twin = spec.model_copy(update={"label": "twin"})
                await measure_pair("control-slots-vs-slots", n, spec, twin, levels, tok, rows, a.reps)
        if "vllm" in wanted:
            bind = "all" if a.threads is None else f"0-{a.threads - 1}" if a.threads > 1 else "0"
            vspec = VllmSpec(max_model_len=CTX_PER_SLOT, kv_cache_gib=1.0, omp_threads_bind=bind)
            server = OpenAIHttpSpec(
                label="vllm-serve", server={"kind": "vllm", "mirrors": vspec.model_dump()}, max_connections=max(conc)
            )
            await measure_pair("vllm-vs-vllm-serve", None, vspec, server, levels, tok, rows, a.reps)

    try:
        asyncio.run(run_all())
    finally:
        write(rows, a, time.perf_counter() - t0, before)


def write(rows: list[dict[str, Any]], a: argparse.Namespace, wall_s: float, before: list[float]) -> None:
    if not rows:
        return
    out: Path = a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = [{"argv": sys.argv[1:], "wall_s": wall_s, "pairs": sorted({r["pair"] for r in rows})}]
    if out.is_file():  # keep the pairs this run did not measure (e.g. a separate control run)
        old = json.loads(out.read_text())
        measured = {(r["pair"], r["slots"]) for r in rows}
        rows = [r for r in old.get("rows", []) if (r["pair"], r["slots"]) not in measured] + rows
        runs = old.get("runs", []) + runs
    llama = [r for r in rows if r["pair"].startswith("slots")]
    within = [r for r in llama if abs(r["tok_s_ratio"] - 1) <= TOLERANCE and abs(r["ttft_p50_ratio"] - 1) <= TOLERANCE]
    numbers = [
        RepeatedNumber(
            name=f"{r['pair']} slots {r['slots']} {r['concurrency']} users {what} in-process / server",
            values=r.get(f"{key}_per_rep") or [r[key]],  # rows stored before per-repeat ratios: the median
        )
        for r in rows
        for key, what in (("tok_s_ratio", "tok/s"), ("ttft_p50_ratio", "TTFT p50"))
    ]
    write_result(
        out,
        {
            "machine": collect_provenance().model_dump(mode="json"),
            "workload": {"prompt_tokens": a.prompt_tokens, "output_tokens": a.output_tokens},
            "threads": a.threads or len(os.sched_getaffinity(0)),
            "runs": runs,
            "ratio": "in-process / server",
            "tolerance": TOLERANCE,
            "llama_levels_within_tolerance": f"{len(within)}/{len(llama)}",
            "notes": (
                "The load generator (HTTP client) runs on the same cores as the server; its SSE "
                "parsing competes with the server for CPU. Both sides of a pair were up at once and "
                "measured level by level, alternating order. Single runs on a machine shared with "
                "other jobs (loadavg_1m per row); control-slots-vs-slots is the A/A noise floor."
            ),
            "rows": rows,
        },
        new_record("fidelity", a.reps, numbers, before),
    )
    print(f"wrote {out} ({wall_s:.0f} s)")


if __name__ == "__main__":
    main()

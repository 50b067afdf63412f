"""The working-set axis of RAG traffic (issue 28 item 4): at a fixed load, how does each engine's prefix
reuse hold up as the pool of shared documents grows past what its cache keeps?

A compute cliff moves with the number of users; a KV-capacity cliff moves with the working set. Here
the users stay fixed (the default study's `rag` level set: 8 users, 2 of the pool's 128-token
documents per request, Zipf popularity) and the pool grows (`--pools`, default 4, 16, 64 and 256
documents: 512 to 32,768 tokens). Per point, each engine's measured hit rate (cached prompt tokens /
prompt tokens over the steady window, as the engine reported them per request) beside the possible
one (what an infinite prefix cache would serve of the same requests, `theoretical_hit_rate`), and
TTFT p50/p90 beside the same engine with reuse off, the control. While the cache holds the
working set, measured follows possible and TTFT stays under the control's; once the working set
outgrows the cache, measured falls under possible and TTFT climbs to the control's.

Engines: the default study's two reuse engines and their controls: `vllm` (prefix caching on; its
KV pool cut to `--kv-cache-gib`, default 0.25 GiB, so that the largest pool outgrows it on a 2-core
machine in minutes) against the same spec with prefix caching off, and `llamacpp-f32-32-reuse`
(cache_prompt, llama-server's slot pick: a slot keeps one prompt, its last) against
`llamacpp-f32-32`. Each engine's cache in tokens is what it reported (`kv_cache_tokens`).

Through the kit's path (`run_study_async`, the sweep `cliffbench run` drives), one started engine per
engine for all its points. Every point of every repeat draws its pool at its own corpus offset
(`rag.offset_tokens`): no point is served by documents an earlier point left in the cache. Repeats
alternate the pools' order. JSON through the benchmark envelope (date, git sha, versions, CPU, load).

    .venv/bin/python benchmarks/working_set.py [--pools 4,16,64] [--users 8] [--reps 2] [--engines ...]
    .venv/bin/python benchmarks/working_set.py --quick   # llama.cpp with reuse and its control, 4 users, pools 2, 8
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliffbench.bench.probes import LocalHardware
from cliffbench.bench.spec.study import StudySpec, load_study
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.levels import load_results
from cliffbench.bench.sweep import run_cut
from cliffbench.config import PROJECT_ROOT
from cliffbench.engines import make_engine
from cliffbench.engines.base import Engine
from cliffbench.engines.specs import EngineSpec
from cliffbench.models import prepare_model

OUT = Path(__file__).parent / "results" / "working_set.json"
STUDY = PROJECT_ROOT / "studies" / "default.yaml"
LEVEL_SET = "rag"
#: reuse engine -> its control (reuse off); None: built here from the reuse spec with its cache off
PAIRS: dict[str, str | None] = {"vllm": None, "llamacpp-f32-32-reuse": "llamacpp-f32-32"}
METRICS = ("hit_rate_measured", "hit_rate_theory", "ttft_s_p50", "ttft_s_p90", "tpot_s_p50", "output_tok_s")
# tokens between two points' pools: a prime, so one pool's documents start where another's do only by chance
_OFFSET_STEP = 7919


def engines_for(base: StudySpec, names: list[str], kv_cache_gib: float) -> list[tuple[EngineSpec, str]]:
    """(spec, role) per engine measured: each reuse engine named, then its control."""
    specs = {e.name: e for e in base.engines}
    out: list[tuple[EngineSpec, str]] = []
    for name in names:
        es = specs[name]
        doc = es.model_dump(mode="json")
        if "kv_cache_gib" in doc:
            doc["kv_cache_gib"] = kv_cache_gib
        reuse = type(es).model_validate(doc)
        control_name = PAIRS.get(name)
        if control_name is not None:
            control = specs[control_name]
        else:  # the same engine with its prefix cache off
            control = type(es).model_validate({**doc, "label": f"{name}-no-cache", "enable_prefix_caching": False})
        out += [(reuse, "reuse"), (control, f"control of {name}")]
    return out


def study_for(
    base: StudySpec, es: EngineSpec, users: int, documents: int, offset: int, repeat: int, steady: int | None
) -> StudySpec:
    """The default study cut to `es`, its rag level set at `users` with a pool of `documents` at `offset`."""
    rag = base.level_set_doc(LEVEL_SET)
    rag["name"] = f"{LEVEL_SET}-d{documents}"
    rag["workload"]["rag"].update(documents=documents, offset_tokens=offset)
    rag["load"].update(concurrency=[users], repeats=1, only_at={}, search=None)
    if steady is not None:
        rag["load"]["steady_requests"] = steady
    return base.one_level_set(f"ws-{es.name}-d{documents}-{repeat}", es, rag, repeat)


def cache_size(engine: Engine) -> tuple[float, float]:
    """The KV cache the engine reported: (tokens, prompts it keeps; NaN where it reports none). A
    llama.cpp slot keeps one prompt, its last, whatever room its cells have left."""
    d = engine.describe()
    tokens, prompts = d.get("kv_cache_tokens"), d.get("kv_cache_prompts")
    return (
        float(tokens) if isinstance(tokens, int | float) else math.nan,
        float(prompts) if isinstance(prompts, int | float) else math.nan,
    )


async def measure_engine(
    base: StudySpec,
    es: EngineSpec,
    role: str,
    pools: list[int],
    users: int,
    reps: int,
    steady: int | None,
    doc_tokens: int,
    tmp: Path,
) -> list[dict[str, Any]]:
    engine: Engine = make_engine(es)
    await engine.start()
    rows: list[dict[str, Any]] = []
    probe: LocalHardware | None = None
    try:
        cache, prompts = cache_size(engine)
        for rep in range(reps):
            for i, documents in enumerate(pools if rep % 2 == 0 else pools[::-1]):
                offset = _OFFSET_STEP * (1 + rep * len(pools) + i)
                spec = study_for(base, es, users, documents, offset, rep, steady)
                root = tmp / spec.name
                t0 = time.perf_counter()
                probe = await run_cut(spec, engine, root, probe)
                lv = load_results(spec.name, root).levels.iloc[0]
                row: dict[str, Any] = {
                    "engine": es.name,
                    "role": role,
                    "documents": documents,
                    "working_set_tokens": documents * doc_tokens,
                    "cache_tokens": cache,
                    "cache_prompts": prompts,
                    "users": users,
                    "repeat": rep,
                    "status": str(lv["status"]),
                    "n_steady": int(lv.get("n_steady", 0) or 0),
                    **{m: float(lv.get(m, math.nan)) for m in METRICS},
                }
                rows.append(row)
                print(f"{es.name:26s} {documents:4d} docs rep {rep}: hit {row['hit_rate_measured']:.2f} of "
                      f"{row['hit_rate_theory']:.2f} possible, TTFT p50 {row['ttft_s_p50']:.3f} s, "
                      f"p90 {row['ttft_s_p90']:.3f} s ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    finally:
        await engine.stop()
    return rows


def summarize(rows: list[dict[str, Any]], pairs: dict[str, str]) -> list[dict[str, Any]]:
    """Per reuse engine x pool: medians and ranges over repeats of the hit rates, their ratio, and
    TTFT with reuse over the control's, paired by repeat."""
    df = pd.DataFrame(rows)
    out = []
    for (engine, documents), g in df[df["role"] == "reuse"].groupby(["engine", "documents"], sort=True):
        c = df[(df["engine"] == pairs[str(engine)]) & (df["documents"] == documents)]
        ctl = dict(zip(c["repeat"], c["ttft_s_p50"], strict=True))
        g = g.sort_values("repeat")
        out.append({
            "engine": engine,
            "control": pairs[str(engine)],
            "documents": int(str(documents)),
            "working_set_tokens": int(g["working_set_tokens"].iloc[0]),
            "cache_tokens": float(g["cache_tokens"].iloc[0]),
            "cache_prompts": float(g["cache_prompts"].iloc[0]),
            "hit_rate_measured": [float(x) for x in g["hit_rate_measured"]],
            "hit_rate_theory": [float(x) for x in g["hit_rate_theory"]],
            "served_of_possible": [float(m / t) if t > 0 else math.nan
                                   for m, t in zip(g["hit_rate_measured"], g["hit_rate_theory"], strict=True)],
            "ttft_s_p50": [float(x) for x in g["ttft_s_p50"]],
            "control_ttft_s_p50": [float(ctl[r]) for r in g["repeat"] if r in ctl],
            "ttft_p50_over_control": [float(t / ctl[r]) for r, t in zip(g["repeat"], g["ttft_s_p50"], strict=True)
                                      if r in ctl and ctl[r] > 0],
        })  # fmt: skip
    return out


def _spread(values: list[float]) -> str:
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return "n/a"
    return f"{np.median(v):.3g} [{min(v):.3g}-{max(v):.3g}]" if len(v) > 1 else f"{v[0]:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(PAIRS), help=f"reuse engines of the study ({', '.join(PAIRS)})")
    ap.add_argument("--pools", default="4,16,64,256", help="documents in the pool, one point each")
    ap.add_argument("--users", type=int, default=None, help="default: the study's rag level set's")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--kv-cache-gib", type=float, default=0.25, help="vLLM's KV pool (the study's is 1 GiB)")
    ap.add_argument("--steady-requests", type=int, default=None, help="default: the study's")
    ap.add_argument("--quick", action="store_true", help="llama.cpp with reuse, 4 users, pools 2 and 8, temp dir")
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    a = ap.parse_args()
    base = load_study(STUDY)
    names = a.engines.split(",")
    if a.quick:
        names, a.pools, a.reps, a.users, a.steady_requests = ["llamacpp-f32-32-reuse"], "2,8", 1, 4, 4
    unknown = [n for n in names if n not in PAIRS]
    if unknown:
        raise SystemExit(f"--engines: {unknown} not among the study's reuse engines ({', '.join(PAIRS)})")
    try:
        pools = [int(x) for x in a.pools.split(",")]
    except ValueError:
        raise SystemExit(f"--pools: {a.pools!r} is not a comma-separated list of document counts") from None
    rag = next(ls for ls in base.level_sets if ls.name == LEVEL_SET)
    assert rag.workload.rag is not None
    if any(p < rag.workload.rag.k for p in pools):
        raise SystemExit(f"--pools: every pool needs at least k = {rag.workload.rag.k} documents")
    users = a.users or int((rag.load.concurrency or [8])[0])
    out_path = a.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if a.quick else OUT)
    prepare_model()
    measured = engines_for(base, names, a.kv_cache_gib)
    pairs = {measured[i][0].name: measured[i + 1][0].name for i in range(0, len(measured), 2)}
    rows: list[dict[str, Any]] = []
    load_before, started = loadavg(), time.time()
    with tempfile.TemporaryDirectory(prefix="cliffbench-ws-") as tmp:
        for es, role in measured:
            rows += asyncio.run(
                measure_engine(base, es, role, pools, users, a.reps, a.steady_requests, rag.workload.rag.doc_tokens,
                               Path(tmp))
            )  # fmt: skip
    summary = summarize(rows, pairs)
    numbers = []
    for s in summary:
        print(f"\n{s['engine']}, {s['documents']} documents ({s['working_set_tokens']} tokens; cache "
              f"{s['cache_tokens']:.0f} tokens): hit rate {_spread(s['hit_rate_measured'])} of possible "
              f"{_spread(s['hit_rate_theory'])} = {_spread(s['served_of_possible'])}; TTFT p50 "
              f"{_spread(s['ttft_s_p50'])} s, {_spread(s['ttft_p50_over_control'])} x the control's")  # fmt: skip
        for key, unit, better in (("served_of_possible", "", True), ("ttft_p50_over_control", "x", False)):
            values = [x for x in s[key] if not math.isnan(x)]
            if values:
                numbers.append(RepeatedNumber(name=f"{s['engine']} {s['documents']} documents {key}", unit=unit,
                                              higher_is_better=better, values=values))  # fmt: skip
    payload = {
        "what": __doc__.split("\n\n")[0],
        "study": str(STUDY.relative_to(PROJECT_ROOT)),
        "level_set": LEVEL_SET,
        "quick": a.quick,
        "users": users,
        "pools": pools,
        "doc_tokens": rag.workload.rag.doc_tokens,
        "k": rag.workload.rag.k,
        "vllm_kv_cache_gib": a.kv_cache_gib,
        "reps": a.reps,
        "steady_requests": a.steady_requests,
        "wall_s": time.time() - started,
        "summary": summary,
        "runs": rows,
    }
    write_result(out_path, payload, new_record("working_set", a.reps, numbers, load_before))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()

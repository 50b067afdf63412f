"""Do engines that stay loaded between levels cost the measured engine CPU?

The sweep keeps every engine of a study loaded while the others run (`keep_engines_loaded`), so a
study of 3 repeats starts vLLM once, not three times. That is only fair if an idle engine costs
nothing. Measured here through the path `cliffbench run` takes (`make_engine` on the default
study's specs, `run_level` with every probe):

1. idle cost: every engine of the default study loaded, nothing running; the CPU time of this
   process's whole tree (vLLM's engine-core process included) over `--idle-s` seconds, in cores;
2. effect on a measured engine: `--target` at `--users` users, the same requests, with the other
   engines loaded vs stopped, interleaved (loaded, stopped, loaded, stopped...) for `--pairs`
   pairs; median ratio of output tok/s and its range over pairs.

    .venv/bin/python benchmarks/idle_engines.py [--idle-s 20] [--pairs 2] [--target llama-server]
    .venv/bin/python benchmarks/idle_engines.py --quick   # a check: llama.cpp engines only, 1 pair, temp dir

The default target is the study's 4-slot llama.cpp engine (llama-server's default layout, the
former `llamacpp-slots-4`), found by what it is. Writes benchmarks/results/idle_engines.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from cliffbench.bench.load.driver import run_level
from cliffbench.bench.spec.study import load_study
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.provenance import collect_provenance
from cliffbench.bench.workload.requests import build_requests
from cliffbench.config import PROJECT_ROOT
from cliffbench.engines import Engine, make_engine
from cliffbench.engines.specs import EngineSpec, LlamaCppSpec
from cliffbench.models.tokenizer import model_tokenizer

OUT = Path(__file__).parent / "results" / "idle_engines.json"
STUDY = PROJECT_ROOT / "studies" / "default.yaml"


def tree_cpu_s() -> float:
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


async def idle_cost(seconds: float) -> dict[str, float]:
    busy0 = psutil.cpu_times()
    t0, c0 = time.monotonic(), tree_cpu_s()
    await asyncio.sleep(seconds)
    t1, c1 = time.monotonic(), tree_cpu_s()
    busy1 = psutil.cpu_times()
    system = sum(getattr(busy1, f) - getattr(busy0, f) for f in ("user", "nice", "system", "irq", "softirq"))
    return {"wall_s": t1 - t0, "kit_tree_cores": (c1 - c0) / (t1 - t0), "system_cores": system / (t1 - t0)}


async def level_tok_s(engine: Engine, reqs: Any, users: int) -> tuple[float, float]:
    """(output tok/s, event-loop lag p99 s) of one level."""
    run = await run_level(engine, reqs, concurrency=users)
    ok = [r for r in run.records if r.status == "ok" and not r.warmup]
    tokens = sum(len(r.token_times_s) for r in ok)
    span = max(r.token_times_s[-1] for r in ok) - min(r.t_submit_s for r in ok)
    return tokens / span, float(run.lag_p99_s)


def default_target(engines: list[EngineSpec]) -> str:
    """The study's llama.cpp slots engine with 4 slots (else its first slots engine)."""
    slots = [e for e in engines if isinstance(e, LlamaCppSpec) and e.kind == "llamacpp-slots"]
    if not slots:
        raise SystemExit(f"--target: {STUDY.name} has no llamacpp-slots engine; name one")
    return ([e for e in slots if e.slot_layout()[0] == 4] or slots)[0].name


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    study = load_study(STUDY)
    specs = {e.name: e for e in study.engines}
    a.target = a.target or default_target(study.engines)
    if a.target not in specs:
        raise SystemExit(f"--target: {a.target!r} is not an engine of {STUDY.name} ({', '.join(specs)})")
    target = specs[a.target]
    # --quick loads the llama.cpp engines only: three vLLM starts would take minutes
    others = [s for n, s in specs.items() if n != a.target and not (a.quick and s.kind == "vllm")]
    tok = model_tokenizer([target.model])
    chat = study.level_sets[0].workload
    reqs = build_requests(chat.model_copy(update={"seed": 11}), 2 * a.users, tok, max_context=1024)
    engine = make_engine(target)
    await engine.start()
    loaded: list[Engine] = []
    rows: list[dict[str, Any]] = []
    idle: dict[str, float] = {}
    try:
        await level_tok_s(engine, reqs[: a.users], a.users)  # warm the target once
        for pair in range(a.pairs):
            for state in ("loaded", "stopped") if pair % 2 == 0 else ("stopped", "loaded"):
                if state == "loaded" and not loaded:
                    for s in others:
                        e = make_engine(s)
                        await e.start()
                        loaded.append(e)
                    if not idle:
                        idle = await idle_cost(a.idle_s)
                        print(f"idle, every engine loaded: kit tree {idle['kit_tree_cores']:.3f} cores", flush=True)
                if state == "stopped":
                    while loaded:
                        await loaded.pop().stop()
                load1 = os.getloadavg()[0]
                tok_s, lag_s = await level_tok_s(engine, reqs, a.users)
                rows.append(
                    {"pair": pair, "others": state, "tok_s": tok_s, "lag_p99_s": lag_s, "loadavg_1m_before": load1}
                )
                print(f"pair {pair} others {state}: {tok_s:.1f} tok/s, lag p99 {1e3 * lag_s:.2f} ms", flush=True)
    finally:
        for e in loaded:
            await e.stop()
        await engine.stop()
    lag = {st: float(np.median([r["lag_p99_s"] for r in rows if r["others"] == st])) for st in ("loaded", "stopped")}
    ratios = []
    for pair in range(a.pairs):
        by = {r["others"]: r["tok_s"] for r in rows if r["pair"] == pair}
        ratios.append(by["loaded"] / by["stopped"])
    return {
        "benchmark": "idle_engines",
        "path": "make_engine(spec of studies/default.yaml) + run_level with every probe (cliffbench run's path)",
        "target": a.target,
        "users": a.users,
        "idle": idle,
        "runs": rows,
        "loaded_over_stopped_median": float(np.median(ratios)),
        "loaded_over_stopped_min": float(min(ratios)),
        "loaded_over_stopped_max": float(max(ratios)),
        "pairs": a.pairs,
        "lag_p99_s_median": lag,
        "provenance": collect_provenance().model_dump(mode="json"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--idle-s", type=float, default=20.0)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--target", default=None, help="study engine label (default: its 4-slot llama.cpp engine)")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="llama.cpp engines only, 2 s idle, 1 pair, 2 users, temp dir")
    p.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    a = p.parse_args()
    if a.quick:
        a.idle_s, a.pairs, a.users = 2.0, 1, 2
    a.out = a.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if a.quick else OUT)
    before = loadavg()
    doc = asyncio.run(main_async(a))
    by_pair = [{r["others"]: r["tok_s"] for r in doc["runs"] if r["pair"] == i} for i in range(a.pairs)]
    ratio = RepeatedNumber(
        name=f"{a.target} {a.users} users, others loaded / stopped tok/s",
        values=[x["loaded"] / x["stopped"] for x in by_pair],
    )
    write_result(a.out, doc, new_record("idle_engines", a.pairs, [ratio], before))
    print(
        f"idle engines: {doc['idle']['kit_tree_cores']:.3f} cores; {a.target} at {a.users} users, others loaded / "
        f"stopped: x{doc['loaded_over_stopped_median']:.3f} (range {doc['loaded_over_stopped_min']:.3f}-"
        f"{doc['loaded_over_stopped_max']:.3f} over {a.pairs} pairs); wrote {a.out}"
    )


if __name__ == "__main__":
    main()

"""Engine tuning sweep: each engine family's configurations, measured through `cliffbench run`'s path.

llama.cpp (`llamacpp-slots`): weights in Q4_1, Q8_0, F16, BF16 and F32 (the last three quantised
locally from the F32 GGUF, models/variants.py) x 8, 16 and 32 slots at 32 users; one slot count
(32) per precision at 1 user. vLLM: fp32 and bf16 x eager and compiled, and bf16 eager with
vLLM's own OpenMP binding (`auto`, which keeps one core for its front end) against `all`.

Each configuration is a one-engine study of the default study's `chat` level set (same prompt and
output lengths, requests per level and per user, warm-up, SLO) at 1 and 32 users (the ends of the
default study's curve), run by `run_study_async` on an engine this script starts (its start time
is timed). Repeats are interleaved: round r measures every configuration once, in an order
rotated by r, so slow drift of the machine hits all alike; repeat r of the study is measured in
round r (`only=`). Busy levels are flagged, not rerun.

Writes benchmarks/results/engine_tuning.json (bench/store/tuning.py's TuningSweep: per configuration the
per-repeat output tok/s, TTFT p50 and start time, the engine's describe(), the machine's CPU model
and flags), then prints each configuration beside its family's best and the cross-family ratios.

Duration on the 2-core Xeon, from a calibration round (2026-12-02, other work on the machine, load
average 2.5-5.7): a 32-slot llama.cpp configuration at 1 and 32 users took 37 s a round, an 8-slot
one at 32 users 35 s; 16 slots should fall between (25-30 s, not timed), and the default study's
stored vLLM levels with a 35 s start give ~65 s a vLLM eager configuration. That is 9-11 min a round, so **about
30 min for 3 repeats with --skip-compiled** (26-34; the 20-minute aim is missed: --repeats 2 takes
about 20 min). The two compiled vLLM configurations add 2-3 min of start each per round: about
45 min in all without the flag.

    .venv/bin/python benchmarks/engine_tuning.py --skip-compiled       # the sweep, ~30 min
    .venv/bin/python benchmarks/engine_tuning.py                       # with compiled, ~45 min
    .venv/bin/python benchmarks/engine_tuning.py --quick               # smoke run, < 2 min, JSON to a temp dir
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cliffbench.bench.plan import ordered_work, plan_levels
from cliffbench.bench.probes import local_hardware
from cliffbench.bench.spec.study import StudySpec, load_study
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.levels import load_results, write_manifest
from cliffbench.bench.store.provenance import StudyManifest, collect_provenance
from cliffbench.bench.store.tuning import TuningRun, TuningSweep
from cliffbench.bench.sweep import run_study_async
from cliffbench.config import PROJECT_ROOT
from cliffbench.engines import make_engine
from cliffbench.models import prepare_model

OUT = Path(__file__).parent / "results" / "engine_tuning.json"
DEFAULT_STUDY = PROJECT_ROOT / "studies" / "default.yaml"
PRECISIONS = ("q4_1", "q8_0", "f16", "bf16", "f32")
SLOTS = (8, 16, 32)
TOP_USERS = 32
_VLLM = {"kind": "vllm", "max_model_len": 1024, "max_num_seqs": 256, "kv_cache_gib": 1.0}


def configurations(skip_compiled: bool, quick: bool) -> list[tuple[dict[str, Any], list[int]]]:
    """(engine spec, user counts) per configuration; labels name every setting that differs."""
    out: list[tuple[dict[str, Any], list[int]]] = []
    precisions, slots = (("q8_0", "bf16"), (32,)) if quick else (PRECISIONS, SLOTS)
    for p in precisions:
        for s in slots:
            spec = {
                "kind": "llamacpp-slots",
                "label": f"llamacpp-{p}-{s}",
                "slots": s,
                "ctx_per_slot": 1024,
                "model": {"name": "smollm2-135m", "gguf_variant": p},
            }
            out.append((spec, [1, TOP_USERS] if s == max(slots) else [TOP_USERS]))
    for dtype, short in (("float32", "fp32"), ("bfloat16", "bf16")):
        if quick and short == "fp32":
            continue
        for eager in (True, False):
            if not eager and (skip_compiled or quick):
                continue
            label = f"vllm-{short}-{'eager' if eager else 'compiled'}"
            spec = {**_VLLM, "label": label, "dtype": dtype, "enforce_eager": eager, "omp_threads_bind": "all"}
            out.append((spec, [1, TOP_USERS]))
    if not quick:
        spec = {**_VLLM, "label": "vllm-bf16-eager-bind-auto", "dtype": "bfloat16", "omp_threads_bind": "auto"}
        out.append((spec, [1, TOP_USERS]))
    return out


def _study(engine: dict[str, Any], users: list[int], repeats: int, quick: bool) -> StudySpec:
    base = load_study(DEFAULT_STUDY)
    chat = next(ls for ls in base.level_sets if ls.name == "chat")
    load = chat.load.model_copy(update={"concurrency": users, "repeats": repeats, "only_at": {}, "search": None})
    workload = chat.workload
    if quick:  # tiny requests: a smoke run of the path, not a measurement
        workload = workload.model_copy(update={"output": workload.output.model_copy(update={"mean": 8})})
        load = load.model_copy(update={"requests_per_level": 4, "requests_per_user": 1})
    return StudySpec.model_validate(
        {
            "name": f"tuning-{engine['label']}",
            "engines": [engine],
            "level_sets": [{"name": "chat", "workload": workload.model_dump(), "load": load.model_dump()}],
            "slo": base.slo.model_dump(),
            "busy": {"max_foreign_cores": base.busy.max_foreign_cores, "reruns": 0},
        }
    )


async def _round(spec: StudySpec, r: int, root: Path, starts: dict[str, list[float]], describe: dict[str, Any]) -> None:
    es = spec.engines[0]
    keys = [lv.key(e.name) for e, lv in ordered_work(spec, plan_levels(spec)) if lv.repeat == r]
    engine = make_engine(es)
    t0 = time.perf_counter()
    try:
        await engine.start()
        starts.setdefault(es.name, []).append(time.perf_counter() - t0)
        describe.setdefault(es.name, engine.describe())
        await run_study_async(spec, root=root, engines={es.name: engine}, only=keys)
    finally:
        await engine.stop()


def _runs(
    specs: Sequence[StudySpec], root: Path, starts: dict[str, list[float]], describe: dict[str, Any]
) -> list[TuningRun]:
    out = []
    for spec in specs:
        es = spec.engines[0]
        levels = load_results(spec.name, root).levels.sort_values("repeat")
        family = es.family
        assert family is not None  # configurations() builds only llama.cpp and vLLM specs
        for users in sorted(int(u) for u in levels["concurrency"].unique()):
            g = levels[levels["concurrency"] == users]
            ok = g[g["status"] == "ok"]
            out.append(
                TuningRun(
                    config=es.name,
                    family=family,
                    users=users,
                    spec={"kind": es.kind, **es.model_dump(mode="json", exclude_defaults=True)},
                    precision=es.precision(),
                    output_tok_s=[float(x) for x in ok["output_tok_s"]],
                    ttft_p50_s=[float(x) for x in ok["ttft_s_p50"]],
                    start_s=[round(s, 2) for s in starts.get(es.name, [])],
                    busy_levels=int(g["busy_flagged"].sum()),
                    failed_levels=int((g["status"] != "ok").sum()),
                    engine_config=describe.get(es.name, {}),
                )
            )
    return out


async def sweep(args: argparse.Namespace) -> TuningSweep:
    prepare_model()  # and the GGUF variants the configurations name
    configs = configurations(args.skip_compiled, args.quick)
    if args.only:
        wanted = set(args.only.split(","))
        configs = [c for c in configs if c[0]["label"] in wanted]
    repeats = 1 if args.quick else args.repeats
    specs = [_study(engine, users, repeats, args.quick) for engine, users in configs]
    starts: dict[str, list[float]] = {}
    describe: dict[str, Any] = {}
    load0, t0 = os.getloadavg()[0], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="engine-tuning-") as tmp:
        root = Path(tmp)
        # one hardware probe for the sweep: each study would otherwise spend ~4 s probing the same CPU
        probe = local_hardware()
        for spec in specs:
            write_manifest(spec.name, StudyManifest(hardware_probe=probe), root)
        for r in range(repeats):
            order = specs[r % len(specs) :] + specs[: r % len(specs)]
            for spec in order:
                t = time.monotonic()
                await _round(spec, r, root, starts, describe)
                print(f"round {r + 1}/{repeats} {spec.engines[0].name:28s} {time.monotonic() - t:6.1f} s", flush=True)
        runs = _runs(specs, root, starts, describe)
    chat = specs[0].level_sets[0]
    return TuningSweep(
        created_at=datetime.now(UTC),
        quick=args.quick,
        repeats=repeats,
        users=sorted({u for _, users in configs for u in users}),
        workload={"level_set": "chat", "workload": chat.workload.model_dump(mode="json"), **_load_fields(chat)},
        wall_s=round(time.monotonic() - t0, 1),
        loadavg_1m_before=load0,
        loadavg_1m_after=os.getloadavg()[0],
        machine=collect_provenance(),
        runs=runs,
    )


def _load_fields(chat: Any) -> dict[str, Any]:
    ld = chat.load
    keep = ("requests_per_level", "requests_per_user", "warmup_requests", "arrival")
    return {k: getattr(ld, k) for k in keep}


def print_table(sw: TuningSweep) -> None:
    for users in sw.users:
        best = {f: sw.winner(f, users) for f in ("llama.cpp", "vllm")}
        print(f"\n{users} users: median output tok/s (min-max over {sw.repeats} repeats), x its family's best")
        for run in sw.at(users):
            lo, hi = run.range_tok_s
            top = best[run.family]
            rel = run.median_tok_s / top.median_tok_s if top else float("nan")
            print(
                f"  {run.config:28s} {run.median_tok_s:7.1f} ({lo:6.1f}-{hi:6.1f})  x{rel:4.2f}  "
                f"TTFT p50 {run.median_ttft_p50_s * 1000:6.0f} ms  start {statistics.median(run.start_s):5.1f} s"
            )
        pairs = [
            ("best of each", best["vllm"], best["llama.cpp"]),
            ("matched fp32", sw.run("vllm-fp32-eager", users), sw.run(f"llamacpp-f32-{max(SLOTS)}", users)),
            ("matched bf16", sw.run("vllm-bf16-eager", users), sw.run(f"llamacpp-bf16-{max(SLOTS)}", users)),
        ]
        for what, a, b in pairs:
            if a and b:
                mid, lo, hi = sw.ratio(a, b)
                print(f"  {what:13s} {a.config} / {b.config}: x{mid:.2f} ({lo:.2f}-{hi:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--skip-compiled", action="store_true", help="leave out compiled vLLM (2-3 min a start)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 configurations, 8-token answers")
    ap.add_argument("--only", default="", help="comma-separated configuration labels to measure (default: all)")
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats: {args.repeats} is not allowed; allowed: 1 or more")
    known = [spec["label"] for spec, _ in configurations(args.skip_compiled, args.quick)]
    if unknown := [c for c in args.only.split(",") if c and c not in known]:
        ap.error(f"--only: unknown configuration {unknown[0]!r}; allowed: {', '.join(known)}")
    before = loadavg()
    result = asyncio.run(sweep(args))
    out = args.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if args.quick else OUT)
    # every configuration's tok/s and TTFT p50 with each repeat's value: what compare-bench compares
    numbers = [
        RepeatedNumber(name=f"{run.config} {run.users} users {what}", unit=unit, higher_is_better=up, values=values)
        for run in result.runs
        for what, unit, up, values in (
            ("output tok/s", "tok/s", True, run.output_tok_s),
            ("TTFT p50", "s", False, run.ttft_p50_s),
        )
        if values
    ]
    write_result(out, result.model_dump(mode="json"), new_record("engine_tuning", result.repeats, numbers, before))
    print(f"wrote {out} ({result.wall_s / 60:.1f} min)")
    print_table(result)


if __name__ == "__main__":
    main()

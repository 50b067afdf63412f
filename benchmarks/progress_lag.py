"""Does the progress file cost the event loop? Harness lag with the file written in the loop
(atomic write with fsyncs, as notebook 10 did in the first study runs) vs by a writer thread, vs
no progress file at all.

Same path as `cliffbench report`'s notebook 10: `run_level` with every probe, the reporter calls
of the sweep (`level_started`, `request_done` per request, `level_finished`), on a `fake` engine
so that only the harness is measured (its timings are fixed; it holds no GIL). Variants run
interleaved in a rotated order, `--reps` times; lag p99 of each run and the median per variant.

    .venv/bin/python benchmarks/progress_lag.py [--reps 5] [--users 32] [--quick]

Writes benchmarks/results/progress_lag.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from cliffbench.bench.load.driver import run_level
from cliffbench.bench.progress.reporter import LevelTask, ProgressFile
from cliffbench.bench.spec.workload import WorkloadSpec
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.provenance import collect_provenance
from cliffbench.bench.workload.requests import build_requests
from cliffbench.engines import make_engine
from cliffbench.engines.specs import FakeSpec
from cliffbench.models.tokenizer import CharTokenizer

OUT = Path(__file__).parent / "results" / "progress_lag.json"
VARIANTS = ("no-file", "file-in-loop", "file-in-thread")


async def one(variant: str, users: int, n: int, folder: Path) -> float:
    engine = make_engine(FakeSpec(ttft_s=0.02, itl_s=0.01, max_batch=256))
    await engine.start()
    reqs = build_requests(WorkloadSpec(), n, CharTokenizer(), max_context=2048)
    pf = None if variant == "no-file" else ProgressFile(folder / "progress.json", background=variant.endswith("thread"))
    task = LevelTask("fake__chat__c", "fake", "chat", users, None, 0, n, 96 * n, False)
    if pf:
        pf.study_planned([task])
        pf.level_started(task.key, n)
    try:
        run = await run_level(engine, reqs, concurrency=users, on_record=pf.request_done if pf else None)
    finally:
        await engine.stop()
    if pf:
        pf.close()
    return float(run.lag_p99_s)


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]
            for v in order:
                lag = await one(v, a.users, a.requests, Path(tmp))
                rows.append({"rep": rep, "variant": v, "lag_p99_s": lag})
                print(f"rep {rep} {v}: lag p99 {1e3 * lag:.2f} ms", flush=True)
    lags = {v: [float(r["lag_p99_s"]) for r in rows if r["variant"] == v] for v in VARIANTS}
    med = {v: statistics.median(x) for v, x in lags.items()}
    spread = {v: (min(x), max(x)) for v, x in lags.items()}
    return {
        "benchmark": "progress_lag",
        "path": "run_level with every probe + the sweep's reporter calls on a ProgressFile, fake engine",
        "users": a.users,
        "requests": a.requests,
        "reps": a.reps,
        "runs": rows,
        "lag_p99_s_median": med,
        "lag_p99_s_range": spread,
        "provenance": collect_provenance().model_dump(mode="json"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--requests", type=int, default=320)
    p.add_argument("--quick", action="store_true", help="1 repeat, 8 users, 40 requests, JSON to a temp dir")
    p.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    a = p.parse_args()
    before = loadavg()
    if a.quick:
        a.reps, a.users, a.requests = 1, 8, 40
    a.out = a.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if a.quick else OUT)
    doc = asyncio.run(main_async(a))
    numbers = [
        RepeatedNumber(
            name=f"{v} lag p99",
            unit="s",
            higher_is_better=False,
            values=[r["lag_p99_s"] for r in doc["runs"] if r["variant"] == v],
        )
        for v in VARIANTS
    ]
    write_result(a.out, doc, new_record("progress_lag", a.reps, numbers, before))
    med = doc["lag_p99_s_median"]
    print(
        "lag p99 medians: "
        + ", ".join(f"{v} {1e3 * med[v]:.2f} ms" for v in VARIANTS)
        + f"; in-loop / thread x{med['file-in-loop'] / med['file-in-thread']:.2f}; wrote {a.out}"
    )


if __name__ == "__main__":
    main()

"""Is the cliff search cheaper than a dense grid, and does it find the same cliff?

For each engine, two studies through `run_study_async` (the path `cliffbench run` takes: probes,
samplers, streaming, the store): a dense grid at every user count from 1 to `high` (the
resolution the search reaches), and a search (`load.search`, doubling then bisection) over the
same range, same workload, SLO, repeats and requests per level. Each study runs on its own engine
started for it (start time excluded: both would pay it once). The two are interleaved per engine,
grid first for one engine and search first for the other, so slow drift of the machine is shared.

Both methods are read the same way: the highest load shown to meet the SLO below the lowest load
not shown to meet it (A), the lowest load shown to miss above A (M), and the loads between them
whose verdict stayed uncertain (undecided). The cliff, the highest load that meets, lies in
[A, M - 1]. `same_cliff`: both give the same A and M; `consistent`: their [A, M - 1] ranges
overlap (the two may each say "undecided" on a plateau within noise of the budget, and place its
edge a user apart). Reported per engine: wall time and level runs of each, their ratio (target:
the search at most half the grid), and the two readings.

    .venv/bin/python benchmarks/cliff_search.py                  # the measured run (~20 min, quiet machine)
    .venv/bin/python benchmarks/cliff_search.py --quick          # the fake engine, under a minute

Writes benchmarks/results/cliff_search.json (--quick: cliff_search.json in a new temp dir).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.bench.search.bracket import read_searches
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.levels import load_results, study_dir
from cliffbench.bench.store.provenance import collect_provenance
from cliffbench.bench.sweep import run_study_async
from cliffbench.engines import make_engine

OUT = Path(__file__).parent / "results" / "cliff_search.json"
# engine spec, and the top of its range: the serial engine's dense grid to 16 users alone would
# take ~17 min (a level's requests grow with its users and are served one at a time)
ENGINES: dict[str, tuple[dict[str, Any], int]] = {
    "ollama": ({"preset": "ollama-0.10+", "label": "ollama", "n_ctx": 1024}, 8),
    "llama-server": ({"preset": "llama-server-default", "label": "llama-server", "ctx_per_slot": 1024}, 16),
    # --quick: 3 slots, jittered times; its own timings, nothing about a real engine
    "fake": ({"kind": "fake", "label": "fake", "ttft_s": 0.01, "itl_s": 0.003, "max_batch": 3, "jitter": 0.3}, 12),
}
SLO = {"thresholds": {"ttft_s": 2.0, "tpot_s": 0.25}, "percentiles": {"ttft_s": 90, "tpot_s": 50}}
QUICK_SLO = {"thresholds": {"ttft_s": 0.25, "tpot_s": 0.25}, "percentiles": {"ttft_s": 90, "tpot_s": 50}}


def _study(name: str, engine: dict[str, Any], high: int, search: bool, args: argparse.Namespace) -> StudySpec:
    load: dict[str, Any] = {
        "concurrency": [] if search else list(range(1, high + 1)),
        "requests_per_level": 10,  # x 3 repeats = 30 >= 29 for an interval of p90, as the default study
        "requests_per_user": 2,
        "warmup_requests": 1,
        "repeats": args.repeats,
    }
    if search:
        load["search"] = {
            "low": 1,
            "high": high,
            "resolution": 1,
            "max_repeats": args.repeats + 2,
            "extra_repeats": args.extra_repeats,
        }
    return StudySpec.model_validate(
        {
            "name": name,
            "engines": [engine],
            **({"tokenizer": "fake"} if engine.get("kind") == "fake" else {}),
            "level_sets": [
                {
                    "name": "chat",
                    "workload": {
                        "kind": "lognormal",
                        "prompt": {"dist": "lognormal", "mean": 32, "sigma": 0.5, "low": 8, "high": 128},
                        "output": {"dist": "fixed", "mean": 32},
                    },
                    "load": load,
                }
            ],
            "slo": QUICK_SLO if args.quick else SLO,
            "busy": {"reruns": 0, "max_foreign_cores": 100},
        }
    )


def grid_reading(pooled: pd.DataFrame, engine: str) -> Reading:
    """A, M and the undecided loads of a dense grid's pooled verdicts (read as the search's)."""
    mine = pooled[pooled["engine"] == engine].sort_values("concurrency")
    v = dict(zip(mine["concurrency"].astype(float), mine["slo_verdict"].astype(str), strict=True))
    bad = [u for u, x in v.items() if x != "meets"]
    first_bad = bad[0] if bad else None
    meets = [u for u, x in v.items() if x == "meets" and (first_bad is None or u < first_bad)]
    a = meets[-1] if meets else None
    above = {u: x for u, x in v.items() if a is None or u > a}
    m = min((u for u, x in above.items() if x == "misses"), default=None)
    undecided = [u for u, x in above.items() if x not in ("meets", "misses") and (m is None or u < m)]
    return Reading(a, m, undecided)


@dataclass(frozen=True)
class Reading:
    meets_up_to: float | None
    first_miss: float | None
    undecided: list[float]

    def cliff_range(self, high: float) -> tuple[float, float]:
        """Where the highest load meeting the SLO lies (0: not even the lowest)."""
        return (self.meets_up_to or 0.0, (self.first_miss - 1) if self.first_miss is not None else high)


def consistent(a: Reading, b: Reading, high: float) -> bool:
    (lo1, hi1), (lo2, hi2) = a.cliff_range(high), b.cliff_range(high)
    return max(lo1, lo2) <= min(hi1, hi2)


async def _one(spec: StudySpec, root: Path) -> tuple[float, Reading, int, dict[str, Any]]:
    engine = make_engine(spec.engines[0])
    await engine.start()
    try:
        t0 = time.monotonic()
        await run_study_async(spec, root=root, engines={engine.name: engine})
        wall = time.monotonic() - t0
    finally:
        await engine.stop()
    res = load_results(spec.name, root)
    searches = read_searches(study_dir(spec.name, root))
    if searches:
        s = searches[0]
        extra = {"extra_repeats": s.extra_repeats, "budget_spent": s.budget_spent, "path": s.path_text()}
        return wall, Reading(s.meets_up_to, s.first_miss, s.undecided), len(res.levels), extra
    pooled = pool_repeats(res.levels, res.requests, SloJudge.of(spec.slo))
    verdicts = pooled.set_index("concurrency")["slo_verdict"].sort_index()
    return wall, grid_reading(pooled, spec.engines[0].name), len(res.levels), {"verdicts": verdicts.to_dict()}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    root = Path(tempfile.mkdtemp(prefix="cliff-search-"))
    load0 = os.getloadavg()[0]
    try:
        for i, name in enumerate(args.engines.split(",")):
            engine, high = ENGINES[name]
            high = args.high or high
            order = ["grid", "search"] if i % 2 == 0 else ["search", "grid"]
            got: dict[str, Any] = {}
            readings: dict[str, Reading] = {}
            for how in order:
                spec = _study(f"{name}-{how}", engine, high, how == "search", args)
                wall, r, n_levels, extra = await _one(spec, root)
                readings[how] = r
                got[how] = {
                    "wall_s": round(wall, 1),
                    "cliff": [r.meets_up_to, r.first_miss],
                    "undecided": r.undecided,
                    "cliff_range": list(r.cliff_range(high)),
                    "level_runs": n_levels,
                    **extra,
                }
                print(f"{name:14s} {how:6s} {wall:7.1f} s  {r}  ({n_levels} level runs)", flush=True)
            rows.append(
                {
                    "engine": name,
                    "spec": engine,
                    "high_users": high,
                    "order": order,
                    **{f"{k}_{how}": v for how, d in got.items() for k, v in d.items()},
                    "time_ratio_search_over_grid": round(got["search"]["wall_s"] / got["grid"]["wall_s"], 3),
                    "same_cliff": got["search"]["cliff"] == got["grid"]["cliff"],
                    "consistent": consistent(readings["search"], readings["grid"], high),
                }
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "what": "cliff search vs a dense grid at the same resolution (1 user), same workload, SLO and repeats",
        "path": "run_study_async (the cliffbench run path: probes, samplers, streaming, store); engine start excluded",
        "reading": "A = highest load meeting below the lowest not shown to meet; M = lowest shown to miss above A; "
        "the cliff lies in cliff_range = [A, M - 1]; same_cliff: same A and M; consistent: the ranges overlap",
        "search_rule": "uncertain loads count as not meeting until one is the final bracket's upper edge; only that "
        "edge takes repeats (max_repeats each, extra_repeats for the whole search)",
        "slo": QUICK_SLO if args.quick else SLO,
        "repeats": args.repeats,
        "max_repeats": args.repeats + 2,
        "extra_repeats": args.extra_repeats,
        "quick": args.quick,
        "loadavg_1m_before": load0,
        "loadavg_1m_after": os.getloadavg()[0],
        "rows": rows,
        "machine": collect_provenance().model_dump(mode="json"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--high", type=int, default=0, help="top of every engine's range (default: its own)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--extra-repeats", type=int, default=4, help="the search's budget of repeats to settle its edge")
    ap.add_argument("--engines", default="ollama,llama-server")
    ap.add_argument("--quick", action="store_true", help="the fake engine only: a check of the harness, no claim")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here instead (a check of a small range)")
    args = ap.parse_args()
    if args.quick:
        args.engines = "fake"
    before = loadavg()
    out = asyncio.run(main_async(args))
    path = args.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if args.quick else OUT)
    # one search and one grid per engine: each ratio is a single run, and the record says so
    numbers = [
        RepeatedNumber(
            name=f"{r['engine']} search/grid time",
            higher_is_better=False,
            values=[r["time_ratio_search_over_grid"]],
        )
        for r in out["rows"]
    ]
    write_result(path, out, new_record("cliff_search", 1, numbers, before))
    print(f"wrote {path}")
    for r in out["rows"]:
        print(
            f"{r['engine']}: search/grid time x{r['time_ratio_search_over_grid']}, search {r['cliff_range_search']} "
            f"grid {r['cliff_range_grid']} (cliff ranges), same: {r['same_cliff']}, consistent: {r['consistent']}"
        )


if __name__ == "__main__":
    main()

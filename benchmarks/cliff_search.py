"""Is the cliff search cheaper than a dense grid, and does it find the same cliff?

For each engine, two studies through `run_study_async` (the path `cliffbench run` takes: probes,
samplers, streaming, the store): a dense grid at every user count from 1 to `high` (the
resolution the search reaches), and a search (`load.search`, doubling then bisection) over the
same range, same workload, SLO, repeats and requests per level. Each study runs on its own engine
started for it (start time excluded: both would pay it once). The two are interleaved per engine,
grid first for one engine and search first for the other, so slow drift of the machine is shared.
Reported per engine: wall time of each, their ratio (target: search <= half the grid), the cliff
each finds ([last level meeting the SLO, first missing it]) and whether they agree.

    .venv/bin/python benchmarks/cliff_search.py [--high 8] [--engines ollama,llama-server]

Writes benchmarks/results/cliff_search.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from cliffbench.bench.provenance import collect_provenance
from cliffbench.bench.repeats import SloJudge, pool_repeats
from cliffbench.bench.search import read_searches
from cliffbench.bench.store import load_results, study_dir
from cliffbench.bench.study import StudySpec
from cliffbench.bench.sweep import run_study_async
from cliffbench.decide.tree import engine_cliff_details
from cliffbench.engines import make_engine

OUT = Path(__file__).parent / "results" / "cliff_search.json"
ENGINES = {
    "ollama": {"preset": "ollama-0.10+", "label": "ollama", "n_ctx": 1024},
    "llama-server": {"preset": "llama-server-default", "label": "llama-server", "ctx_per_slot": 1024},
}
SLO = {"thresholds": {"ttft_s": 2.0, "tpot_s": 0.25}, "percentiles": {"ttft_s": 90, "tpot_s": 50}}


def _study(name: str, engine: dict[str, Any], high: int, search: bool, repeats: int) -> StudySpec:
    load: dict[str, Any] = {
        "concurrency": [] if search else list(range(1, high + 1)),
        "requests_per_level": 10,  # x 3 repeats = 30 >= 29 for an interval of p90, as the default study
        "requests_per_user": 2,
        "warmup_requests": 1,
        "repeats": repeats,
    }
    if search:
        load["search"] = {"low": 1, "high": high, "resolution": 1, "max_repeats": repeats + 2}
    return StudySpec.model_validate(
        {
            "name": name,
            "engines": [engine],
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
            "slo": SLO,
            "busy": {"reruns": 0, "max_foreign_cores": 100},
        }
    )


async def _one(spec: StudySpec, root: Path) -> tuple[float, list[float | None], int, list[float]]:
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
        return wall, [s.meets_up_to, s.first_miss], len(res.levels), s.undecided
    pooled = pool_repeats(res.levels, res.requests, SloJudge.of(spec.slo))
    c = engine_cliff_details(pooled)[spec.engines[0].name]
    return wall, [c.meets_up_to or None, c.first_miss], len(res.levels), []


def _overlap(a: list[float | None], b: list[float | None]) -> bool:
    lo = max(x or 0.0 for x in (a[0], b[0]))
    hi = min(x if x is not None else float("inf") for x in (a[1], b[1]))
    return lo < hi


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    root = Path(tempfile.mkdtemp(prefix="cliff-search-"))
    load0 = os.getloadavg()[0]
    try:
        for i, name in enumerate(args.engines.split(",")):
            order = ["grid", "search"] if i % 2 == 0 else ["search", "grid"]
            got: dict[str, Any] = {}
            for how in order:
                spec = _study(f"{name}-{how}", ENGINES[name], args.high, how == "search", args.repeats)
                wall, cliff, n_levels, undecided = await _one(spec, root)
                got[how] = {"wall_s": round(wall, 1), "cliff": cliff, "level_runs": n_levels, "undecided": undecided}
                print(f"{name:14s} {how:6s} {wall:7.1f} s  cliff {cliff}  ({n_levels} level runs)", flush=True)
            rows.append(
                {
                    "engine": name,
                    "spec": ENGINES[name],
                    "order": order,
                    **{f"{k}_{how}": v for how, d in got.items() for k, v in d.items()},
                    "time_ratio_search_over_grid": round(got["search"]["wall_s"] / got["grid"]["wall_s"], 3),
                    "same_cliff": got["search"]["cliff"] == got["grid"]["cliff"],
                    # both brackets contain a common cliff: [last meeting, first missing) overlap
                    "consistent": _overlap(got["search"]["cliff"], got["grid"]["cliff"]),
                }
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "what": "cliff search vs a dense grid at the same resolution (1 user), same workload, SLO and repeats",
        "path": "run_study_async (the cliffbench run path: probes, samplers, streaming, store); engine start excluded",
        "slo": SLO,
        "high_users": args.high,
        "repeats": args.repeats,
        "loadavg_1m_before": load0,
        "loadavg_1m_after": os.getloadavg()[0],
        "rows": rows,
        "machine": collect_provenance(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--high", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default="ollama,llama-server")
    args = ap.parse_args()
    out = asyncio.run(main_async(args))
    OUT.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {OUT}")
    for r in out["rows"]:
        print(
            f"{r['engine']}: search/grid time x{r['time_ratio_search_over_grid']}, cliffs search {r['cliff_search']} "
            f"grid {r['cliff_grid']}, same: {r['same_cliff']}, consistent: {r['consistent']}"
        )


if __name__ == "__main__":
    main()

"""What does `run --cluster local` cost over a local run of the same study?

Runs `cliffbench run STUDY` twice per pair, each into an empty results folder of its own (a
project root whose data/ links to this one's, so the prepared model is shared): once locally and
once with `--cluster local` (a one-node Ray cluster started and stopped by the run). The cluster
run adds Ray's start, a fresh worker process per engine block, a hardware probe per block (the local
run probes once) and the levels' trip back to the driver. Reported: the wall time of each run, the
levels stored (they must match) and the median ratio over pairs. Runs alternate local, cluster,
local, cluster... so a drift of the machine's load hits both.

    .venv/bin/python benchmarks/cluster_overhead.py [--study studies/tiny.yaml] [--pairs 1] [--out PATH]
    .venv/bin/python benchmarks/cluster_overhead.py --quick   # the study's llama.cpp engine, one level

Writes benchmarks/results/cluster_overhead.json (or --out; --quick: in a new temp dir).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cliffbench.bench.spec.study import load_study
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.provenance import collect_provenance
from cliffbench.config import DATA_DIR, PROJECT_ROOT

OUT = Path(__file__).parent / "results" / "cluster_overhead.json"


def quick_study(study: Path, folder: Path) -> Path:
    """`study` cut to its first llama.cpp engine and first level set at one user (a check in seconds,
    no vLLM start twice), written into `folder`."""
    doc = yaml.safe_load(study.read_text())
    doc["name"] = f"{doc['name']}-quick"
    doc["engines"] = [next(e for e in doc["engines"] if str(e.get("kind", "")).startswith("llamacpp"))]
    chat = doc["level_sets"][0]
    chat["load"]["concurrency"] = [1]
    doc["level_sets"] = [chat]
    path = folder / "quick.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def one_run(study: Path, name: str, cluster: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cliffbench-cluster-overhead-") as tmp:
        root = Path(tmp)
        (root / "data" / "results").mkdir(parents=True)
        for entry in DATA_DIR.iterdir():
            if entry.name != "results":
                (root / "data" / entry.name).symlink_to(entry)
        args = [sys.executable, "-m", "cliffbench", "run", str(study), "--wait-quiet-s", "0"]
        args += ["--cluster", "local"] if cluster else []
        env = {**os.environ, "CLIFFBENCH_ROOT": str(root)}
        t0 = time.monotonic()
        proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        wall_s = time.monotonic() - t0
        levels = root / "data" / "results" / name / "levels"
        stored = sorted(p.name for p in levels.iterdir()) if levels.is_dir() else []
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        shutil.rmtree(root / "data" / "results", ignore_errors=True)
    return {"cluster": cluster, "exit_code": proc.returncode, "wall_s": round(wall_s, 1), "levels": stored}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=PROJECT_ROOT / "studies" / "tiny.yaml")
    ap.add_argument("--pairs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    ap.add_argument("--quick", action="store_true", help="the study's first llama.cpp engine, one level, one pair")
    a = ap.parse_args()
    before = loadavg()
    if a.quick:
        tmp = Path(tempfile.mkdtemp(prefix="cliffbench-quick-"))
        a.study, a.pairs, a.out = quick_study(a.study, tmp), 1, a.out or tmp / OUT.name
    a.out = a.out or OUT
    name = load_study(a.study).name
    runs = []
    for i in range(a.pairs):
        for cluster in (False, True):
            r = one_run(a.study, name, cluster)
            print(
                f"pair {i + 1}: {'--cluster local' if cluster else 'local'}: {r['wall_s']} s, {len(r['levels'])} levels"
            )
            runs.append(r)
    local = [r for r in runs if not r["cluster"]]
    ray = [r for r in runs if r["cluster"]]
    out = {
        "study": str(a.study.relative_to(PROJECT_ROOT) if a.study.is_relative_to(PROJECT_ROOT) else a.study),
        "pairs": a.pairs,
        "runs": runs,
        "same_levels": all(x["levels"] == y["levels"] for x, y in zip(local, ray, strict=True)),
        "all_ok": all(r["exit_code"] == 0 for r in runs),
        "median_wall_ratio_cluster_over_local": float(
            np.median([y["wall_s"] / x["wall_s"] for x, y in zip(local, ray, strict=True)])
        ),
        "provenance": collect_provenance().model_dump(mode="json"),
    }
    numbers = [
        RepeatedNumber(
            name="cluster / local wall time",
            higher_is_better=False,
            values=[y["wall_s"] / x["wall_s"] for x, y in zip(local, ray, strict=True)],
        ),
        RepeatedNumber(name="local wall", unit="s", higher_is_better=False, values=[r["wall_s"] for r in local]),
        RepeatedNumber(name="cluster wall", unit="s", higher_is_better=False, values=[r["wall_s"] for r in ray]),
    ]
    write_result(a.out, out, new_record("cluster_overhead", a.pairs, numbers, before))
    print(f"cluster/local wall: x{out['median_wall_ratio_cluster_over_local']:.2f}; wrote {a.out}")


if __name__ == "__main__":
    main()

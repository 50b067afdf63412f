"""Burst vs steady: each default-study engine under the old starting gun and in its steady window (issue 26 item 6).

Burst is the behaviour before issue 26: every user starts at once (`ramp_s: 0`) and the metrics and
the SLO verdict are taken over every measured request, the first wave's queued prefill included.
Steady is the default study's: the users start spread over one request's duration (`ramp_s: auto`)
and the metrics and the verdict are taken over the steady window (bench/metrics/phases.py: requests
submitted once every user is present and closed before 5% have left). Both run through the kit's
real path, `run_study_async` (the sweep `cliffbench run` drives), on a study cut from the default one
per mode: the engine's own spec, its chat levels (the study's grid, less what `only_at` leaves
out), one repeat, no search. Burst numbers are `summarize_level` over all measured requests (as
levels were summarised before the window), steady numbers the stored level's.

Paired and repeated: per engine one process holds one started engine for both modes (the sweep
takes it as given), and each repeat runs burst and steady back to back on the same requests (the
same seed), in an order that alternates from repeat to repeat. Per level it prints TTFT p90, TPOT
p50 and output tok/s of both modes (median and range over repeats) and the paired steady/burst
ratio; per mode the SLO verdict pooled over the repeats (as the study pools them) and the cliff
(`decide.at_load.engine_cliff_details`) over the levels measured. JSON through the benchmark
envelope (date, git sha, versions, CPU, load before and after).

    .venv/bin/python benchmarks/steady_state.py [--engines vllm,llamacpp-f32-32] [--users 8,32] [--reps 3]
    .venv/bin/python benchmarks/steady_state.py --quick   # one llama.cpp engine, 4 users, 1 repeat, JSON to a temp dir
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliffbench.bench.metrics.level import summarize_level
from cliffbench.bench.metrics.repeats import SloJudge, judge_requests, median_range_level
from cliffbench.bench.probes import LocalHardware
from cliffbench.bench.spec.study import StudySpec, load_study
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.bench.store.levels import load_results
from cliffbench.bench.sweep import run_cut
from cliffbench.config import PROJECT_ROOT
from cliffbench.decide.at_load import engine_cliff_details
from cliffbench.engines import make_engine
from cliffbench.engines.base import Engine
from cliffbench.engines.specs import EngineSpec
from cliffbench.models import prepare_model

OUT = Path(__file__).parent / "results" / "steady_state.json"
STUDY = PROJECT_ROOT / "studies" / "default.yaml"
LEVEL_SET = "chat"
MODES = ("burst", "steady")
METRICS = {"ttft_s_p90": "TTFT p90 s", "tpot_s_p50": "TPOT p50 s", "output_tok_s": "tok/s"}


def engine_users(study: StudySpec, engine: str) -> list[int]:
    """The chat level set's user counts the default study measures `engine` at (`only_at`)."""
    load = next(ls for ls in study.level_sets if ls.name == LEVEL_SET).load
    grid = [int(c) for c in load.concurrency or []]
    only = load.only_at.get(engine) if load.only_at else None
    return [c for c in grid if only is None or c in only]


def study_for(
    base: StudySpec, es: EngineSpec, users: list[int], repeat: int, mode: str, steady: int | None
) -> StudySpec:
    """The default study cut to `es` at `users`, one repeat (seeded by `repeat`: both modes of a
    repeat get the same requests), every user at once (burst) or ramped (steady)."""
    chat = base.level_set_doc(LEVEL_SET)
    chat["load"].update(concurrency=users, repeats=1, only_at={}, search=None)
    chat["load"]["ramp_s"] = 0.0 if mode == "burst" else "auto"
    # the burst is judged over its whole level, so it waits for its drain; steady stops at its window's end
    chat["load"]["end_at_window"] = mode != "burst" and chat["load"]["end_at_window"]
    if steady is not None:
        chat["load"]["steady_requests"] = steady
    return base.one_level_set(f"steady-{es.name}-{mode}-{repeat}", es, chat, repeat)


def level_rows(spec: StudySpec, mode: str, repeat: int, root: Path, judge: SloJudge) -> list[dict[str, Any]]:
    """One row per level of a finished cut: its metrics in `mode`, and its measured requests (for
    the verdict pooled over repeats)."""
    res = load_results(spec.name, root)
    rows = []
    for _, lv in res.levels.iterrows():
        key = lv["level_key"]
        req = res.requests[(res.requests["level_key"] == key) & ~res.requests["warmup"].astype(bool)]
        if mode == "burst":  # the old summary: every measured request, the level's whole span
            tok = res.tokens[res.tokens["level_key"] == key]
            users = int(lv["concurrency"])
            cols: dict[str, Any] = summarize_level(req, tok, slo=judge.thresholds, target_concurrency=users).columns()
            req = req.drop(columns=["phase"], errors="ignore")  # judged whole, as before the window
        else:
            cols = {str(k): v for k, v in lv.items()}
        metrics = {m: float(cols[m]) for m in METRICS}
        rows.append({"engine": spec.engines[0].name, "users": int(lv["concurrency"]), "repeat": repeat, "mode": mode,
                     "status": str(lv["status"]), "n_requests": len(req),
                     "n_steady": int(lv.get("n_steady", 0) or 0), "ramp_s": float(lv.get("ramp_s", 0.0) or 0.0),
                     **metrics, "_requests": req})  # fmt: skip
    return rows


async def measure_engine(
    base: StudySpec, es: EngineSpec, users: list[int], reps: int, steady: int | None, judge: SloJudge, tmp: Path
) -> list[dict[str, Any]]:
    engine: Engine = make_engine(es)
    await engine.start()
    rows: list[dict[str, Any]] = []
    probe: LocalHardware | None = None
    try:
        for rep in range(reps):
            for mode in MODES if rep % 2 == 0 else MODES[::-1]:  # alternating: neither always runs first
                spec = study_for(base, es, users, rep, mode, steady)
                root = tmp / spec.name
                t0 = time.perf_counter()
                probe = await run_cut(spec, engine, root, probe)
                got = level_rows(spec, mode, rep, root, judge)
                rows += got
                for r in got:
                    print(f"{es.name:18s} {r['users']:3d} users rep {rep} {mode:6s} TTFT p90 {r['ttft_s_p90']:6.3f} s  "
                          f"TPOT p50 {r['tpot_s_p50']:6.3f} s  {r['output_tok_s']:6.1f} tok/s  "
                          f"({r['n_requests']} requests, {r['n_steady']} steady)", flush=True)  # fmt: skip
                print(f"  {mode} repeat {rep}: {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        await engine.stop()
    return rows


def _spread(values: list[float]) -> str:
    return f"{np.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]" if len(values) > 1 else f"{values[0]:.3g}"


def summarize(rows: list[dict[str, Any]], judge: SloJudge) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """Per engine x users: both modes' metrics over repeats, the paired steady/burst ratios, the
    pooled verdicts; and per engine and mode the cliff over its measured levels."""
    df = pd.DataFrame(rows)
    out, verdicts = [], []
    for (engine, users), g in df.groupby(["engine", "users"], sort=True):
        row: dict[str, Any] = {"engine": engine, "users": int(str(users))}
        for mode in MODES:
            m = g[g["mode"] == mode].sort_values("repeat")
            failed = int((m["status"] != "ok").sum())
            judged = judge_requests(pd.concat(list(m["_requests"]), ignore_index=True), failed, judge)
            row[f"{mode}_verdict"] = judged.verdict
            row[f"{mode}_slo_note"] = judged.note
            verdicts.append({"engine": f"{engine}|{mode}", "concurrency": users, "slo_verdict": judged.verdict})
            for metric in METRICS:
                row[f"{mode}_{metric}"] = [float(x) for x in m[metric]]
        for metric in METRICS:
            b = dict(zip(g[g["mode"] == "burst"]["repeat"], g[g["mode"] == "burst"][metric], strict=True))
            s = dict(zip(g[g["mode"] == "steady"]["repeat"], g[g["mode"] == "steady"][metric], strict=True))
            row[f"steady_over_burst_{metric}"] = [float(s[k] / b[k]) for k in sorted(b) if k in s]
        out.append(row)
    cliffs: dict[str, dict[str, str]] = {}
    for key, cliff in engine_cliff_details(pd.DataFrame(verdicts)).items():
        engine, mode = key.split("|")
        cliffs.setdefault(engine, {})[mode] = cliff.text()
    return out, cliffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=None, help="study engine labels (default: every engine of the study)")
    ap.add_argument("--users", default=None, help="user counts (default: each engine's chat levels in the study)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steady-requests", type=int, default=None, help="default: the study's")
    ap.add_argument("--quick", action="store_true", help="one llama.cpp engine, 4 users, 1 repeat, JSON to a temp dir")
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    a = ap.parse_args()
    base = load_study(STUDY)
    specs = {e.name: e for e in base.engines}
    names = a.engines.split(",") if a.engines else list(specs)
    if a.quick:  # the study's first llama.cpp slots engine: no server to start, no vLLM start-up
        if not a.engines:
            names = [next(e.name for e in base.engines if e.kind == "llamacpp-slots")]
        a.users, a.reps, a.steady_requests = a.users or "4", 1, 4
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise SystemExit(f"--engines: {unknown} not in {STUDY.name} ({', '.join(specs)})")
    out_path = a.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if a.quick else OUT)
    prepare_model()
    judge = SloJudge.of(base.slo)
    rows: list[dict[str, Any]] = []
    load_before, started = loadavg(), time.time()
    with tempfile.TemporaryDirectory(prefix="cliffbench-steady-") as tmp:
        for name in names:
            users = [int(x) for x in a.users.split(",")] if a.users else engine_users(base, name)
            rows += asyncio.run(measure_engine(base, specs[name], users, a.reps, a.steady_requests, judge, Path(tmp)))
    summary, cliffs = summarize(rows, judge)
    numbers = []
    for s in summary:
        print(f"\n{s['engine']} at {s['users']} users: verdict burst {s['burst_verdict']}, steady {s['steady_verdict']}"
              + (f" ({s['steady_slo_note']})" if s["steady_slo_note"] else ""))  # fmt: skip
        for metric, label in METRICS.items():
            ratio = s[f"steady_over_burst_{metric}"]
            print(f"  {label:11s} burst {_spread(s[f'burst_{metric}']):24s} steady {_spread(s[f'steady_{metric}']):24s}"
                  f" steady/burst {_spread(ratio)}")  # fmt: skip
            for mode in MODES:
                numbers.append(RepeatedNumber(name=f"{s['engine']} {s['users']} users {mode} {label}",
                                              unit="tok/s" if metric == "output_tok_s" else "s",
                                              higher_is_better=metric == "output_tok_s",
                                              values=s[f"{mode}_{metric}"]))  # fmt: skip
    for engine, by_mode in cliffs.items():
        print(f"cliff of {engine}: burst {by_mode.get('burst')}; steady {by_mode.get('steady')}")
    payload = {
        "what": __doc__.split("\n\n")[0],
        "study": str(STUDY.relative_to(PROJECT_ROOT)),
        "quick": a.quick,
        "slo": judge.text(),
        "reps": a.reps,
        "range_covers_median": median_range_level(a.reps),
        "steady_requests": a.steady_requests,
        "wall_s": time.time() - started,
        "summary": summary,
        "cliffs": cliffs,
        "runs": [{k: v for k, v in r.items() if k != "_requests"} for r in rows],
    }
    write_result(out_path, payload, new_record("steady_state", a.reps, numbers, load_before))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()

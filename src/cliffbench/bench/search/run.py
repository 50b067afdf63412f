"""The cliff search run against an engine: stored levels first, then probes (bench/search/bracket.py).

The state machine in `bench.search.bracket` decides where to look; this drives it. Every level stored at
a load of the engine's level set (the grid's repeats, or an earlier run's probes) is a probe
already paid for; each new probe is measured `load.repeats` times (with enough requests for an
interval of every SLO percentile) and once more per visit while its verdict is uncertain, through
the `measure` callable the sweep passes in, so a probe is measured and stored exactly as a grid
level is.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pandas as pd

from cliffbench.bench.metrics.repeats import judge_requests
from cliffbench.bench.plan import Level, Plans, plan_requests, probe_level
from cliffbench.bench.search.bracket import CliffFound, CliffSearch, read_searches, write_search
from cliffbench.bench.search.plan import probe_set, search_judge
from cliffbench.bench.spec.study import LevelSetSpec, StudySpec
from cliffbench.bench.store.levels import LevelInfo, stored_levels, study_dir
from cliffbench.config import InputError
from cliffbench.engines.specs import EngineSpec
from cliffbench.models.tokenizer import Tokenizer

__all__ = ["ProbeRunner", "search_cliff"]

ProbeRunner = Callable[[Level, Plans], Awaitable[LevelInfo]]


def _stored_loads(spec: StudySpec, es: EngineSpec, ls: LevelSetSpec, root: Path | None) -> dict[float, list[LevelInfo]]:
    """Load -> the stored, undamaged levels of engine `es` in level set `ls`, by repeat."""
    out: dict[float, list[LevelInfo]] = {}
    for info in stored_levels(spec.name, es.name, ls.name, root):
        x = info.concurrency if info.concurrency is not None else info.rate_rps
        if x is not None:
            out.setdefault(float(x), []).append(info)
    return {x: sorted(v, key=lambda i: i.repeat) for x, v in out.items()}


async def search_cliff(
    spec: StudySpec,
    es: EngineSpec,
    ls: LevelSetSpec,
    tok: Tokenizer,
    root: Path | None,
    *,
    force: bool,
    keep_failed: bool,
    measure: ProbeRunner,
) -> CliffFound:
    """Search one engine's cliff in level set `ls` (bench/search/bracket.py). Every level stored at a load
    (the grid's, or an earlier run's probes) is a probe already paid for; each new probe is
    measured `load.repeats` times, and once more per visit while its verdict is uncertain, as
    stored levels marked `probe`. With `force`, earlier probes are measured again."""
    search = ls.load.search
    assert search is not None
    judge = search_judge(spec, search)
    state = CliffSearch(search)
    pset = probe_set(ls, judge)
    t0 = asyncio.get_running_loop().time()
    measured = 0
    stored = _stored_loads(spec, es, ls, root)
    if force:  # the grid phase measured the grid again; the search's own probes are redone
        for load in list(stored):
            for info in [i for i in stored[load] if i.probe]:
                shutil.rmtree(study_dir(spec.name, root) / "levels" / info.level_key, ignore_errors=True)
            stored[load] = [i for i in stored[load] if not i.probe]
    if not keep_failed:  # a failed repeat is measured again, like a failed grid level
        stored = {x: [i for i in v if i.status == "ok"] for x, v in stored.items()}
    infos: dict[float, list[LevelInfo]] = {x: v for x, v in stored.items() if v}

    read: dict[str, pd.DataFrame] = {}  # level key -> its requests: a load is judged on every visit

    def requests_of(info: LevelInfo) -> pd.DataFrame:
        if info.level_key not in read:
            folder = study_dir(spec.name, root) / "levels" / info.level_key
            read[info.level_key] = pd.read_parquet(folder / "requests.parquet")
        return read[info.level_key]

    def judged(x: float) -> str:
        parts = [requests_of(i) for i in infos.get(x, []) if i.status == "ok"]
        reqs = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["status"])
        if len(reqs) and "warmup" in reqs:
            reqs = reqs[~reqs["warmup"].astype(bool)]
        failed = sum(i.status != "ok" for i in infos.get(x, []))
        return str(judge_requests(reqs, failed, judge)["slo_verdict"])

    for g in sorted(infos):
        state.record(g, judged(g), len(infos[g]), source="probe" if any(i.probe for i in infos[g]) else "grid")
    while (x := state.next_x()) is not None:
        have = len(infos.get(x, []))
        want = ls.load.repeats if have < ls.load.repeats else have + 1
        taken = {i.repeat for i in infos.get(x, [])}
        for _ in range(have, min(want, search.max_repeats)):
            r = min(set(range(search.max_repeats + len(taken) + 1)) - taken)
            taken.add(r)
            lv = probe_level(spec, pset, x, r)
            try:
                plans = {(lv.index, r): plan_requests(spec, lv, tok)}
            except ValueError as exc:
                raise InputError(f"level_sets.{ls.name}.load.search: {exc}") from None
            infos.setdefault(x, []).append(await measure(lv, plans))
            measured += 1
        state.record(x, judged(x), len(infos.get(x, [])))
    found = state.result(study=spec.name, engine=es.name, level_set=ls.name, slo=judge.text(), confidence=judge.level)
    found = found.model_copy(update={"probes_measured": measured, "wall_s": asyncio.get_running_loop().time() - t0})
    # a resumed search that measured nothing keeps the record of the run that did: its path in the
    # order it was walked, its probe count and wall time (the interval is the same by construction)
    before = {(s.engine, s.level_set): s for s in read_searches(study_dir(spec.name, root))}.get((es.name, ls.name))
    if (
        measured == 0
        and before is not None
        and (before.meets_up_to, before.first_miss) == (found.meets_up_to, found.first_miss)
    ):
        return before
    write_search(study_dir(spec.name, root), found)
    return found

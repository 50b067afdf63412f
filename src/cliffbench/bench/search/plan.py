"""What a cliff search will measure, before it runs: which engines search a level set, the level
set its probes are measured with, and stand-ins for its probes in the study's plan, so the
progress file's ETA covers the search too.

A search's probes are chosen as it runs, so their number is only expected: the loads the state
machine would visit (beyond the grid's) were the cliff midway through the range on a log scale
and no verdict uncertain, each measured `load.repeats` times. Each stand-in is planned like the
probe it stands for (its requests and tokens), so the ETA predicts it from the engine's measured
rate. A probe that ends takes the place of the next stand-in of its engine and level set; the
stand-ins left when the search ends are dropped (`bench.progress.reporter`).
"""

from __future__ import annotations

import math

from cliffbench.bench.metrics.level import min_n_for_ci
from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.bench.plan import plan_requests, probe_level
from cliffbench.bench.progress.eta import STAND_IN, LevelTask
from cliffbench.bench.search.bracket import CliffSearch
from cliffbench.bench.spec.search import SearchSpec
from cliffbench.bench.spec.study import LevelSetSpec, StudySpec
from cliffbench.engines.specs import EngineSpec
from cliffbench.models.tokenizer import Tokenizer

__all__ = ["expected_loads", "probe_set", "search_judge", "searched_engines", "stand_in_tasks"]


def searched_engines(spec: StudySpec, ls: LevelSetSpec, engines: list[EngineSpec]) -> list[EngineSpec]:
    """The engines of `engines` (in the order given) that search level set `ls`."""
    search = ls.load.search
    if search is None:
        return []
    wanted = search.engines
    # an engine sitting the level set out (only_at == []) or left out of the search does not search
    return [es for es in engines if ls.load.only_at.get(es.name) != [] and (wanted is None or es.name in wanted)]


def search_judge(spec: StudySpec, search: SearchSpec) -> SloJudge:
    th, pc = search.judge_terms()
    return SloJudge(th, pc) if th else SloJudge.of(spec.slo)


def probe_set(ls: LevelSetSpec, judge: SloJudge) -> LevelSetSpec:
    """`ls` with enough requests per repeat that a probe's first `load.repeats` repeats hold together
    an interval of every SLO percentile (p90: 29, p99: 299) over their steady requests (a verdict
    judges those alone, bench/metrics/phases.py): fewer could only ever be uncertain."""
    need = max(min_n_for_ci(judge.percentile(m), judge.level) for m in judge.thresholds)
    per_repeat = -(-need // ls.load.repeats)
    update = {
        "requests_per_level": max(ls.load.requests_per_level or 0, per_repeat),
        "steady_requests": max(ls.load.steady_requests or 0, per_repeat),
    }
    return ls.model_copy(update={"load": ls.load.model_copy(update=update)})


def expected_loads(search: SearchSpec, grid: list[float]) -> list[float]:
    """The loads beyond `grid` a search visits when its cliff is midway (log scale) and no verdict
    is uncertain: about 2 log2(high / low) of them."""
    cliff = math.sqrt(search.low * search.high)
    state = CliffSearch(search)
    for g in grid:
        if search.low <= g <= search.high:
            state.record(g, "meets" if g <= cliff else "misses", 1, source="grid")
    out: list[float] = []
    while (x := state.next_x()) is not None and len(out) < 100:
        out.append(x)
        state.record(x, "meets" if x <= cliff else "misses", 1)
    return out


def stand_in_tasks(spec: StudySpec, engines: list[EngineSpec], tok: Tokenizer) -> list[LevelTask]:
    """Stand-ins for the expected probes of every search of `spec`, for the study's plan."""
    out: list[LevelTask] = []
    for ls in spec.level_sets:
        search = ls.load.search
        if search is None:
            continue
        grid = [float(x) for x in (ls.load.concurrency if search.over == "users" else ls.load.rate_rps or [])]
        loads = expected_loads(search, grid)
        pset = probe_set(ls, search_judge(spec, search))
        for es in searched_engines(spec, ls, engines):
            n = 0
            for x in loads:
                for r in range(ls.load.repeats):
                    lv = probe_level(spec, pset, x, r)
                    try:
                        reqs, warm = plan_requests(spec, lv, tok)
                    except ValueError:
                        continue  # the search itself names the bad input when it plans this probe
                    out.append(
                        LevelTask(
                            key=f"{es.name}__{ls.name}{STAND_IN}{n}",
                            engine=es.name,
                            level_set=ls.name,
                            concurrency=lv.concurrency,
                            rate_rps=lv.rate_rps,
                            repeat=r,
                            n_requests=len(reqs) + len(warm),
                            planned_tokens=sum(len(q.prompt_token_ids) + q.max_tokens for q in (*reqs, *warm)),
                            stored=False,
                        )
                    )
                    n += 1
    return out

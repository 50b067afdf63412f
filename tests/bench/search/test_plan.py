"""The searches' expected probes in a study's plan: which loads a search is expected to visit, and
the ETA's stand-ins taken by the probes that ran and dropped when the search ends."""

from __future__ import annotations

from cliffbench.bench.plan import study_tokenizer
from cliffbench.bench.progress.eta import STAND_IN, LevelTask, StudyTracker
from cliffbench.bench.search.plan import expected_loads, stand_in_tasks
from cliffbench.bench.spec.search import SearchSpec
from cliffbench.bench.spec.study import StudySpec


def test_expected_loads_skip_the_grid() -> None:
    # cliff expected at 8 (midway from 1 to 64 on a log scale): the default grid brackets it,
    # the search bisects 8..16
    assert expected_loads(SearchSpec(low=1, high=64), [1, 2, 4, 8, 16, 32]) == [12.0, 10.0, 9.0]
    assert expected_loads(SearchSpec(low=1, high=16), []) == [1.0, 2.0, 4.0, 8.0, 6.0, 5.0]


def _task(key: str, users: int, tokens: int = 100) -> LevelTask:
    return LevelTask(key, "e", "chat", users, None, 0, 10, tokens, False)


def test_probes_take_stand_ins_and_the_rest_are_dropped() -> None:
    grid = _task("e__chat__c0001", 1)
    stand_ins = [_task(f"e__chat{STAND_IN}{i}", 3) for i in range(3)]
    tr = StudyTracker()
    tr.planned([grid, *stand_ins], 0.0)
    tr.started(grid.key, 0.0)
    tr.finished(grid.key, 10.0)  # 100 tokens in 10 s: each stand-in predicted at 10 s
    assert tr.eta_s(10.0) == 30.0 and tr.n == 4
    tr.started("e__chat__c0003", 10.0)  # a probe: not in the plan, it ends a stand-in
    tr.finished("e__chat__c0003", 30.0)
    assert tr.done == 2 and tr.eta_s(30.0) == 40.0  # the same load now predicted from the probe
    tr.search_finished("e", "chat", 30.0)
    assert tr.done == tr.n == 4 and tr.eta_s(30.0) == 0.0


def test_stand_ins_are_planned_like_probes() -> None:
    spec = StudySpec.model_validate(
        {
            "name": "plan",
            "tokenizer": "fake",
            "engines": [{"kind": "fake", "label": "a"}, {"kind": "fake", "label": "b"}],
            "level_sets": [
                {
                    "name": "chat",
                    "workload": {"kind": "fixed", "prompt": {"mean": 8}, "output": {"mean": 9}},
                    "load": {
                        "concurrency": [1, 2, 4],
                        "repeats": 2,
                        "warmup_requests": 0,
                        "search": {"low": 1, "high": 16, "engines": ["b"], "slo": {"ttft_p50": 1}},
                    },
                }
            ],
        }
    )
    tasks = stand_in_tasks(spec, list(spec.engines), study_tokenizer(spec))
    # cliff expected at 4: the grid meets at 1, 2, 4; the search doubles to 8 and bisects 6, 5
    assert [(t.engine, t.concurrency, t.repeat) for t in tasks] == [("b", x, r) for x in (8, 6, 5) for r in (0, 1)]
    assert all(STAND_IN in t.key and t.planned_tokens > 0 and not t.stored for t in tasks)

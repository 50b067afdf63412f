"""The cause of a cliff, named from stored levels: on `fake` engines whose mechanism is known by
construction (slots that queue; a decode step that grows with the batch). The fake's timings are
its own; nothing here claims anything about a real engine."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest

from cliffbench.bench import sweep
from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.bench.search.bracket import read_searches
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import load_results, study_dir
from cliffbench.decide.causes import cliff_cause, latency_components, study_cliffs
from cliffbench.report.data import ReportData
from cliffbench.report.sections import cliff_section

pytestmark = [pytest.mark.usefixtures("fixed_probe"), pytest.mark.slow]

SLOTS = {"kind": "fake", "label": "slots2", "ttft_s": 0.01, "itl_s": 0.004, "max_batch": 2}
BATCHY = {"kind": "fake", "label": "batchy", "ttft_s": 0.002, "itl_s": 0.002, "itl_per_seq_s": 0.001}


def _spec(engine: dict[str, Any], slo: dict[str, float]) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"why-{engine['label']}",
            "tokenizer": "fake",
            "engines": [engine],
            "level_sets": [
                {
                    "name": "chat",
                    "workload": {"kind": "fixed", "prompt": {"mean": 8}, "output": {"mean": 9}},
                    "load": {
                        "concurrency": [1, 2],
                        "requests_per_level": 1,
                        "requests_per_user": 6,
                        "warmup_requests": 0,
                        "repeats": 2,
                        "search": {"low": 1, "high": 16, "slo": slo, "max_repeats": 3},
                    },
                }
            ],
            "slo": {"thresholds": {k.split("_p")[0] + "_s": v for k, v in slo.items()}, "percentiles": {"ttft_s": 50}},
            "busy": {"reruns": 0, "max_foreign_cores": 100},
        }
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("why")
    out: dict[str, Any] = {}
    for engine, slo in ((SLOTS, {"ttft_p50": 0.03}), (BATCHY, {"tpot_p50": 0.0065})):
        spec = _spec(engine, slo)
        asyncio.run(sweep.run_study_async(spec, root=root))
        out[str(engine["label"])] = (spec, load_results(spec.name, root), read_searches(study_dir(spec.name, root)))
    return out


def test_components_add_up_to_the_latency(stored: dict[str, Any]) -> None:
    _, res, _ = stored["slots2"]
    comp = latency_components(res, "chat")
    assert {"queue_s", "prefill_s", "decode_s", "running", "waiting", "step_batch"} <= set(comp.columns)
    # two slots: from 2 users on both decode at most steps (a step can fall while a request awaits its first token)
    batch = comp.set_index("concurrency")["step_batch"]
    assert 0.8 <= batch.loc[1] <= 1.0 and batch.loc[batch.index.max()] > 1.5
    ok = res.requests[(res.requests["status"] == "ok")]
    mean_e2e = ok.groupby("concurrency")["e2e_s"].mean()
    parts = comp.set_index("concurrency")[["queue_s", "prefill_s", "decode_s"]].sum(axis=1)
    pd.testing.assert_series_equal(parts, mean_e2e.loc[parts.index], check_names=False, rtol=1e-6)
    # two slots: nobody queues at 2 users, most of TTFT is queue beyond 4
    q = comp.set_index("concurrency")["queue_share"]
    assert q.loc[2] < 0.2 and q.loc[q.index.max()] > 0.5


@pytest.mark.parametrize(
    ("label", "mechanism", "words"), [("slots2", "queue", "all 2 slots busy"), ("batchy", "decode", "batch-bound")]
)
def test_cause_names_the_mechanism_built_in(stored: dict[str, Any], label: str, mechanism: str, words: str) -> None:
    spec, res, searches = stored[label]
    (found,) = searches
    assert found.meets_up_to is not None and found.first_miss is not None
    th, pc = spec.level_sets[0].load.search.judge_terms()
    judge = SloJudge(th, pc)
    pooled = pool_repeats(res.levels, res.requests, judge)
    comp = latency_components(res, "chat")
    cause = cliff_cause(
        comp, pooled, label, found.meets_up_to, found.first_miss, judge, slots=res.engine_specs[label].batch_capacity()
    )
    assert cause.mechanism == mechanism and words in cause.text, cause.text
    assert f"at {found.first_miss:g} users" in cause.text


def test_section_reports_searched_cliff_and_cause(stored: dict[str, Any]) -> None:
    spec, res, searches = stored["slots2"]
    data = ReportData(study=spec.name, results=res, claims=pd.DataFrame(), searches=tuple(searches))
    text = cliff_section(data, "chat")
    assert searches[0].text() in text and "| search |" in text and "queue wait is" in text
    assert searches[0].path_text() in text
    cliffs = study_cliffs(data.pooled, "chat", searches)
    assert cliffs["slots2"].source == "search"

"""The queue wait of a served engine, estimated from its scraped /metrics (its requests carry no
scheduling stamp): the histogram's delta over the level, else Little's law. Tables built by hand:
this tests the arithmetic, not an engine."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.bench.store.levels import Results
from cliffbench.decide.causes import cliff_cause, latency_components, queue_estimates


def _requests(key: str, users: int, n: int, ttft_s: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "engine": "served",
            "level_set": "chat",
            "concurrency": users,
            "level_key": key,
            "warmup": False,
            "status": "ok",
            "error": "",
            "queue_s": np.nan,  # no engine stamp over HTTP
            "ttft_s": ttft_s,
            "tpot_s": 0.01,
            "e2e_s": ttft_s + 0.3,
        },
        index=range(n),
    )


def _memory(key: str, users: int, waiting: list[int], qsum: list[float], qcount: list[int]) -> pd.DataFrame:
    k = len(waiting)
    return pd.DataFrame(
        {
            "engine": "served",
            "level_set": "chat",
            "concurrency": users,
            "level_key": key,
            "t_s": np.linspace(0.0, 10.0, k),
            "live_seqs": 4,
            "waiting": waiting,
            "steps": 0,
            "decode_seqs": 0,
            "preemptions": 0,
            "queue_wait_sum_s": qsum,
            "queue_wait_count": qcount,
            "state_source": "metrics",
        }
    )


def test_histogram_delta_over_the_level_is_the_mean_wait() -> None:
    mem = _memory("a", 8, [2, 2, 2], [10.0, 12.0, 16.0], [100, 104, 110])
    est = queue_estimates(mem, _requests("a", 8, 10, 1.0), "chat")
    assert est.iloc[0]["queue_method"] == "histogram"
    assert est.iloc[0]["queue_est_s"] == pytest.approx(6.0 / 10)


def test_littles_law_without_a_histogram() -> None:
    # 3 waiting on average over 10 s, 20 requests completed: 2 req/s, so 1.5 s of wait each
    mem = _memory("b", 8, [2, 3, 4], [math.nan] * 3, [0, 0, 0])
    est = queue_estimates(mem, _requests("b", 8, 20, 2.0), "chat")
    assert est.iloc[0]["queue_method"] == "little"
    assert est.iloc[0]["queue_est_s"] == pytest.approx(1.5)


def test_estimate_fills_the_components_and_is_labelled_in_the_cause() -> None:
    reqs = pd.concat([_requests("lo", 1, 20, 0.5), _requests("hi", 8, 20, 2.0)], ignore_index=True)
    reqs["queue_s"] = np.nan
    mem = pd.concat(
        [
            _memory("lo", 1, [0, 0, 0], [math.nan] * 3, [0, 0, 0]),
            _memory("hi", 8, [2, 3, 4], [math.nan] * 3, [0, 0, 0]),
        ],
        ignore_index=True,
    )
    res = Results(reqs, pd.DataFrame(), pd.DataFrame(), mem, {})
    comp = latency_components(res, "chat")
    hi = comp[comp["concurrency"] == 8].iloc[0]
    assert hi["queue_s"] == pytest.approx(1.5) and hi["prefill_s"] == pytest.approx(0.5)
    assert hi["queue_s"] + hi["prefill_s"] + hi["decode_s"] == pytest.approx(2.3)  # the mean e2e
    assert hi["queue_source"] == "little" and hi["queue_share"] == pytest.approx(0.75)
    pooled = pd.DataFrame({"engine": ["served"], "concurrency": [8], "slo_ttft_s_verdict": ["misses"]})
    cause = cliff_cause(comp, pooled, "served", 1, 8, SloJudge({"ttft_s": 1.0}, {"ttft_s": 90}), slots=4)
    assert cause.mechanism == "queue"
    assert "estimated from the server's /metrics" in cause.text and "Little's law" in cause.text

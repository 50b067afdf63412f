"""Metrics on hand-computed timestamps: every expected number below is worked out in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cliffbench.bench.metrics.level import (
    achieved_concurrency,
    add_request_metrics,
    itl_s,
    percentiles,
    summarize_level,
)

NAN = math.nan


def _row(
    rid: int,
    status: str,
    t_submit: float,
    token_times: list[float],
    *,
    prompt: int = 10,
    t_end: float | None = None,
    queue: float = NAN,
    warmup: bool = False,
) -> tuple[dict[str, object], list[float]]:
    """One request row plus its token arrival times; t_end defaults to the last token."""
    last = token_times[-1] if token_times else NAN
    row: dict[str, object] = {
        "request_id": rid,
        "status": status,
        "warmup": warmup,
        "prompt_tokens": prompt,
        "output_tokens": len(token_times),
        "t_submit_s": t_submit,
        "t_first_s": token_times[0] if token_times else NAN,
        "t_end_s": last if t_end is None else t_end,
        "queue_s": queue,
    }
    return row, token_times


def _tables(rows: list[tuple[dict[str, object], list[float]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    requests = pd.DataFrame([r for r, _ in rows])
    tokens = pd.DataFrame(
        [{"request_id": r["request_id"], "k": k, "t_s": t} for r, ts in rows for k, t in enumerate(ts)],
        columns=["request_id", "k", "t_s"],
    )
    return requests, tokens


@pytest.fixture
def level() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three ok, one of each failure kind, one warmup request with outlandish timings."""
    return _tables(
        [
            _row(99, "ok", -10.0, [-5.0, -4.0], queue=9.0, warmup=True),
            _row(0, "ok", 0.0, [0.5, 0.7, 1.0], prompt=10, queue=0.1),  # ttft .5 tpot .25 e2e 1
            _row(1, "ok", 0.2, [0.6], prompt=5, queue=0.0),  # ttft .4 tpot NaN e2e .4
            _row(2, "ok", 0.5, [1.5, 1.7, 2.0], prompt=20, queue=0.3),  # ttft 1 tpot .25 e2e 1.5
            _row(3, "failed", 0.1, [], t_end=0.3),  # failed before its first token
            _row(4, "timeout", 0.3, [0.9, 1.9], t_end=NAN),  # its 1.0 s gap must not reach ITL
            _row(5, "rejected", 0.4, []),
        ]
    )


def test_request_metrics_by_hand() -> None:
    requests, _ = _tables([_row(0, "ok", 0.0, [0.5, 0.7, 1.0]), _row(1, "ok", 0.2, [0.6])])
    out = add_request_metrics(requests)
    assert out["ttft_s"].tolist() == pytest.approx([0.5, 0.4])
    assert out["e2e_s"].tolist() == pytest.approx([1.0, 0.4])
    assert out["tpot_s"].iloc[0] == pytest.approx(0.25)  # (1.0 - 0.5) / (3 - 1)
    assert math.isnan(out["tpot_s"].iloc[1])  # one token: no decode phase
    assert "ttft_s" not in requests.columns  # a copy, input untouched


def test_request_metrics_nan_for_non_ok() -> None:
    requests, _ = _tables([_row(0, "failed", 0.0, [0.5, 0.7]), _row(1, "timeout", 0.0, [0.5, 0.9])])
    out = add_request_metrics(requests)
    assert out[["ttft_s", "tpot_s", "e2e_s"]].isna().all().all()


def test_itl_pools_gaps_per_request_sorted_by_k() -> None:
    tokens = pd.DataFrame({"request_id": [1, 0, 0, 1, 0], "k": [1, 2, 0, 0, 1], "t_s": [5.4, 1.0, 0.5, 5.0, 0.7]})
    gaps = np.sort(itl_s(tokens))
    # request 0: 0.7-0.5, 1.0-0.7; request 1: 5.4-5.0; never 5.0-1.0 across requests
    assert gaps == pytest.approx([0.2, 0.3, 0.4])
    assert itl_s(tokens.iloc[0:0]).size == 0


def test_achieved_concurrency_two_overlapping_intervals() -> None:
    starts, ends = [0.0, 1.0], [2.0, 3.0]
    # over [0, 4]: 1 in flight for 1 s, 2 for 1 s, 1 for 1 s, 0 for 1 s -> 4 / 4
    assert achieved_concurrency(starts, ends, (0.0, 4.0)) == pytest.approx(1.0)
    # clipped to [0.5, 2.5]: 1 for 0.5 s, 2 for 1 s, 1 for 0.5 s -> 3 / 2
    assert achieved_concurrency(starts, ends, (0.5, 2.5)) == pytest.approx(1.5)
    # an interval without an end is skipped, not treated as open-ended
    assert achieved_concurrency([0.0, 0.0], [2.0, NAN], (0.0, 2.0)) == pytest.approx(1.0)


@pytest.mark.parametrize("window", [(1.0, 1.0), (2.0, 1.0), (NAN, 1.0)])
def test_achieved_concurrency_degenerate_window_is_nan(window: tuple[float, float]) -> None:
    assert math.isnan(achieved_concurrency([0.0], [2.0], window))


def test_percentiles_keys_nan_and_empty() -> None:
    p = percentiles([1.0, 2.0, 3.0, NAN, 5.0], qs=(50, 99.9))
    assert list(p) == ["p50", "p99.9"]
    assert p["p50"] == pytest.approx(2.5)  # NaN dropped, median of 1,2,3,5
    empty = percentiles([])
    assert list(empty) == ["p50", "p90", "p95", "p99"]
    assert all(math.isnan(v) for v in empty.values())  # never 0


def test_summarize_level_by_hand(level: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    s = summarize_level(*level, slo={}, target_concurrency=4)
    assert (s["n_requests"], s["n_ok"], s["n_failed"], s["n_timeout"], s["n_rejected"]) == (6, 3, 1, 1, 1)
    # window [0.0 (first measured submit), 2.0 (last ok end)]; warmup's -10 ignored
    assert s["duration_s"] == pytest.approx(2.0)
    assert s["output_tok_s"] == pytest.approx((3 + 1 + 3) / 2.0)
    assert s["total_tok_s"] == pytest.approx((10 + 5 + 20 + 7) / 2.0)
    assert s["request_s"] == pytest.approx(1.5)
    assert s["goodput_req_s"] == pytest.approx(1.5)  # no SLO: every ok request counts
    # ok + failed intervals: [0,1] [.2,.6] [.5,2] [.1,.3] -> (1 + .4 + 1.5 + .2) / 2
    assert s["achieved_concurrency"] == pytest.approx(1.55)
    assert s["target_concurrency"] == 4
    # latencies from ok rows only: failed/timeout/warmup never averaged in
    assert s["ttft_s_mean"] == pytest.approx((0.5 + 0.4 + 1.0) / 3)
    assert s["ttft_s_p50"] == pytest.approx(0.5)
    assert s["tpot_s_mean"] == pytest.approx(0.25)  # 1-token NaN dropped
    assert s["e2e_s_p50"] == pytest.approx(1.0)
    assert s["queue_s_mean"] == pytest.approx(0.4 / 3)  # warmup's 9.0 excluded
    # ITL: [.2, .3] twice; the timeout's and warmup's 1.0 s gaps are excluded
    assert s["itl_s_mean"] == pytest.approx(0.25)
    assert float(s["itl_s_p99"]) <= 0.3 + 1e-12
    assert s["note"] == ""
    cis = [f"{q}_{end}" for q in ("p50", "p90", "p99") for end in ("lo", "hi", "ci_level")]
    for m in ("ttft_s", "tpot_s", "e2e_s", "queue_s", "itl_s"):
        for suffix in ("mean", "p50", "p90", "p95", "p99"):
            assert f"{m}_{suffix}" in s
        for suffix in cis:
            # ITL gaps cluster by request and by batched step: no per-gap interval at all
            assert (f"{m}_{suffix}" in s) == (m != "itl_s")
            # 3 ok requests: below min_n_for_ci(50) = 6, so every interval is "n too small"
            assert m == "itl_s" or math.isnan(float(s[f"{m}_{suffix}"]))


def test_achieved_concurrency_counts_every_request_until_its_stream_closed(
    level: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    requests, tokens = level
    # stream closed 0.05 s after the last token; the timeout held its slot until cancelled at 1.95,
    # the rejected one for 0.01 s; the warmup row (-10 .. -3.9) is outside the window
    requests = requests.assign(t_done_s=[-3.9, 1.05, 0.65, 2.05, 0.3, 1.95, 0.41])
    s = summarize_level(requests, tokens, slo={}, target_concurrency=4)
    # window [0.0, 2.0] (last ok token, as before); spans clipped to it:
    # [0,1.05] [.2,.65] [.5,2.0] [.1,.3] [.3,1.95] [.4,.41] -> (1.05 + .45 + 1.5 + .2 + 1.65 + .01) / 2
    assert s["achieved_concurrency"] == pytest.approx(4.86 / 2)
    assert s["e2e_s_mean"] == pytest.approx((1.0 + 0.4 + 1.5) / 3)  # E2E still ends at the last token


def test_summarize_level_is_reproducible(level: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    a = summarize_level(*level, slo={"ttft_s": 1.0}, seed=5)
    b = summarize_level(*level, slo={"ttft_s": 1.0}, seed=5)
    np.testing.assert_equal(a, b)  # NaN == NaN here
    np.testing.assert_equal(a, summarize_level(*level, slo={"ttft_s": 1.0}))  # seed is accepted, unused
    assert math.isnan(float(a["target_concurrency"]))


def test_goodput_half_meet_slo() -> None:
    # four ok requests submitted at 0, first token at .2/.4/.8/1.6, done .1 s later
    rows = [_row(i, "ok", 0.0, [t, t + 0.1]) for i, t in enumerate([0.2, 0.4, 0.8, 1.6])]
    s = summarize_level(*_tables(rows), slo={"ttft_s": 0.5})
    assert s["duration_s"] == pytest.approx(1.7)
    assert s["slo_attainment"] == pytest.approx(0.5)
    assert s["goodput_req_s"] == pytest.approx(2 / 1.7)
    assert s["request_s"] == pytest.approx(4 / 1.7)


def test_one_token_request_meets_tpot_slo(level: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # tpot: .25, NaN (1 token), .25 -> only the 1-token request passes a 0.1 s budget;
    # 6 measured requests were submitted (3 ok, 1 failed, 1 timeout, 1 rejected)
    s = summarize_level(*level, slo={"tpot_s": 0.1})
    assert s["slo_attainment"] == pytest.approx(1 / 6)
    assert s["goodput_req_s"] == pytest.approx(0.5)


def test_slo_attainment_counts_failed_requests(level: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # every ok request meets a loose budget, yet the 3 failed/timed-out/rejected ones missed it:
    # 3 / 6 submitted, not 3 / 3 ok (which would reward an engine for dropping slow requests)
    s = summarize_level(*level, slo={"ttft_s": 10.0})
    assert s["slo_attainment"] == pytest.approx(0.5)
    assert s["goodput_req_s"] == pytest.approx(3 / 2.0)  # goodput still counts ok requests only
    requests, tokens = level
    ok_only = summarize_level(requests[requests["status"] == "ok"], tokens, slo={"ttft_s": 10.0})
    assert ok_only["slo_attainment"] == pytest.approx(1.0)


def test_slo_attainment_nan_only_when_nothing_submitted() -> None:
    empty = summarize_level(*_tables([_row(0, "ok", 0.0, [0.5], warmup=True)]), slo={"ttft_s": 1.0})
    assert math.isnan(float(empty["slo_attainment"]))  # nothing measured was submitted


def test_summarize_level_intervals_at_small_n() -> None:
    # 8 ok requests with ttft .1 .. .8 s: the p50 interval exists (ranks 2 and 8, exact coverage
    # 1 - 10/256), p90 needs n >= 29 and p99 n >= 299, so those are NaN, "n too small"
    rows = [_row(i, "ok", 0.0, [0.1 * (i + 1), 0.1 * (i + 1) + 0.05]) for i in range(8)]
    s = summarize_level(*_tables(rows), slo={})
    assert (s["ttft_s_p50_lo"], s["ttft_s_p50_hi"]) == pytest.approx((0.2, 0.8))
    assert s["ttft_s_p50_ci_level"] == pytest.approx(1 - 10 / 256)
    for q in ("p90", "p99"):
        assert all(math.isnan(float(s[f"ttft_s_{q}_{end}"])) for end in ("lo", "hi", "ci_level"))
    assert not any(k.startswith("itl_s_") and k.endswith(("_lo", "_hi", "_ci_level")) for k in s)


def test_all_failed_level_is_nan_with_note() -> None:
    rows = [_row(0, "failed", 0.0, [], t_end=0.5), _row(1, "timeout", 0.1, [0.4, 0.6], t_end=NAN)]
    s = summarize_level(*_tables(rows), slo={"ttft_s": 1.0}, target_concurrency=2)
    assert s["note"] == "no successful request"
    assert (s["n_requests"], s["n_ok"], s["n_failed"], s["n_timeout"]) == (2, 0, 1, 1)
    counts = {"n_requests", "n_ok", "n_failed", "n_timeout", "n_rejected", "target_concurrency", "note"}
    rest = {k: v for k, v in s.items() if k not in counts | {"slo_attainment"}}
    assert "output_tok_s" in rest and "ttft_s_p99_hi" in rest
    assert all(math.isnan(float(v)) for v in rest.values()), rest  # NaN, never 0
    assert s["slo_attainment"] == 0.0  # a real 0: two were submitted and none met the SLO


def test_unknown_slo_key_raises(level: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    with pytest.raises(ValueError, match=r"'ttft_ms'.*ttft_s, tpot_s, e2e_s"):
        summarize_level(*level, slo={"ttft_ms": 500.0})


def test_unknown_status_raises(level: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    requests, tokens = level
    requests.loc[requests["request_id"] == 3, "status"] = "crashed"
    with pytest.raises(ValueError, match="crashed"):
        summarize_level(requests, tokens, slo={})

"""The steady window on hand-built tables: every expected phase and rate is worked out in comments."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cliffbench.bench.metrics.level import add_request_metrics
from cliffbench.bench.metrics.phases import TOO_SHORT, assign_phases, steady_only
from cliffbench.bench.metrics.repeats import SloJudge, judge_requests
from cliffbench.bench.metrics.steady import summarize_phases


def _tables(rows: list[tuple[int, int, float, float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(request_id, user, t_submit, t_done) rows; two tokens each, 0.5 s after submit and at done."""
    reqs, toks = [], []
    for rid, user, t0, t1 in rows:
        first = t0 + 0.5
        reqs.append(
            {
                "request_id": rid, "warmup": False, "user": user, "status": "ok", "error": "",
                "prompt_tokens": 10, "max_tokens": 2, "output_tokens": 2, "t_submit_s": t0,
                "t_first_s": first, "t_end_s": t1, "t_done_s": t1, "queue_s": 0.0,
            }
        )  # fmt: skip
        toks += [{"request_id": rid, "k": 0, "t_s": first}, {"request_id": rid, "k": 1, "t_s": t1}]
    return add_request_metrics(pd.DataFrame(reqs)), pd.DataFrame(toks)


# two users, one request per second each, user 1 starting half a second late; three requests each
CLOSED = [(0, 0, 0.0, 1.0), (1, 1, 0.5, 1.5), (2, 0, 1.0, 2.0), (3, 1, 1.5, 2.5), (4, 0, 2.0, 3.0), (5, 1, 2.5, 3.5)]


def test_closed_loop_window_opens_with_the_last_user_and_closes_with_the_first_to_leave() -> None:
    requests, _ = _tables(CLOSED)
    phase, window = assign_phases(requests, ramp_s=0.5)
    # opens at user 1's first submit (0.5); closes when user 0 closes its last request (3.0): below
    # 20 users, 95% of the users means every one of them
    assert (window.start_s, window.end_s, window.users) == (0.5, 3.0, 2)
    # request 0 went out before user 1 arrived; request 5 runs past user 0's departure
    assert phase.tolist() == ["ramp", "steady", "steady", "steady", "steady", "drain"]
    assert (window.n_ramp, window.n_steady, window.n_drain) == (1, 4, 1)


def test_95_percent_of_the_users_keeps_the_window_open_past_the_first_departure() -> None:
    # 20 users, one request each, all submitted at 0; user u closes at 1 + u: ceil(0.95 x 20) = 19
    # must be present, so the window closes when the second user leaves (2.0), not the first (1.0)
    rows = [(u, u, 0.0, 1.0 + u) for u in range(20)]
    phase, window = assign_phases(_tables(rows)[0], ramp_s=0.0)
    assert (window.start_s, window.end_s) == (0.0, 2.0)
    assert phase.tolist() == ["steady", "steady"] + ["drain"] * 18


def test_open_loop_ramp_is_the_first_ramp_s_and_the_window_ends_with_the_arrivals() -> None:
    # arrivals every 0.5 s, each held 0.8 s; ramp 1 s: window [1.0, 2.0)
    rows = [(i, -1, 0.5 * i, 0.5 * i + 0.8) for i in range(5)]
    phase, window = assign_phases(_tables(rows)[0], ramp_s=1.0)
    assert window.users is None and (window.start_s, window.end_s) == (1.0, 2.0)
    # 1.0 closes at 1.8 (in); 1.5 closes at 2.3 and 2.0 at 2.8, after the arrivals stopped
    assert phase.tolist() == ["ramp", "ramp", "steady", "drain", "drain"]


def test_warmup_requests_have_no_phase_of_the_load() -> None:
    requests, _ = _tables(CLOSED)
    requests.loc[0, "warmup"] = True
    phase, window = assign_phases(requests, ramp_s=0.0)
    assert phase.iloc[0] == "warmup" and window.n_ramp + window.n_steady + window.n_drain == 5


def test_rates_count_what_happened_inside_the_window() -> None:
    requests, tokens = _tables(CLOSED)
    requests["phase"], window = assign_phases(requests, ramp_s=0.5)
    steady, transient = summarize_phases(requests, tokens, window, slo={"ttft_s": 1.0})
    # tokens at t in [0.5, 3.0): requests 0-3 both (8), request 4 its first (2.5) but not 3.0: 9
    assert steady["duration_s"] == pytest.approx(2.5)
    assert steady["output_tok_s"] == pytest.approx(9 / 2.5)
    # requests ending in [0.5, 3.0): 1.0, 1.5, 2.0, 2.5 -> 4 over 2.5 s
    assert steady["request_s"] == pytest.approx(4 / 2.5)
    # latencies over the 4 steady requests only (each 1 s end to end), the transient's apart; the
    # counts are the whole level's
    assert (steady["n_requests"], transient["n_requests"], window.n_steady) == (6, 2, 4)
    assert steady["e2e_s_mean"] == pytest.approx(1.0) and steady["note"] == ""


def test_a_level_without_a_steady_request_says_it_was_too_short_and_is_not_judged() -> None:
    # two users, one request each: user 0 leaves (1.0) before user 1's request (0.5-1.5) ends
    requests, tokens = _tables([(0, 0, 0.0, 1.0), (1, 1, 0.5, 1.5)])
    requests["phase"], window = assign_phases(requests, ramp_s=0.5)
    steady, _ = summarize_phases(requests, tokens, window, slo={"ttft_s": 1.0})
    # the window (0.5-1.0) holds no whole request
    assert (window.start_s, window.end_s, window.n_steady) == (0.5, 1.0, 0)
    assert steady["note"] == TOO_SHORT and math.isnan(float(steady["output_tok_s"]))
    judged = judge_requests(requests, 0, SloJudge({"ttft_s": 1.0}))
    # every request met the budget, yet the level is undecided: none of them saw the full load
    assert judged["slo_verdict"] == "uncertain" and judged["slo_note"] == TOO_SHORT


def test_the_verdict_judges_steady_requests_only() -> None:
    # 40 requests of one user, all steady and fast, plus slow ones marked ramp: the ramp's TTFT of
    # 5 s would miss a 1 s budget at p90, the steady window meets it
    rows = [(i, 0, float(i), i + 0.9) for i in range(40)]
    requests, _ = _tables(rows)
    requests["phase"] = "steady"
    slow = requests.iloc[:8].copy()
    slow["request_id"] += 100
    slow["ttft_s"], slow["phase"] = 5.0, "ramp"
    both = pd.concat([requests, slow], ignore_index=True)
    assert len(steady_only(both)) == 40
    assert judge_requests(both, 0, SloJudge({"ttft_s": 1.0}))["slo_verdict"] == "meets"
    legacy = both.drop(columns="phase")  # stored before phases: judged whole, as it was
    assert judge_requests(legacy, 0, SloJudge({"ttft_s": 1.0}))["slo_verdict"] != "meets"

"""The cliff search: its state machine on scripted verdicts, and the whole search through the
sweep on `fake` engines whose cliffs follow from queueing arithmetic done here by hand. The fake's
timings are its own; nothing here claims anything about a real engine."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cliffbench.bench import sweep
from cliffbench.bench.metrics.repeats import SloJudge, judge_requests
from cliffbench.bench.search.bracket import CliffSearch, read_searches
from cliffbench.bench.spec.search import SearchSpec, parse_slo_terms
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import load_results, study_dir
from cliffbench.config import InputError, parse_spec

pytestmark = pytest.mark.usefixtures("fixed_probe")


def _drive(spec: SearchSpec, truth: dict[float, str] | Any) -> CliffSearch:
    """Run the state machine against a verdict function of the load."""
    s = CliffSearch(spec)
    for _ in range(200):
        x = s.next_x()
        if x is None:
            return s
        reps = s.repeats.get(x, 0) + 1
        s.record(x, truth(x, reps) if callable(truth) else truth[x], reps)
    raise AssertionError("the search did not end")


@pytest.mark.parametrize("cliff", [1, 2, 3, 7, 11, 12, 31, 50, 63])
def test_bisection_finds_every_cliff_within_one_user(cliff: int) -> None:
    s = _drive(SearchSpec(low=1, high=64), lambda x, r: "meets" if x <= cliff else "misses")
    lo, hi = s.bracket()
    assert (lo, hi) == (cliff, cliff + 1)
    # doubling then bisection: about 2 log2(cliff) probes, never the dense grid's `cliff + 1`
    assert len(s.path) <= 2 * math.ceil(math.log2(cliff + 1)) + 2


def test_search_ends_at_its_bounds() -> None:
    top = _drive(SearchSpec(low=1, high=40), lambda x, r: "meets")
    assert top.bracket() == (40, None) and [p.x for p in top.path] == [1, 2, 4, 8, 16, 32, 40]
    bottom = _drive(SearchSpec(low=2, high=40), lambda x, r: "misses")
    assert bottom.bracket() == (None, 2) and len(bottom.path) == 1


def test_uncertain_probe_takes_repeats_then_is_undecided() -> None:
    # 6 is uncertain however often it is measured; 5 becomes decided on its third repeat
    def truth(x: float, reps: int) -> str:
        if x == 6:
            return "uncertain"
        if x == 5:
            return "meets" if reps >= 3 else "uncertain"
        return "meets" if x < 6 else "misses"

    s = _drive(SearchSpec(low=1, high=16, max_repeats=4), truth)
    found = s.result(study="t", engine="e", level_set="chat", slo="x", confidence=0.95)
    # 1, 2, 4 meet, 8 misses; 6 and then 5 uncertain: each in turn the bracket's upper edge. 5
    # meets on its third repeat, so 6 becomes the edge and takes repeats until it is undecided;
    # 7 is never needed: the cliff is at 5 or 6 whatever 7 gives
    assert [p.x for p in s.path] == [1, 2, 4, 8, 6, 5, 5, 5, 6, 6, 6]
    assert (found.meets_up_to, found.first_miss) == (5, 8)
    assert found.undecided == [6.0] and found.extra_repeats == 5
    assert s.repeats[6] == 4 and s.repeats[5] == 3
    assert "up to 5 users, is undecided at 6 and fails at 8" in found.text()


def _plateau(x: float, reps: int) -> str:
    """Meets up to 4 users, within noise of the budget from 5 to 7 however often measured, misses
    from 8: the TTFT p90 plateau of a slot-bound server near its budget."""
    return "meets" if x <= 4 else ("uncertain" if x <= 7 else "misses")


def test_plateau_repeats_only_the_final_edge() -> None:
    s = _drive(SearchSpec(low=1, high=16, max_repeats=6), _plateau)
    found = s.result(study="t", engine="e", level_set="chat", slo="x", confidence=0.95)
    assert (found.meets_up_to, found.first_miss) == (4, 8) and found.undecided == [5.0, 6.0]
    # the edge 5 took every repeat; 6, met on the way down, took one: no load on the plateau
    # but the edge is measured again (bisecting to it asks 6, then 5)
    assert s.repeats == {1: 1, 2: 1, 4: 1, 8: 1, 6: 1, 5: 6}
    assert found.extra_repeats == 5 and not found.not_monotone


def test_edge_that_meets_moves_the_bracket_up() -> None:
    def truth(x: float, reps: int) -> str:
        if x == 6:
            return "meets" if reps >= 2 else "uncertain"
        return "meets" if x < 6 else "misses"

    s = _drive(SearchSpec(low=1, high=16), truth)
    assert s.bracket() == (6, 7) and s.repeats[6] == 2 and s.repeats[7] == 1


def test_budget_of_extra_repeats_ends_undecided() -> None:
    s = _drive(SearchSpec(low=1, high=16, max_repeats=6, extra_repeats=2), _plateau)
    found = s.result(study="t", engine="e", level_set="chat", slo="x", confidence=0.95)
    assert s.repeats[5] == 3 and found.extra_repeats == 2 and found.budget_spent
    assert (found.meets_up_to, found.first_miss, found.undecided) == (4, 8, [5.0, 6.0])
    assert "is undecided at 5, 6 and fails at 8" in found.text() and "2 extra repeats were spent" in found.text()


def test_lowest_load_uncertain_is_settled_first() -> None:
    s = _drive(SearchSpec(low=1, high=16, max_repeats=3), lambda x, r: "uncertain" if x == 1 else "misses")
    found = s.result(study="t", engine="e", level_set="chat", slo="x", confidence=0.95)
    assert [p.x for p in s.path] == [1, 1, 1] and found.meets_up_to is None and found.undecided == [1.0]
    assert "is undecided already at 1 users" in found.text()


def test_rate_search_resolution_is_five_percent() -> None:
    s = _drive(SearchSpec(over="rate_rps", low=0.5, high=64), lambda x, r: "meets" if x <= 3.3 else "misses")
    lo, hi = s.bracket()
    assert lo is not None and hi is not None and lo <= 3.3 < hi and hi - lo <= 0.05 * lo + 1e-9


def test_search_spec_errors_name_the_field() -> None:
    with pytest.raises(InputError, match=r"search.slo.*ttft_pNN"):
        parse_spec(SearchSpec, {"slo": {"latency_p9": 1}}, prefix="search.")
    with pytest.raises(InputError, match="high"):
        parse_spec(SearchSpec, {"low": 8, "high": 4}, prefix="search.")
    assert parse_slo_terms("ttft_p99=2, tpot_p50=0.25") == {"ttft_p99": 2.0, "tpot_p50": 0.25}
    with pytest.raises(InputError, match="ttft_p99=2"):
        parse_slo_terms("ttft_p99:2")


# -- the whole search on fake engines with hand-computable cliffs ---------------------------------

OUT_TOKENS = 9


def _study(name: str, engine: dict[str, Any], search: dict[str, Any], per_user: int = 2, repeats: int = 2) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "tokenizer": "fake",
            "engines": [engine],
            "level_sets": [
                {
                    "name": "chat",
                    "workload": {"kind": "fixed", "prompt": {"mean": 8}, "output": {"mean": OUT_TOKENS}},
                    "load": {
                        "concurrency": [],
                        "requests_per_level": 1,
                        "requests_per_user": per_user,
                        "warmup_requests": 0,
                        "repeats": repeats,
                        "search": search,
                    },
                }
            ],
            "busy": {"reruns": 0, "max_foreign_cores": 100},
        }
    )


def _run(spec: StudySpec, root: Path) -> Any:
    asyncio.run(sweep.run_study_async(spec, root=root))
    (found,) = read_searches(study_dir(spec.name, root))
    return found


@pytest.mark.slow
def test_batch_bound_cliff_found_within_one_user(tmp_path: Path) -> None:
    # each decode step takes itl + per_seq x batch; with every user in the batch, TPOT = that step,
    # so TPOT p50 <= limit holds up to floor((limit - itl) / per_seq) users: 8 here
    itl, per_seq, limit = 0.002, 0.001, 0.0105
    cliff = math.floor((limit - itl) / per_seq)
    engine = {"kind": "fake", "label": "batchy", "ttft_s": 0.002, "itl_s": itl, "itl_per_seq_s": per_seq}
    spec = _study("batch-cliff", engine, {"low": 1, "high": 32, "slo": {"tpot_p50": limit}})
    found = _run(spec, tmp_path)
    assert (found.meets_up_to, found.first_miss) == (cliff, cliff + 1), found.path_text()
    levels = load_results(spec.name, tmp_path).levels
    assert levels["probe"].all() and set(levels["concurrency"]) == {p.x for p in found.path}
    # resume: a second run measures nothing and finds the same cliff
    # resume: a second run measures nothing, and the first run's record (path, probes, wall) stays
    again = _run(spec, tmp_path)
    assert len(load_results(spec.name, tmp_path).levels) == len(levels)
    assert again == found and (again.meets_up_to, again.first_miss) == (cliff, cliff + 1)


def _queue_ttfts(users: int, slots: int, per_user: int, ttft_s: float, service_s: float) -> np.ndarray:
    """TTFTs of a closed loop on a FIFO engine with `slots` slots and a fixed service time, all
    users starting together: the j-th request to start starts at floor(j / slots) x service, and
    (j >= users) was submitted when request j - users ended (completions keep their order)."""
    n = users * per_user
    start = np.array([(j // slots) * service_s for j in range(n)])
    submit = np.array([0.0 if j < users else start[j - users] + service_s for j in range(n)])
    return np.asarray(ttft_s + start - submit, dtype=np.float64)


SLOTS, PER_USER, REPEATS, TTFT_S, ITL_S = 3, 6, 3, 0.01, 0.004
SERVICE_S = TTFT_S + (OUT_TOKENS - 1) * ITL_S
QUEUE_LIMIT_S = TTFT_S + 1.5 * SERVICE_S  # a request meets it when it waited at most one service time


def _queue_cliff_by_hand() -> int:
    judge = SloJudge({"ttft_s": QUEUE_LIMIT_S}, {"ttft_s": 50.0})

    def verdict(users: int) -> str:
        t = np.tile(_queue_ttfts(users, SLOTS, PER_USER, TTFT_S, SERVICE_S), REPEATS)
        reqs = pd.DataFrame({"status": "ok", "ttft_s": t})
        return str(judge_requests(reqs, 0, judge)["slo_verdict"])

    by_hand = {u: verdict(u) for u in range(1, 17)}
    assert "uncertain" not in by_hand.values(), by_hand  # the test's parameters decide every level
    cliff = max(u for u in by_hand if all(by_hand[v] == "meets" for v in range(1, u + 1)))
    assert 2 * SLOTS <= cliff < 3 * SLOTS  # the arithmetic: waits of one service time pass, two do not
    return cliff


@pytest.mark.slow
@pytest.mark.parametrize("jitter", [0.0, 0.3])
def test_queue_bound_cliff_matches_queueing_arithmetic(tmp_path: Path, jitter: float) -> None:
    """Exact without jitter; with every step and first-token time jittered (lognormal, sigma
    0.3), the interval the search reports still contains the cliff computed by hand."""
    cliff = _queue_cliff_by_hand()
    engine = {
        "kind": "fake",
        "label": "slots3",
        "ttft_s": TTFT_S,
        "itl_s": ITL_S,
        "max_batch": SLOTS,
        "jitter": jitter,
        "seed": 7,
    }
    search = {"low": 1, "high": 16, "slo": {"ttft_p50": QUEUE_LIMIT_S}, "max_repeats": 5}
    found = _run(_study("queue-cliff", engine, search, per_user=PER_USER, repeats=REPEATS), tmp_path)
    assert found.meets_up_to is not None and found.first_miss is not None, found.path_text()
    if jitter == 0:
        assert (found.meets_up_to, found.first_miss) == (cliff, cliff + 1), found.path_text()
    else:
        assert found.meets_up_to <= cliff < found.first_miss, found.path_text()

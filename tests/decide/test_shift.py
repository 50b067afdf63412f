"""The exact interval of a ratio B/A from the repeats of two runs (decide/shift.py): its null
distribution, its coverage, and the verdicts it gives two studies of the same engine and of one
slowed by 20 %, simulated as level tables (100 seeds each, no engine run).

Simulated noise: each repeat's metric is the true value times a lognormal factor, log-sd 0.05 for
output tok/s and TPOT p50 and 0.10 for TTFT p90: the medians of the per-repeat log-sds measured by
the tuning sweep on the 2-core build machine (benchmarks/results/engine_tuning.json: tok/s 0.05,
TTFT p50 0.09, 3 repeats per configuration), at the default study's grid (1-32 users) and its 3
repeats. Measured rates (engine verdict at the default 99 % over its three metrics): same engine
100/100 "same within noise"; slowed by 20 % (every time x1.2) 100/100 "slower". With a disturbed
repeat one time in ten (x0.4-0.9, as run_to_run.json's 183 among 440 tok/s): 100/100 and 95/100.
At 1 repeat per level every verdict is "undecided" (6 levels cannot reach 99.7 % per metric)."""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pandas as pd
import pytest

from cliffbench.decide.compare import THROUGHPUT, Metric, compare_engine_levels
from cliffbench.decide.shift import mann_whitney_null, shift_interval, shift_verdict

METRICS: list[Metric] = [THROUGHPUT, ("ttft_s_p90", "TTFT p90", False), ("tpot_s_p50", "TPOT p50", False)]
USERS = [1, 2, 4, 8, 16, 32]  # the default study's chat grid
REPEATS = 3  # the default study's repeats


def test_null_distribution_counts_the_orderings() -> None:
    # every arrangement of 3 A's and 3 B's equally likely: count U (B above A pairs) by brute force
    counts = np.zeros(10)
    for order in set(permutations("AAABBB")):
        counts[sum(1 for i, x in enumerate(order) for y in order[i:] if x == "A" and y == "B")] += 1
    assert np.allclose(mann_whitney_null([(3, 3)]) * 20, counts)
    two = mann_whitney_null([(3, 3), (2, 4)])
    assert two.size == 9 + 8 + 1 and math.isclose(two.sum(), 1.0)
    assert np.allclose(two, two[::-1])  # symmetric under no shift


def test_coverage_is_what_it_says() -> None:
    rng = np.random.default_rng(7)
    for repeats, levels, want in ((3, 1, 0.9), (3, 6, 0.95), (1, 6, 0.95)):
        hits, seen = 0, []
        for _ in range(1000):
            # heavy tails (t with 2 degrees of freedom, in log scale): ranks hold for any distribution
            strata = [
                (np.exp(rng.standard_t(2, repeats) * 0.05), np.exp(rng.standard_t(2, repeats) * 0.05))
                for _ in range(levels)
            ]
            iv = shift_interval(strata, want)
            seen.append(iv.level)
            hits += iv.lo <= 1.0 <= iv.hi
        assert min(seen) >= want - 1e-9
        assert hits / 1000 >= min(seen) - 0.03, (repeats, levels, hits)


def test_too_few_repeats_give_no_interval_and_an_undecided_verdict() -> None:
    iv = shift_interval([([10.0], [9.0])], 0.95)
    assert math.isclose(iv.ratio, 0.9) and not iv.has_interval
    assert shift_verdict(iv, higher_is_better=True) == "undecided"
    three = shift_interval([([10.0, 10.5, 9.8], [8.0, 8.2, 7.9])], 0.95, widest_if_short=True)
    assert math.isclose(three.level, 0.9) and three.hi < 1.0
    assert shift_verdict(three, higher_is_better=True) == "slower"
    assert shift_verdict(three, higher_is_better=False) == "faster"  # a latency that fell


def _table(rng: np.random.Generator, slow: float, disturbed: float) -> pd.DataFrame:
    users = np.repeat(np.asarray(USERS, dtype=np.float64), REPEATS)
    n = users.size
    d = np.where(rng.random(n) < disturbed, rng.uniform(0.4, 0.9, n), 1.0)  # a disturbed repeat
    return pd.DataFrame(
        {
            "engine": "fake",
            "level_set": "chat",
            "concurrency": users,
            "rate_rps": math.nan,
            "status": "ok",
            "output_tok_s": 30 * users**0.8 * d / slow * rng.lognormal(0, 0.05, n),
            "ttft_s_p90": 0.05 * users * slow / d * rng.lognormal(0, 0.10, n),
            "tpot_s_p50": 0.03 * slow / d * rng.lognormal(0, 0.05, n),
        }
    )


def _verdicts(slow: float, disturbed: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for seed in range(100):
        rng = np.random.default_rng(seed)
        a, b = _table(rng, 1.0, disturbed), _table(rng, slow, disturbed)
        _, _, verdict = compare_engine_levels(a, b, ("fake", "fake"), [("chat", "chat")], METRICS)
        out[verdict] = out.get(verdict, 0) + 1
    return out


@pytest.mark.parametrize("disturbed", [0.0, 0.1])
def test_same_engine_reads_same_within_noise(disturbed: float) -> None:
    seen = _verdicts(1.0, disturbed)
    assert seen.get("same within noise", 0) >= 95, seen


@pytest.mark.parametrize("disturbed", [0.0, 0.1])
def test_engine_slowed_by_20_percent_reads_slower(disturbed: float) -> None:
    seen = _verdicts(1.2, disturbed)
    assert seen.get("slower", 0) >= 95, seen

"""Arrival schedules: seeded, gamma/Poisson-shaped gaps, round-robin closed loop."""

from __future__ import annotations

import numpy as np
import pytest

from cliffbench.bench.load.arrivals import assign_closed_loop, closed_loop_think_times_s, poisson_offsets_s


def test_poisson_offsets_reproducible_and_increasing() -> None:
    a = poisson_offsets_s(200, 4.0, 1.0, np.random.default_rng(11))
    b = poisson_offsets_s(200, 4.0, 1.0, np.random.default_rng(11))
    c = poisson_offsets_s(200, 4.0, 1.0, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (200,)
    assert a[0] > 0
    assert np.all(np.diff(a) > 0)
    assert poisson_offsets_s(0, 4.0, 1.0, np.random.default_rng(0)).size == 0


def test_poisson_gaps_are_exponential_at_rate() -> None:
    stats = pytest.importorskip("scipy.stats")
    rate_rps = 8.0
    offsets_s = poisson_offsets_s(5000, rate_rps, 1.0, np.random.default_rng(2024))
    gaps_s = np.diff(np.concatenate([[0.0], offsets_s]))
    result = stats.kstest(gaps_s, "expon", args=(0.0, 1.0 / rate_rps))
    assert result.pvalue > 0.01
    achieved_rps = offsets_s.size / offsets_s[-1]
    assert abs(achieved_rps - rate_rps) / rate_rps < 0.05
    # The KS test can tell a wrong rate apart: the same gaps against half the rate fail it.
    assert stats.kstest(gaps_s, "expon", args=(0.0, 2.0 / rate_rps)).pvalue < 0.01


def test_burstiness_keeps_rate_and_raises_variation() -> None:
    rng = np.random.default_rng(5)

    def cv(burstiness: float) -> float:
        gaps = np.diff(poisson_offsets_s(5000, 10.0, burstiness, rng), prepend=0.0)
        assert abs(gaps.mean() - 0.1) / 0.1 < 0.07  # mean gap stays 1/rate for any burstiness
        return float(gaps.std() / gaps.mean())

    cv_bursty, cv_poisson, cv_smooth = cv(0.25), cv(1.0), cv(4.0)
    assert cv_bursty > cv_poisson > cv_smooth
    assert cv_bursty == pytest.approx(2.0, rel=0.1)  # 1/sqrt(0.25)
    assert cv_poisson == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, -0.5)])
def test_poisson_rejects_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="arrivals"):
        poisson_offsets_s(10, rate, burst, np.random.default_rng(0))


def test_think_times() -> None:
    zeros = closed_loop_think_times_s(4, 10, 0.0, np.random.default_rng(0))
    assert zeros.shape == (10,) and not zeros.any()
    a = closed_loop_think_times_s(4, 4000, 0.5, np.random.default_rng(3))
    b = closed_loop_think_times_s(4, 4000, 0.5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0
    assert a.mean() == pytest.approx(0.5, rel=0.05)
    assert a.std() == pytest.approx(0.5, rel=0.07)  # exponential: std equals mean
    with pytest.raises(ValueError, match="n_users"):
        closed_loop_think_times_s(0, 10, 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="think_time_s"):
        closed_loop_think_times_s(2, 10, -1.0, np.random.default_rng(0))


@pytest.mark.parametrize(("n_requests", "n_users"), [(16, 4), (17, 4), (3, 8), (0, 2), (10, 1)])
def test_round_robin_covers_every_request_once(n_requests: int, n_users: int) -> None:
    plan = assign_closed_loop(n_requests, n_users)
    assert len(plan) == n_users
    assert sorted(i for user in plan for i in user) == list(range(n_requests))
    for u, user in enumerate(plan):
        assert user == list(range(u, n_requests, n_users))
    sizes = [len(user) for user in plan]
    assert max(sizes) - min(sizes) <= 1


def test_assign_rejects_no_users() -> None:
    with pytest.raises(ValueError, match="n_users"):
        assign_closed_loop(5, 0)

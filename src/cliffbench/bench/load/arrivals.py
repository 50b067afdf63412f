"""Precomputed, seeded arrival schedules for the load generator.

Schedules are drawn up front and executed against an absolute start time, so a slow event loop
delays a submit but never changes which requests are sent or when they were meant to go: the
intended times stay comparable across engines, and lag shows up as lag, not as a lighter load.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["assign_closed_loop", "closed_loop_think_times_s", "poisson_offsets_s"]

FloatArray = npt.NDArray[np.float64]


def _check_count(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"arrivals: {name} must be >= 0, got {value}")


def poisson_offsets_s(n: int, rate_rps: float, burstiness: float, rng: np.random.Generator) -> FloatArray:
    """`n` submit times in seconds after the level starts: first > 0, non-decreasing.

    Inter-arrival gaps are gamma(shape=burstiness, scale=1/(rate_rps*burstiness)): mean
    1/rate_rps for any burstiness, burstiness 1 is Poisson, below 1 is burstier (coefficient of
    variation 1/sqrt(burstiness)); the same parametrisation as vLLM's benchmark_serving. The
    total is not rescaled to n/rate_rps: that would make the gaps no longer i.i.d. gamma.
    """
    _check_count("n", n)
    if not rate_rps > 0:
        raise ValueError(f"arrivals: rate_rps must be > 0, got {rate_rps}")
    if not burstiness > 0:
        raise ValueError(f"arrivals: burstiness must be > 0, got {burstiness}")
    gaps_s = rng.gamma(shape=burstiness, scale=1.0 / (rate_rps * burstiness), size=n)
    # A very small shape can underflow a gap to exactly 0.0; the floor keeps the first offset > 0.
    gaps_s = np.maximum(gaps_s, np.finfo(np.float64).tiny)
    offsets_s: FloatArray = np.cumsum(gaps_s)
    return offsets_s


def closed_loop_think_times_s(
    n_users: int, n_requests: int, think_time_s: float, rng: np.random.Generator
) -> FloatArray:
    """Think time in seconds before each request (indexed by request), exponential with mean
    `think_time_s`, or all zeros when it is 0.

    A user's first request waits too: it staggers the users' starts instead of firing every user
    at t=0, which would synchronise them into one burst.
    """
    if n_users <= 0:
        raise ValueError(f"arrivals: n_users must be > 0, got {n_users}")
    _check_count("n_requests", n_requests)
    if not think_time_s >= 0:
        raise ValueError(f"arrivals: think_time_s must be >= 0, got {think_time_s}")
    if think_time_s == 0:
        return np.zeros(n_requests, dtype=np.float64)
    think_s: FloatArray = rng.exponential(scale=think_time_s, size=n_requests)
    return think_s


def assign_closed_loop(n_requests: int, n_users: int) -> list[list[int]]:
    """Request indices each user sends, in order: round-robin, user u sends u, u+n_users, ...

    Fixed up front rather than taken from a shared queue, so which user sends which request does
    not depend on how fast an engine answers.
    """
    if n_users <= 0:
        raise ValueError(f"arrivals: n_users must be > 0, got {n_users}")
    _check_count("n_requests", n_requests)
    return [list(range(u, n_requests, n_users)) for u in range(n_users)]

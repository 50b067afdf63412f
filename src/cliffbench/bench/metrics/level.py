"""Latency, throughput and goodput metrics of one load level, from raw request and token tables.

Definitions (fixed; every engine is measured the same way). For a request submitted at ``t0`` whose
tokens arrive at ``t1..tn`` (perf_counter seconds; ``t_first_s = t1``, ``t_end_s = tn``):

- ``ttft_s = t1 - t0``: time to first token, queueing included.
- ``tpot_s = (tn - t1) / (n - 1)`` for ``n > 1``, NaN otherwise: time per output token after the first.
- ``e2e_s = tn - t0``: end-to-end latency.
- ITL: every gap ``t(k+1) - t(k)`` pooled over requests, so each request weighs by its token count.

Only ``status == "ok"`` requests carry latencies; failed, timed-out and rejected requests are
counted apart and never averaged in, but they do count against the SLO: ``slo_attainment`` divides
by every submitted request, so an engine cannot raise it by failing its slow requests.
Warmup requests (and their tokens) are ignored entirely.
A level with no successful request reports NaN rates and latencies, never 0, because 0 would read as
"infinitely fast" or "no throughput measured" in plots and could not be told apart from a real value.

Confidence intervals of percentiles are exact and distribution-free (:func:`quantile_ci`): a pair of
order statistics whose coverage follows from the binomial law alone, reported with the coverage it
actually achieves. A level runs only 8 to a few hundred requests; a percentile bootstrap at that size
covers the true p99 in well under half the runs it claims 95 % for, because a resample cannot reach
beyond the sample maximum. Order statistics instead say plainly when n is too small (NaN): p99 needs
n >= 299 for 95 %, p90 n >= 29, p50 n >= 6 (:func:`min_n_for_ci`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import binom

from cliffbench.bench.metrics.summary import (
    LATENCY_METRICS,
    Interval,
    Latencies,
    LatencyStats,
    LevelSummary,
    Percentile,
    RequestCounts,
    Throughput,
)
from cliffbench.bench.spec.study import SLO_METRICS

__all__ = [
    "LATENCY_METRICS",
    "STATUSES",
    "QuantileCI",
    "achieved_concurrency",
    "add_request_metrics",
    "itl_s",
    "min_n_for_ci",
    "percentiles",
    "quantile_ci",
    "summarize_level",
]

STATUSES = ("ok", "failed", "timeout", "rejected", "stopped")
# "stopped": a drain request the level aborted at its steady window's end (bench/load/users.py
# WindowEnd): not an outcome of the engine, so counted apart and never against the SLO
# LATENCY_METRICS (metrics/summary.py): each gets a mean and p50..p99; all but ``itl_s`` also get
# p50/p90/p99 intervals (see :func:`summarize_level` for why ITL has none).

_QS = (50.0, 90.0, 95.0, 99.0)
_CI_QS = (50.0, 90.0, 99.0)
_CI_LEVEL = 0.95
_NO_CI_METRICS = frozenset({"itl_s"})
# Probabilities that differ by float rounding only (e.g. the mirror-image pairs of a median) are ties.
_COVERAGE_TIE = 1e-12

FloatArray = npt.NDArray[np.float64]


def _finite(values: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    finite: FloatArray = arr[np.isfinite(arr)]
    return finite


def add_request_metrics(requests: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``requests`` with ``ttft_s``, ``tpot_s`` and ``e2e_s`` columns.

    ``ttft_s = t_first_s - t_submit_s``; ``e2e_s = t_end_s - t_submit_s``;
    ``tpot_s = (t_end_s - t_first_s) / (output_tokens - 1)`` when ``output_tokens > 1``, else NaN.
    All three are NaN for rows whose ``status`` is not ``"ok"``: a failed request's partial timings
    would otherwise leak into latency statistics.
    """
    out = requests.copy()
    ok = (out["status"] == "ok").to_numpy()
    t0 = out["t_submit_s"].to_numpy(dtype=np.float64)
    t1 = out["t_first_s"].to_numpy(dtype=np.float64)
    tn = out["t_end_s"].to_numpy(dtype=np.float64)
    n = out["output_tokens"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(n > 1, (tn - t1) / (n - 1), np.nan)
    out["ttft_s"] = np.where(ok, t1 - t0, np.nan)
    out["tpot_s"] = np.where(ok, tpot, np.nan)
    out["e2e_s"] = np.where(ok, tn - t0, np.nan)
    return out


def itl_s(tokens: pd.DataFrame) -> FloatArray:
    """Pooled inter-token latencies: ``t(k+1) - t(k)`` within each request, tokens ordered by ``k``.

    Gaps never span two requests. Returns an empty array when no request has two tokens.
    """
    if tokens.empty:
        return np.empty(0, dtype=np.float64)
    ordered = tokens.sort_values(["request_id", "k"], kind="stable")
    rid = ordered["request_id"].to_numpy()
    t = ordered["t_s"].to_numpy(dtype=np.float64)
    same_request = rid[1:] == rid[:-1]
    gaps: FloatArray = np.diff(t)[same_request]
    return gaps


def achieved_concurrency(t_start: npt.ArrayLike, t_end: npt.ArrayLike, window: tuple[float, float]) -> float:
    """Time-weighted mean number of requests in flight over ``window = (w0, w1)``.

    ``(1 / (w1 - w0)) * integral over [w0, w1] of #{i : t_start[i] <= t < t_end[i]} dt``, each
    interval clipped to the window. The sweep-line integral of the in-flight count equals the sum
    of clipped interval lengths, which is what is computed. Intervals with a NaN end are skipped.
    NaN for an empty, zero-length or non-finite window.
    """
    w0, w1 = float(window[0]), float(window[1])
    if not (math.isfinite(w0) and math.isfinite(w1)) or w1 <= w0:
        return math.nan
    start = np.asarray(t_start, dtype=np.float64).ravel()
    end = np.asarray(t_end, dtype=np.float64).ravel()
    if start.shape != end.shape:
        raise ValueError(f"t_start and t_end differ in length: {start.size} vs {end.size}")
    keep = np.isfinite(start) & np.isfinite(end)
    lo = np.clip(start[keep], w0, w1)
    hi = np.clip(end[keep], w0, w1)
    busy_s = float(np.sum(np.maximum(hi - lo, 0.0)))
    return busy_s / (w1 - w0)


def percentiles(values: npt.ArrayLike, qs: Iterable[float] = _QS) -> dict[str, float]:
    """Percentiles of the finite ``values`` (linear interpolation), keyed ``"p50"``, ``"p99.9"``...

    NaN for every key when no finite value is left: an empty sample has no latency, not zero.
    """
    qs = tuple(float(q) for q in qs)
    arr = _finite(values)
    keys = [f"p{q:g}" for q in qs]
    if arr.size == 0:
        return dict.fromkeys(keys, math.nan)
    vals = np.percentile(arr, qs)
    return {k: float(v) for k, v in zip(keys, vals, strict=True)}


@dataclass(frozen=True)
class QuantileCI:
    """``[lo, hi]`` covers the true percentile with probability ``level``: the exact coverage achieved,
    never the nominal one asked for. All three are NaN when the sample is too small for any interval.
    """

    lo: float
    hi: float
    level: float


_NO_CI = QuantileCI(math.nan, math.nan, math.nan)


def _check_q_level(q: float, level: float) -> None:
    # written as `not a < x < b` so that a NaN argument is rejected too
    if not 0.0 < q < 100.0:
        raise ValueError(f"q must be in (0, 100), got {q}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


@lru_cache(maxsize=512)
def _order_ranks(n: int, p: float, level: float) -> tuple[int, int, float] | None:
    """1-based ranks ``(r, s)`` of the chosen order-statistic pair and its exact coverage, or None.

    With ``B ~ Binomial(n, p)`` the number of draws at or below the true quantile,
    ``P(X_(r) <= x_p < X_(s)) = P(r <= B <= s - 1)`` for any continuous distribution.
    """
    if n < 2:
        return None
    # cdf[k] = P(B <= k - 1), so the coverage of ranks (r, s) is cdf[s] - cdf[r]
    cdf = np.empty(n + 1, dtype=np.float64)
    cdf[0] = 0.0
    cdf[1:] = binom.cdf(np.arange(n), n, p)
    r = np.arange(1, n)
    # For a fixed r coverage grows with s, so the smallest s reaching `level` dominates every larger
    # one (more coverage and wider): one candidate per r instead of all n^2 / 2 pairs.
    s = np.maximum(np.searchsorted(cdf, cdf[r] + level, side="left"), r + 1)
    # cdf[r] + level is rounded; a pair whose own difference still falls short moves up one rank
    s += (s <= n) & (cdf[np.minimum(s, n)] - cdf[r] < level)
    valid = s <= n
    if not valid.any():
        return None
    r, s = r[valid], s[valid]
    coverage = cdf[s] - cdf[r]
    keep = coverage <= coverage.min() + _COVERAGE_TIE
    width = s - r
    keep &= width == width[keep].min()
    asymmetry = np.abs(cdf[r] - (1.0 - cdf[s]))  # P(B < r) vs P(B >= s): the two ways to miss
    keep &= asymmetry <= asymmetry[keep].min() + _COVERAGE_TIE
    # Mirror-image pairs (a median's) still tie; the higher one is taken because understating a
    # latency is the costlier error. r ascends, so that is the last one kept.
    i = int(np.flatnonzero(keep)[-1])
    return int(r[i]), int(s[i]), float(coverage[i])


def quantile_ci(values: npt.ArrayLike, q: float, level: float = 0.95) -> QuantileCI:
    """Exact distribution-free confidence interval of the ``q``-th percentile: ``[X_(r), X_(s)]``.

    Of the order-statistic pairs with ``P(r <= B <= s - 1) >= level``, ``B ~ Binomial(n, q / 100)``,
    the one with the smallest such coverage is returned (ties: the fewest ranks apart, then the most
    equal miss probabilities below and above, then the higher pair), and ``level`` of the result is
    that exact coverage, e.g. 0.961 for a 0.95 request. The coverage holds for any continuous
    distribution and n; ties in the data only make it conservative. NaN values are dropped; ``+inf``
    (a request that never finished, which misses every budget) ranks above every finite value, so
    ``hi`` may be ``+inf``. All-NaN :class:`QuantileCI` when no pair reaches ``level``: n is below
    :func:`min_n_for_ci`. ``ValueError`` for ``q`` outside (0, 100) or ``level`` outside (0, 1).
    """
    _check_q_level(q, level)
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = np.sort(arr[~np.isnan(arr)])
    ranks = _order_ranks(arr.size, float(q) / 100.0, float(level))
    if ranks is None:
        return _NO_CI
    r, s, coverage = ranks
    return QuantileCI(float(arr[r - 1]), float(arr[s - 1]), coverage)


def min_n_for_ci(q: float, level: float = 0.95) -> int:
    """Smallest sample size at which :func:`quantile_ci` returns an interval (p99 at 0.95: 299)."""
    _check_q_level(q, level)
    p = float(q) / 100.0
    # The widest pair (X_(1), X_(n)) misses with probability p**n + (1 - p)**n >= max(p, 1 - p)**n,
    # so no n below log(1 - level) / log(max(p, 1 - p)) can do; count up from there. The check is
    # quantile_ci's own, so the two can never disagree.
    n = max(2, math.floor(math.log1p(-level) / math.log(max(p, 1.0 - p))))
    while _order_ranks(n, p, float(level)) is None:
        n += 1
    return n


def _mean(arr: FloatArray) -> float:
    return float(arr.mean()) if arr.size else math.nan


def _latency_block(values: npt.ArrayLike, *, with_ci: bool) -> LatencyStats:
    arr = _finite(values)
    points = percentiles(arr)

    def at(q: float) -> Percentile:
        value = points[f"p{q:g}"]
        if not with_ci or q not in _CI_QS:
            return Percentile(value=value)
        ci = quantile_ci(arr, q, _CI_LEVEL)
        return Percentile(value=value, ci=Interval(lo=ci.lo, hi=ci.hi, level=ci.level))

    p50, p90, p95, p99 = (at(q) for q in _QS)
    return LatencyStats(mean=_mean(arr), p50=p50, p90=p90, p95=p95, p99=p99)


def _meets_slo(ok: pd.DataFrame, slo: Mapping[str, float]) -> npt.NDArray[np.bool_]:
    meets = np.ones(len(ok), dtype=bool)
    for metric, limit_s in slo.items():
        col = ok[metric].to_numpy(dtype=np.float64)
        passed = col <= float(limit_s)
        if metric == "tpot_s":
            # A 1-token reply has no decode phase, so it cannot violate a per-token budget.
            passed |= np.isnan(col)
        meets &= passed
    return meets


def summarize_level(
    requests: pd.DataFrame,
    tokens: pd.DataFrame,
    *,
    slo: Mapping[str, float],
    target_concurrency: int | None = None,
    seed: int = 0,
) -> LevelSummary:
    """Summary of one load level; warmup requests and their tokens are excluded throughout. The
    names below are the flat columns of the `levels` table (`LevelSummary.columns`); the record
    holds them by attribute (`counts.n_ok`, `throughput.output_tok_s`, `latency.ttft_s.p90.lo`).

    Window ``[w0, w1]``: ``w0`` = min ``t_submit_s`` of measured requests, ``w1`` = max ``t_end_s`` of
    measured ok requests; ``duration_s = w1 - w0``. Over that duration:
    ``output_tok_s = sum(ok output_tokens) / duration_s``;
    ``total_tok_s = sum(ok prompt_tokens + output_tokens) / duration_s``;
    ``request_s = n_ok / duration_s``; ``goodput_req_s = #(ok meeting every SLO) / duration_s``;
    ``slo_attainment = #(ok meeting every SLO) / n_requests``: the denominator is every submitted
    measured request, failed, timed-out and rejected ones included, since a request that never
    finished met no budget (NaN only when nothing was submitted). ``x <= slo[x]`` is a pass; NaN
    ``tpot_s`` (one token) passes the tpot SLO. ``achieved_concurrency`` counts a request in flight from
    ``t_submit_s`` to ``t_done_s`` (its stream closed, whatever its status), the span the client holds
    it (see :func:`achieved_concurrency`); results stored before ``t_done_s`` existed use ok and failed
    requests up to ``t_end_s``. Latency statistics (``ttft_s``, ``tpot_s``,
    ``e2e_s``, ``queue_s``, ``itl_s``) use ok requests only: ``_mean`` and ``_p50/_p90/_p95/_p99``.
    ``ttft_s``, ``tpot_s``, ``e2e_s`` and ``queue_s`` also get ``_p50``, ``_p90`` and ``_p99``
    intervals ``_lo``, ``_hi`` and ``_ci_level`` from :func:`quantile_ci` at 95 %, all NaN where the
    level has too few requests (p99 needs 299). ``itl_s`` gets none: its gaps are not independent
    draws (one request's gaps share its prompt and its slot; one batched step is the same delay seen
    by every request in the batch), so an interval counting each gap as a sample would be falsely
    tight. ``seed`` is accepted for callers written for the former bootstrap and is unused: nothing
    is resampled. With no ok request every rate and latency is NaN and ``note`` says so;
    ``slo_attainment`` is then 0, a measured fact (requests were sent and none met the SLO).

    Raises ``ValueError`` for an SLO key outside ``ttft_s, tpot_s, e2e_s`` or an unknown status.
    """
    for metric in slo:
        if metric not in SLO_METRICS:
            raise ValueError(f"unknown SLO metric {metric!r}; allowed: {', '.join(SLO_METRICS)}")
    measured = add_request_metrics(requests[~requests["warmup"].astype(bool)])
    status = measured["status"]
    unknown = sorted(set(status.unique()) - set(STATUSES))
    if unknown:
        raise ValueError(f"unknown request status {unknown}; allowed: {', '.join(STATUSES)}")
    n_stopped = int((status == "stopped").sum())
    measured = measured[status != "stopped"]
    status = measured["status"]
    ok = measured[status == "ok"]
    n_ok = len(ok)
    counts = RequestCounts(
        n_requests=len(measured),
        n_ok=n_ok,
        n_failed=int((status == "failed").sum()),
        n_timeout=int((status == "timeout").sum()),
        n_rejected=int((status == "rejected").sum()),
        n_stopped=n_stopped or None,
    )

    w0 = math.nan
    w1 = math.nan
    if n_ok:
        w0 = float(measured["t_submit_s"].min())
        w1 = float(ok["t_end_s"].max())
    duration_s = w1 - w0
    # A zero or negative span would turn every rate into inf or a sign error; NaN flags bad data.
    rate_base_s = duration_s if duration_s > 0 else math.nan

    meets = _meets_slo(ok, slo)
    n_good = int(meets.sum())
    if "t_done_s" in measured:
        held = measured[measured["t_done_s"].notna()]
        span = (held["t_submit_s"].to_numpy(), held["t_done_s"].to_numpy())
    else:
        held = measured[status.isin(["ok", "failed"]) & measured["t_end_s"].notna()]
        span = (held["t_submit_s"].to_numpy(), held["t_end_s"].to_numpy())
    throughput = Throughput(
        output_tok_s=float(ok["output_tokens"].sum()) / rate_base_s,
        total_tok_s=float(ok["prompt_tokens"].sum() + ok["output_tokens"].sum()) / rate_base_s,
        request_s=n_ok / rate_base_s,
        goodput_req_s=n_good / rate_base_s,
    )

    ok_tokens = tokens[tokens["request_id"].isin(ok["request_id"])]
    series: dict[str, npt.ArrayLike] = {
        "ttft_s": ok["ttft_s"].to_numpy(),
        "tpot_s": ok["tpot_s"].to_numpy(),
        "e2e_s": ok["e2e_s"].to_numpy(),
        "queue_s": ok["queue_s"].to_numpy(dtype=np.float64),
        "itl_s": itl_s(ok_tokens),
    }
    latency = {name: _latency_block(series[name], with_ci=name not in _NO_CI_METRICS) for name in LATENCY_METRICS}
    return LevelSummary(
        counts=counts,
        duration_s=duration_s,
        throughput=throughput,
        slo_attainment=n_good / len(measured) if len(measured) else math.nan,
        achieved_concurrency=achieved_concurrency(*span, (w0, w1)),
        target_concurrency=None if target_concurrency is None else int(target_concurrency),
        latency=Latencies(**latency),
        note="" if n_ok else "no successful request",
    )

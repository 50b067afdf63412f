"""Latency, throughput and goodput metrics of one load level, from raw request and token tables.

Definitions (fixed; every engine is measured the same way). For a request submitted at ``t0`` whose
tokens arrive at ``t1..tn`` (perf_counter seconds; ``t_first_s = t1``, ``t_end_s = tn``):

- ``ttft_s = t1 - t0``: time to first token, queueing included.
- ``tpot_s = (tn - t1) / (n - 1)`` for ``n > 1``, NaN otherwise: time per output token after the first.
- ``e2e_s = tn - t0``: end-to-end latency.
- ITL: every gap ``t(k+1) - t(k)`` pooled over requests, so each request weighs by its token count.

Only ``status == "ok"`` requests carry latencies; failed, timed-out and rejected requests are
counted apart and never averaged in. Warmup requests (and their tokens) are ignored entirely.
A level with no successful request reports NaN rates and latencies, never 0, because 0 would read as
"infinitely fast" or "no throughput measured" in plots and could not be told apart from a real value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from cliffbench.bench.study import SLO_METRICS

__all__ = [
    "LATENCY_METRICS",
    "STATUSES",
    "achieved_concurrency",
    "add_request_metrics",
    "bootstrap_ci",
    "itl_s",
    "percentiles",
    "summarize_level",
]

STATUSES = ("ok", "failed", "timeout", "rejected")
#: Metrics summarised per level; each gets ``_mean``, ``_p50``..``_p99`` and p50/p99 CIs.
LATENCY_METRICS = ("ttft_s", "tpot_s", "e2e_s", "queue_s", "itl_s")

_QS = (50.0, 90.0, 95.0, 99.0)
_CI_QS = (50.0, 99.0)
# Bootstrapping ~1e5 ITL gaps 1000 times costs seconds per level. A 20k-gap subsample gives a CI
# that is wider in expectation (conservative, never falsely tight) at a fraction of the cost.
# Only ITL realistically exceeds it, but the cap applies to any metric.
_ITL_CI_MAX = 20_000
# Caps the (resamples x n) index matrix so large inputs do not allocate hundreds of MB at once.
_BOOT_CHUNK_ELEMS = 2_000_000

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


def _bootstrap_cis(
    values: npt.ArrayLike, qs: tuple[float, ...], n_boot: int, seed: int, level: float
) -> list[tuple[float, float]]:
    """Percentile-bootstrap CIs for several percentiles from one shared set of resamples."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile q must be in [0, 100], got {q}")
    arr = _finite(values)
    n = arr.size
    if n < 2:
        return [(math.nan, math.nan) for _ in qs]
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CHUNK_ELEMS // n)
    stats = np.empty((len(qs), n_boot), dtype=np.float64)
    for first in range(0, n_boot, rows):
        m = min(rows, n_boot - first)
        sample = arr[rng.integers(0, n, size=(m, n))]
        stats[:, first : first + m] = np.percentile(sample, qs, axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    bounds = np.percentile(stats, [tail, 100.0 - tail], axis=1)
    return [(float(bounds[0, i]), float(bounds[1, i])) for i in range(len(qs))]


def bootstrap_ci(
    values: npt.ArrayLike, q: float, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap ``level`` CI of the ``q``-th percentile of the finite ``values``.

    Draws ``n_boot`` resamples of size n with replacement (``numpy.random.default_rng(seed)``),
    takes the q-th percentile of each, and returns that distribution's
    ``(100 (1 - level) / 2, 100 (1 + level) / 2)`` percentiles. ``(NaN, NaN)`` for fewer than 2 values.
    """
    return _bootstrap_cis(values, (float(q),), n_boot, seed, level)[0]


def _mean(arr: FloatArray) -> float:
    return float(arr.mean()) if arr.size else math.nan


def _latency_block(name: str, values: npt.ArrayLike, seed: int) -> dict[str, float]:
    arr = _finite(values)
    out: dict[str, float] = {f"{name}_mean": _mean(arr)}
    out.update({f"{name}_{k}": v for k, v in percentiles(arr).items()})
    ci_sample = arr
    if arr.size > _ITL_CI_MAX:
        ci_sample = np.random.default_rng(seed).choice(arr, size=_ITL_CI_MAX, replace=False)
    for q, (lo, hi) in zip(_CI_QS, _bootstrap_cis(ci_sample, _CI_QS, 1000, seed, 0.95), strict=True):
        out[f"{name}_p{q:g}_lo"] = lo
        out[f"{name}_p{q:g}_hi"] = hi
    return out


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
) -> dict[str, float | int | str]:
    """Flat summary of one load level; warmup requests and their tokens are excluded throughout.

    Window ``[w0, w1]``: ``w0`` = min ``t_submit_s`` of measured requests, ``w1`` = max ``t_end_s`` of
    measured ok requests; ``duration_s = w1 - w0``. Over that duration:
    ``output_tok_s = sum(ok output_tokens) / duration_s``;
    ``total_tok_s = sum(ok prompt_tokens + output_tokens) / duration_s``;
    ``request_s = n_ok / duration_s``; ``goodput_req_s = #(ok meeting every SLO) / duration_s``;
    ``slo_attainment = #(ok meeting every SLO) / n_ok``. ``x <= slo[x]`` is a pass; NaN ``tpot_s``
    (one token) passes the tpot SLO. ``achieved_concurrency`` counts a request in flight from
    ``t_submit_s`` to ``t_done_s`` (its stream closed, whatever its status), the span the client holds
    it (see :func:`achieved_concurrency`); results stored before ``t_done_s`` existed use ok and failed
    requests up to ``t_end_s``. Latency statistics (``ttft_s``, ``tpot_s``,
    ``e2e_s``, ``queue_s``, ``itl_s``) use ok requests only: ``_mean``, ``_p50/_p90/_p95/_p99`` and
    95 % bootstrap CIs ``_p50_lo/_hi``, ``_p99_lo/_hi`` (ITL CIs on a seeded subsample of <= 20000 gaps).
    With no ok request every rate and latency is NaN and ``note`` says so.

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
    ok = measured[status == "ok"]
    n_ok = len(ok)
    counts: dict[str, float | int | str] = {
        "n_requests": len(measured),
        "n_ok": n_ok,
        "n_failed": int((status == "failed").sum()),
        "n_timeout": int((status == "timeout").sum()),
        "n_rejected": int((status == "rejected").sum()),
    }

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
    out: dict[str, float | int | str] = {
        **counts,
        "duration_s": duration_s,
        "output_tok_s": float(ok["output_tokens"].sum()) / rate_base_s,
        "total_tok_s": float(ok["prompt_tokens"].sum() + ok["output_tokens"].sum()) / rate_base_s,
        "request_s": n_ok / rate_base_s,
        "goodput_req_s": n_good / rate_base_s,
        "slo_attainment": n_good / n_ok if n_ok else math.nan,
        "achieved_concurrency": achieved_concurrency(*span, (w0, w1)),
        "target_concurrency": math.nan if target_concurrency is None else int(target_concurrency),
    }

    ok_tokens = tokens[tokens["request_id"].isin(ok["request_id"])]
    series: dict[str, npt.ArrayLike] = {
        "ttft_s": ok["ttft_s"].to_numpy(),
        "tpot_s": ok["tpot_s"].to_numpy(),
        "e2e_s": ok["e2e_s"].to_numpy(),
        "queue_s": ok["queue_s"].to_numpy(dtype=np.float64),
        "itl_s": itl_s(ok_tokens),
    }
    for name in LATENCY_METRICS:
        out.update(_latency_block(name, series[name], seed))
    out["note"] = "" if n_ok else "no successful request"
    return out

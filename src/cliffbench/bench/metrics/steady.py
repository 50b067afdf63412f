"""A level's metrics over its steady window and, apart, over its transient (bench/metrics/phases.py
defines the window and argues it)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from cliffbench.bench.metrics.level import achieved_concurrency, summarize_level
from cliffbench.bench.metrics.phases import TOO_SHORT, SteadyWindow
from cliffbench.bench.metrics.summary import LevelSummary, RequestCounts, Throughput

__all__ = ["measured_hit_rate", "summarize_phases"]


def _window_rates(
    requests: pd.DataFrame, tokens: pd.DataFrame, window: SteadyWindow, steady: LevelSummary
) -> LevelSummary:
    """Throughput and concurrency counted inside the window (see the module doc)."""
    w0, w1 = window.start_s, window.end_s
    span_s = w1 - w0
    measured = requests[~requests["warmup"].astype(bool)]
    ok = measured[measured["status"] == "ok"]
    # a drain request stopped at the window's end emitted its tokens up to then like any other
    emitted = measured[measured["status"].isin(["ok", "stopped"])]
    t = tokens.loc[tokens["request_id"].isin(emitted["request_id"]), "t_s"].to_numpy(dtype=np.float64)
    first = emitted["t_first_s"].to_numpy(dtype=np.float64)
    end = ok["t_end_s"].to_numpy(dtype=np.float64)
    out_tokens = int(((t >= w0) & (t < w1)).sum())
    prefilled = (first >= w0) & (first < w1)  # a prompt counts where its first token came out
    completed = int(((end >= w0) & (end < w1)).sum())
    held = measured[measured["t_done_s"].notna()]
    attainment = steady.slo_attainment
    rates = Throughput(
        output_tok_s=out_tokens / span_s,
        total_tok_s=(out_tokens + float(emitted["prompt_tokens"].to_numpy()[prefilled].sum())) / span_s,
        request_s=completed / span_s,
        # completions per second times the share of steady requests meeting every budget
        goodput_req_s=completed / span_s * attainment if not math.isnan(attainment) else math.nan,
    )
    held_s = achieved_concurrency(held["t_submit_s"], held["t_done_s"], (w0, w1))
    return steady.model_copy(update={"duration_s": span_s, "throughput": rates, "achieved_concurrency": held_s})


def summarize_phases(
    requests: pd.DataFrame,
    tokens: pd.DataFrame,
    window: SteadyWindow,
    *,
    slo: Mapping[str, float],
    target_concurrency: int | None = None,
) -> tuple[LevelSummary, LevelSummary]:
    """(steady, transient) summaries of a level whose `requests` carry `phase`: `summarize_level`
    over the steady requests, its rates replaced by the window's, its request counts (`n_requests`,
    `n_ok`, `n_failed`...) the whole level's; and over the ramp and drain requests. A level
    without a steady request has NaN steady metrics and says it was too short."""
    measured = requests[~requests["warmup"].astype(bool)]
    is_steady = (measured["phase"] == "steady").to_numpy()
    steady = summarize_level(measured[is_steady], tokens, slo=slo, target_concurrency=target_concurrency)
    transient = summarize_level(measured[~is_steady], tokens, slo=slo, target_concurrency=target_concurrency)
    if window.n_steady and not math.isnan(window.start_s):
        steady = _window_rates(requests, tokens, window, steady)
    else:
        steady = steady.model_copy(update={"note": TOO_SHORT})
    # the counts say what the level sent, whatever its phase (the window's split: `SteadyWindow`)
    both = {
        k: (getattr(steady.counts, k) or 0) + (getattr(transient.counts, k) or 0) for k in RequestCounts.model_fields
    }
    both["n_stopped"] = both["n_stopped"] or None
    hit_rate = measured_hit_rate(measured[is_steady])
    return steady.model_copy(update={"counts": RequestCounts(**both), "hit_rate_measured": hit_rate}), transient


def measured_hit_rate(requests: pd.DataFrame) -> float:
    """Cached prompt tokens / prompt tokens, pooled over the ok `requests` whose engine told its
    cached tokens (`cached_tokens` NaN: unknown, left out); NaN when none told."""
    if "cached_tokens" not in requests:
        return float("nan")
    ok = requests[(requests["status"] == "ok") & requests["cached_tokens"].notna()]
    prompt = float(ok["prompt_tokens"].sum())
    return float(ok["cached_tokens"].sum()) / prompt if prompt > 0 else float("nan")

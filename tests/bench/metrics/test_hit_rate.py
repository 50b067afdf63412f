"""The measured hit rate: cached / prompt tokens pooled over the ok requests whose engine told."""

from __future__ import annotations

import math

import pandas as pd

from cliffbench.bench.metrics.steady import measured_hit_rate


def test_pooled_over_ok_requests_that_told() -> None:
    df = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "failed"],
            "prompt_tokens": [100, 50, 40, 80],
            "cached_tokens": [64.0, 0.0, float("nan"), 80.0],  # unknown and failed are left out
        }
    )
    assert measured_hit_rate(df) == 64 / 150


def test_unknown_everywhere_is_nan_not_zero() -> None:
    unknown = pd.DataFrame({"status": ["ok"], "prompt_tokens": [10], "cached_tokens": [float("nan")]})
    assert math.isnan(measured_hit_rate(unknown))
    assert math.isnan(measured_hit_rate(pd.DataFrame({"status": ["ok"], "prompt_tokens": [10]})))
    off = pd.DataFrame({"status": ["ok", "ok"], "prompt_tokens": [10, 20], "cached_tokens": [0.0, 0.0]})
    assert measured_hit_rate(off) == 0.0  # reuse off: a known 0

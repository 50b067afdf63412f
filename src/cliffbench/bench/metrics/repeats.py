"""A level measured several times, as one row: medians over repeats, their spread, and the SLO
judged on every submitted request of every repeat.

Why this shape. On these 2-core VMs the same level gave 304 and 563 tok/s an hour apart, so a
single run's number is not a result: each level is measured `load.repeats` times, interleaved with
the other engines, and the report prints the median with the range over repeats. With R repeats
the range [min, max] is a distribution-free interval for the median of the repeat distribution
with coverage 1 - 2 * 0.5**R (75 % at R = 3): it is printed as that, never as a 95 % interval.

The SLO verdict of a level pools the measured requests of all its repeats. A request that failed,
timed out or was rejected counts as missing every latency budget (+inf), so an engine cannot meet
an SLO by dropping the requests it would have served late; a level whose run failed outright
misses. The verdict is decided by the interval of the SLO percentile (`metrics.quantile_ci`), not
its point estimate: `meets` when the interval's upper end is within the budget, `misses` when its
lower end is above it, `uncertain` otherwise, including "n too small" for an interval at all.
Only the steady requests of a level are judged (bench/metrics/phases.py: the ramp and the drain are the
starting gun and the finish, not the load); a level whose steady requests are too few for the
interval says "too short to reach steady state" (`slo_note`) and stays uncertain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cliffbench.bench.metrics.level import min_n_for_ci, quantile_ci
from cliffbench.bench.metrics.phases import TOO_SHORT, steady_only
from cliffbench.bench.spec.study import SloSpec

__all__ = [
    "RatioEstimate",
    "SloJudge",
    "judge_requests",
    "median_range_level",
    "paired_ratio",
    "pool_repeats",
]

_KEYS = ["engine", "level_set", "concurrency", "rate_rps"]
_NAMES = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E"}


def median_range_level(n: int) -> float:
    """Coverage of [min, max] of n repeats as an interval for their median: 1 - 2 * 0.5**n."""
    return 1.0 - 2.0 * 0.5**n if n >= 2 else math.nan


@dataclass(frozen=True)
class SloJudge:
    """What a level must meet: `thresholds` (seconds) on the `percentiles` of each metric."""

    thresholds: dict[str, float]
    percentiles: dict[str, float] = field(default_factory=lambda: {"ttft_s": 90.0, "tpot_s": 50.0})
    level: float = 0.95

    @classmethod
    def of(cls, slo: SloSpec, **thresholds: float) -> SloJudge:
        """The study's SLO, with thresholds overridden by keyword (`ttft_s=2.0`)."""
        merged = {**slo.thresholds, **thresholds}
        return cls(merged, {m: slo.percentile(m) for m in merged})

    def percentile(self, metric: str) -> float:
        return self.percentiles.get(metric, 50.0)

    def label(self, metric: str) -> str:
        return f"{_NAMES.get(metric, metric)} p{self.percentile(metric):g}"

    def text(self) -> str:
        """'TTFT p90 <= 2 s and TPOT p50 <= 0.25 s'."""
        return " and ".join(f"{self.label(m)} <= {lim:g} s" for m, lim in self.thresholds.items())


def _slo_values(reqs: pd.DataFrame, metric: str) -> np.ndarray:
    ok = (reqs["status"] == "ok").to_numpy()
    vals = reqs[metric].to_numpy(dtype=np.float64) if metric in reqs else np.full(len(reqs), np.nan)
    # a one-token reply has no decode phase, so it cannot miss a per-token budget
    vals = np.where(np.isnan(vals) & ok & (metric == "tpot_s"), 0.0, vals)
    return np.where(ok, vals, np.inf)


def _judge(measured: pd.DataFrame, failed_repeats: int, judge: SloJudge) -> dict[str, Any]:
    reqs = steady_only(measured)
    out: dict[str, Any] = {"n_submitted": len(reqs), "n_missed_requests": int((reqs["status"] != "ok").sum())}
    # a level too short for the percentile's interval over its steady requests is left undecided,
    # not judged on its transient; one that ran no request at all still misses below
    need = max((min_n_for_ci(judge.percentile(m), judge.level) for m in judge.thresholds), default=0)
    short = len(reqs) < need and len(reqs) < len(measured)
    out["slo_note"] = TOO_SHORT if short else ""
    verdicts = []
    for metric, limit in judge.thresholds.items():
        q = judge.percentile(metric)
        vals = _slo_values(reqs, metric)
        vals = vals[~np.isnan(vals)]
        point = float(np.quantile(vals, q / 100.0, method="inverted_cdf")) if vals.size else math.nan
        ci = quantile_ci(vals, q, judge.level) if vals.size else None
        lo, hi, lvl = (ci.lo, ci.hi, ci.level) if ci is not None else (math.nan, math.nan, math.nan)
        if not math.isnan(hi) and hi <= limit:
            v = "meets"
        elif not math.isnan(lo) and lo > limit:
            v = "misses"
        else:
            v = "uncertain"
        out.update({f"slo_{metric}": point, f"slo_{metric}_lo": lo, f"slo_{metric}_hi": hi})
        out.update({f"slo_{metric}_level": lvl, f"slo_{metric}_verdict": v})
        verdicts.append(v)
    if failed_repeats or not len(measured):
        verdict = "misses"  # a run that failed outright served nobody
    elif short:
        verdict = "uncertain"
    elif "misses" in verdicts:
        verdict = "misses"
    elif all(v == "meets" for v in verdicts):
        verdict = "meets"
    else:
        verdict = "uncertain"
    out["slo_verdict"] = verdict
    return out


def judge_requests(reqs: pd.DataFrame, failed_repeats: int, judge: SloJudge) -> dict[str, Any]:
    """The pooled SLO columns of one level from the measured requests of all its repeats, judged
    over their steady requests (bench/metrics/phases.py); `slo_note` says when too few of them reached
    steady state for the percentile's interval (the verdict is then uncertain)."""
    return _judge(reqs, failed_repeats, judge)


def pool_repeats(levels: pd.DataFrame, requests: pd.DataFrame, judge: SloJudge | None = None) -> pd.DataFrame:
    """One row per engine x level set x load: numeric metrics are medians over the repeats that ran
    ('ok'), with `<metric>_min/_max` for throughput and the latency percentiles; `repeats`,
    `failed_repeats`, `busy_repeats`; `level_key` of the first repeat (for its raw tables); and,
    with `judge`, the pooled SLO columns (`slo_<metric>[_lo/_hi/_level/_verdict]`, `slo_verdict`)."""
    if levels.empty:
        return levels.copy()
    lv = levels.copy()
    for c in ("repeat", "busy_flagged"):
        if c not in lv:
            lv[c] = 0
    lv["rate_rps"] = lv.get("rate_rps", np.nan)
    numeric = [c for c in lv.columns if pd.api.types.is_numeric_dtype(lv[c]) and c not in {*_KEYS, "repeat", "probe"}]
    spread = [c for c in numeric if c == "output_tok_s" or c.startswith(("ttft_s_p", "tpot_s_p", "e2e_s_p"))]
    measured = requests if "status" in requests else requests.iloc[0:0]
    if len(measured) and "warmup" in measured:
        measured = measured[~measured["warmup"].astype(bool)]
    by_key: Mapping[Any, pd.DataFrame] = dict(tuple(measured.groupby("level_key", sort=False))) if len(measured) else {}
    rows = []
    for keys, g in lv.groupby(_KEYS, dropna=False, sort=True):
        g = g.sort_values("repeat")
        ok = g[g["status"] == "ok"]
        first = g.iloc[0]
        row: dict[str, Any] = {k: first[k] for k in g.columns if k not in numeric}
        row.update(dict(zip(_KEYS, keys, strict=True)))
        row["level_key"] = str((ok.iloc[0] if len(ok) else first)["level_key"])
        row["status"] = "ok" if len(ok) else "failed"
        row["repeats"] = len(g)
        row["ok_repeats"] = len(ok)
        row["failed_repeats"] = int((g["status"] != "ok").sum())
        row["busy_repeats"] = int(g["busy_flagged"].fillna(False).astype(bool).sum())
        for c in numeric:
            vals = pd.to_numeric(ok[c], errors="coerce")
            row[c] = float(vals.median()) if vals.notna().any() else math.nan
            if c in spread:
                row[f"{c}_min"] = float(vals.min()) if vals.notna().any() else math.nan
                row[f"{c}_max"] = float(vals.max()) if vals.notna().any() else math.nan
        if judge is not None:
            parts = [by_key[k] for k in g["level_key"] if k in by_key]
            reqs = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["status"])
            row.update(_judge(reqs, row["failed_repeats"], judge))
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RatioEstimate:
    """`a / b` of one metric at one level: the median of the per-repeat ratios (repeat r of a over
    repeat r of b, measured minutes apart) and their range, an interval for the median of
    coverage `level` (NaN below 2 pairs)."""

    median: float
    lo: float
    hi: float
    pairs: int
    level: float

    def text(self, fmt: Any, of: str) -> str:
        """'x5.1 the throughput of <of> (range x4.2-x6.0 over 3 paired repeats)'."""
        if self.pairs < 2:
            return f"x{fmt(self.median)} the throughput of {of} (one repeat: no interval)"
        return (
            f"x{fmt(self.median)} the throughput of {of} (range x{fmt(self.lo)}-x{fmt(self.hi)} over "
            f"{self.pairs} paired repeats)"
        )


def paired_ratio(
    levels: pd.DataFrame, a: str, b: str, level_set: str, users: float, metric: str = "output_tok_s"
) -> RatioEstimate:
    """`metric` of engine `a` over engine `b` at `users` in `level_set`, paired by repeat."""
    lv = levels[(levels["level_set"] == level_set) & (levels["concurrency"] == users) & (levels["status"] == "ok")]

    def by_repeat(engine: str) -> pd.Series:
        rows = lv[lv["engine"] == engine]
        # studies stored before repeats existed have one row per level: pair them by position
        return rows.set_index("repeat")[metric] if "repeat" in rows else rows[metric].reset_index(drop=True)

    sa, sb = by_repeat(a), by_repeat(b)
    r = (sa / sb).dropna()
    r = r[np.isfinite(r)]
    if r.empty:
        return RatioEstimate(math.nan, math.nan, math.nan, 0, math.nan)
    return RatioEstimate(float(r.median()), float(r.min()), float(r.max()), len(r), median_range_level(len(r)))

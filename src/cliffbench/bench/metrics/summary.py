"""A level's summary as a typed record: what `metrics.level.summarize_level` computes and `level.json`
stores, read by attribute (`summary.latency.ttft_s.p90.value`) instead of by f-string key.

The tidy `levels` table keeps one flat column per number (`ttft_s_p90`, `ttft_s_p90_lo`...), as
analysts and the report read it; :meth:`LevelSummary.columns` is the one place those names are made,
and :meth:`LevelSummary.from_columns` reads them back (a `level.json` stored before the summary was
typed holds exactly those columns).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LATENCY_METRICS",
    "PERCENTILES",
    "Interval",
    "Latencies",
    "LatencyStats",
    "LevelSummary",
    "Percentile",
    "RequestCounts",
    "Throughput",
]

#: Latency metrics summarised per level, in the order their columns come.
LATENCY_METRICS = ("ttft_s", "tpot_s", "e2e_s", "queue_s", "itl_s")
#: The percentiles of every latency metric, as `LatencyStats` fields.
PERCENTILES = ("p50", "p90", "p95", "p99")

Column = float | int | str


class _Record(BaseModel):
    # NaN is data here (a level with no successful request): keep it NaN on disk, not null
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


class Interval(_Record):
    """An exact confidence interval of a percentile (`metrics.quantile_ci`): `[lo, hi]` covers the
    true percentile with probability `level`; all three NaN where the level held too few requests."""

    lo: float
    hi: float
    level: float


class Percentile(_Record):
    """One percentile of a latency metric and its interval (None where none is computed: p95, ITL)."""

    value: float
    ci: Interval | None = None


class LatencyStats(_Record):
    """One latency metric over a level's ok requests: mean and percentiles (NaN: no sample)."""

    mean: float
    p50: Percentile
    p90: Percentile
    p95: Percentile
    p99: Percentile

    def percentiles(self) -> Iterator[tuple[str, Percentile]]:
        """('p50', its record), ... in column order."""
        for name in PERCENTILES:
            yield name, getattr(self, name)


class Latencies(_Record):
    ttft_s: LatencyStats
    tpot_s: LatencyStats
    e2e_s: LatencyStats
    queue_s: LatencyStats
    itl_s: LatencyStats

    def metrics(self) -> Iterator[tuple[str, LatencyStats]]:
        """('ttft_s', its stats), ... in column order."""
        for name in LATENCY_METRICS:
            yield name, getattr(self, name)


class RequestCounts(_Record):
    """Measured requests of a level (warm-up left out), by how they ended."""

    n_requests: int
    n_ok: int
    n_failed: int
    n_timeout: int
    n_rejected: int
    n_stopped: int | None = Field(
        None, description="drain requests stopped at the steady window's end, not in n_requests (None: none)"
    )


class Throughput(_Record):
    """Rates over the level's window (first measured submit to last ok token): NaN when no request
    succeeded, never 0."""

    output_tok_s: float
    total_tok_s: float
    request_s: float
    goodput_req_s: float


class LevelSummary(_Record):
    """Summary metrics of one level (definitions: `metrics.level.summarize_level`)."""

    counts: RequestCounts
    duration_s: float
    throughput: Throughput
    slo_attainment: float
    achieved_concurrency: float
    target_concurrency: int | None = Field(None, description="the level's users (None: an open-loop level)")
    latency: Latencies
    note: str = ""
    hit_rate_measured: float | None = Field(
        None, description="cached / prompt tokens the engine told (NaN: it told none; None: not a steady summary)"
    )
    hit_rate_theory: float | None = Field(
        None, description="what an infinite prefix cache would serve of the steady requests' prompts (None: older)"
    )

    def columns(self) -> dict[str, Column]:
        """The flat columns of the `levels` table, in their order: `n_ok`..., `output_tok_s`...,
        then per latency metric `_mean`, `_p50`..`_p99` and the intervals `_p50_lo`, `_p50_hi`,
        `_p50_ci_level`... of the percentiles that have one, then `note`, then the prefix-cache hit
        rates where they are known."""
        out: dict[str, Column] = {**self.counts.model_dump(exclude_none=True), "duration_s": self.duration_s}
        out.update(self.throughput.model_dump())
        out["slo_attainment"] = self.slo_attainment
        out["achieved_concurrency"] = self.achieved_concurrency
        out["target_concurrency"] = math.nan if self.target_concurrency is None else self.target_concurrency
        for name, stats in self.latency.metrics():
            out[f"{name}_mean"] = stats.mean
            out.update({f"{name}_{q}": p.value for q, p in stats.percentiles()})
            for q, p in stats.percentiles():
                if p.ci is not None:
                    out.update(
                        {f"{name}_{q}_lo": p.ci.lo, f"{name}_{q}_hi": p.ci.hi, f"{name}_{q}_ci_level": p.ci.level}
                    )
        out["note"] = self.note
        for name in ("hit_rate_measured", "hit_rate_theory"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_columns(cls, flat: Mapping[str, Column]) -> LevelSummary:
        """The summary whose :meth:`columns` are `flat` (a summary stored as a flat dict)."""

        # a summary stored before a metric existed lacks its columns: NaN, as a missing column reads
        def num(key: str) -> float:
            return float(flat.get(key, math.nan))

        def percentile(metric: str, q: str) -> Percentile:
            value = num(f"{metric}_{q}")
            if f"{metric}_{q}_ci_level" not in flat:
                return Percentile(value=value)
            lo, hi, level = (num(f"{metric}_{q}_{k}") for k in ("lo", "hi", "ci_level"))
            return Percentile(value=value, ci=Interval(lo=lo, hi=hi, level=level))

        def stats(metric: str) -> LatencyStats:
            p50, p90, p95, p99 = (percentile(metric, q) for q in PERCENTILES)
            return LatencyStats(mean=num(f"{metric}_mean"), p50=p50, p90=p90, p95=p95, p99=p99)

        target = num("target_concurrency")
        return cls(
            counts=RequestCounts(
                n_stopped=_count_or_none(flat.get("n_stopped")),
                **{k: int(flat.get(k, 0)) for k in RequestCounts.model_fields if k != "n_stopped"},
            ),
            duration_s=num("duration_s"),
            throughput=Throughput(**{k: num(k) for k in Throughput.model_fields}),
            slo_attainment=num("slo_attainment"),
            achieved_concurrency=num("achieved_concurrency"),
            target_concurrency=None if math.isnan(target) else int(target),
            latency=Latencies(**{m: stats(m) for m in LATENCY_METRICS}),
            note=str(flat.get("note", "")),
            hit_rate_measured=num("hit_rate_measured") if "hit_rate_measured" in flat else None,
            hit_rate_theory=num("hit_rate_theory") if "hit_rate_theory" in flat else None,
        )


def _count_or_none(value: object) -> int | None:
    """A count that a levels table holds as NaN where the level had none."""
    if value is None:
        return None
    x = float(value)  # type: ignore[arg-type]
    return None if math.isnan(x) or x == 0 else int(x)

"""What a cliff search asks for (`load.search` of a level set, `cliffbench find-cliff --slo`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cliffbench.config import InputError, Spec

__all__ = ["SearchSpec", "parse_slo_terms"]

_SLO_KEY = re.compile(r"^(ttft|tpot|e2e)_p(\d+(?:\.\d+)?)$")


def parse_slo_terms(text: str, where: str = "slo") -> dict[str, float]:
    """'ttft_p99=2,tpot_p50=0.25' -> {'ttft_p99': 2.0, 'tpot_p50': 0.25} (validated by SearchSpec)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, val = part.partition("=")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise InputError(f"{where}: expected terms like ttft_p99=2,tpot_p50=0.25, got {part!r}") from None
        if not sep:
            raise InputError(f"{where}: expected terms like ttft_p99=2,tpot_p50=0.25, got {part!r}")
    return out


class SearchSpec(Spec):
    """Search for the cliff instead of (or after) a grid: bracket by doubling from `low`, then
    bisect between the last level that meets the SLO and the first that misses it, down to
    `resolution`. An uncertain probe counts as not meeting until it is the final bracket's upper
    edge; that one is measured again, up to `max_repeats` repeats and `extra_repeats` in all, then
    called undecided. Levels of the grid of the same level set count as probes."""

    over: Literal["users", "rate_rps"] = "users"
    low: float = Field(1, gt=0)
    high: float = Field(64, gt=0)
    resolution: float | None = Field(
        None, gt=0, description="stop when the bracket is this narrow (default: 1 user, or 5% of the rate)"
    )
    slo: dict[str, float] = Field(
        default_factory=dict,
        description="metric_pNN -> seconds, e.g. {ttft_p99: 2, tpot_p50: 0.25}; empty: the study's slo",
    )
    max_repeats: int = Field(6, ge=1, le=50, description="repeats a probe may take to decide its verdict")
    extra_repeats: int | None = Field(
        None,
        ge=0,
        description="repeats the whole search may add beyond each load's first visit to settle its bracket's edge "
        "(None: no budget beyond max_repeats); spent: the edge is reported undecided",
    )
    engines: list[str] | None = Field(
        None, description="engine labels to search (default: every engine that runs the level set)"
    )

    @field_validator("slo")
    @classmethod
    def _slo_terms(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            m = _SLO_KEY.match(k)
            if m is None:
                raise ValueError(f"unknown SLO term {k!r}; allowed: ttft_pNN, tpot_pNN, e2e_pNN (e.g. ttft_p99)")
            if not 0 < float(m.group(2)) < 100:
                raise ValueError(f"percentile of {k} must be in (0, 100)")
            if x <= 0:
                raise ValueError(f"SLO {k} must be > 0 seconds, got {x}")
        return v

    @model_validator(mode="after")
    def _range(self) -> SearchSpec:
        if self.high < self.low:
            raise ValueError(f"high ({self.high:g}) must be >= low ({self.low:g})")
        if self.over == "users" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("low and high of a search over users must be whole numbers")
        return self

    def step(self, at: float) -> float:
        """The resolution near `at`: as given, else 1 user or 5% of the rate."""
        if self.resolution is not None:
            return self.resolution
        return 1.0 if self.over == "users" else 0.05 * at

    def judge_terms(self) -> tuple[dict[str, float], dict[str, float]]:
        """(thresholds, percentiles) keyed by metric column (`ttft_s`)."""
        th, pc = {}, {}
        for k, x in self.slo.items():
            m = _SLO_KEY.match(k)
            assert m is not None  # validated
            th[f"{m.group(1)}_s"], pc[f"{m.group(1)}_s"] = x, float(m.group(2))
        return th, pc

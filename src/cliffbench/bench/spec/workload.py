"""What a level set asks: the shape of its requests (prompt and answer lengths, long documents)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cliffbench.config import Spec

__all__ = ["LengthDist", "WorkloadSpec"]


class LengthDist(Spec):
    """A token-length distribution. `fixed`: always `mean`; `uniform`: [low, high];
    `lognormal`: median `mean`, shape `sigma`, clipped to [low, high]."""

    dist: Literal["fixed", "uniform", "lognormal"] = "fixed"
    mean: int = Field(64, gt=0)
    low: int = Field(1, gt=0)
    high: int | None = Field(None, gt=0)
    sigma: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> LengthDist:
        if self.high is not None and self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class WorkloadSpec(Spec):
    """What is asked. `mixed` adds a `long_fraction` of document prompts of `long_prompt_tokens`
    (default: close to the smallest per-request context of the study's engines)."""

    kind: Literal["fixed", "uniform", "lognormal", "mixed"] = "fixed"
    prompt: LengthDist = LengthDist(mean=32)
    output: LengthDist = LengthDist(mean=64)
    long_fraction: float = Field(0.0, ge=0, le=1)
    long_prompt_tokens: int | None = Field(None, gt=0)
    system_prefix_tokens: int = Field(
        0, ge=0, description="shared prefix for prefix-caching runs; counts toward each prompt's length"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _long_only_mixed(self) -> WorkloadSpec:
        if self.long_fraction > 0 and self.kind != "mixed":
            raise ValueError(f"long_fraction needs kind 'mixed', got kind {self.kind!r}")
        return self

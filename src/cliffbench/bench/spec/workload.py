"""What a level set asks: the shape of its requests (prompt and answer lengths, long documents), and
the workloads with KV reuse (multi-turn sessions, shared system prompts, RAG over a document pool)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cliffbench.config import Spec

__all__ = ["LengthDist", "RagSpec", "SessionsSpec", "SharedPrefixSpec", "WorkloadSpec"]

REUSE_KINDS = ("sessions", "shared_prefix", "rag")


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


class SessionsSpec(Spec):
    """Multi-turn conversations: each turn re-sends the whole history (every earlier user message and
    answer, the answers as the engine generated them) plus a new user message of `user` tokens
    (`prompt` of the workload sizes the first message, `output` every answer)."""

    turns: LengthDist = LengthDist(dist="uniform", mean=3, low=2, high=4)
    user: LengthDist = LengthDist(mean=16)
    think_s: float = Field(0.0, ge=0, description="mean think time between a session's turns (exponential)")


class SharedPrefixSpec(Spec):
    """`prompts` system prompts of `prefix_tokens` each, chosen with Zipf popularity (exponent
    `zipf_s`; 0: uniform); each request is one of them plus its own question (`prompt` lengths)."""

    prompts: int = Field(4, gt=0)
    prefix_tokens: int = Field(64, gt=0)
    zipf_s: float = Field(1.0, ge=0)


class RagSpec(Spec):
    """A pool of `documents` documents of `doc_tokens` each cut from the corpus; each request is `k`
    distinct documents (Zipf popularity, exponent `zipf_s`) plus a question (`prompt` lengths).
    `offset_tokens` moves the whole pool along the corpus: pools at different offsets share no
    document, so a cache warmed by one serves nothing of the other (benchmarks/working_set.py gives
    each of its points a cold cache this way, without restarting the engine)."""

    documents: int = Field(8, gt=0)
    doc_tokens: int = Field(64, gt=0)
    k: int = Field(2, gt=0)
    zipf_s: float = Field(1.0, ge=0)
    offset_tokens: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _k_fits(self) -> RagSpec:
        if self.k > self.documents:
            raise ValueError(f"rag: k ({self.k}) must be <= documents ({self.documents})")
        return self


class WorkloadSpec(Spec):
    """What is asked. `mixed` adds a `long_fraction` of document prompts of `long_prompt_tokens`
    (default: close to the smallest per-request context of the study's engines)."""

    kind: Literal["fixed", "uniform", "lognormal", "mixed", "sessions", "shared_prefix", "rag"] = "fixed"
    prompt: LengthDist = LengthDist(mean=32)
    output: LengthDist = LengthDist(mean=64)
    long_fraction: float = Field(0.0, ge=0, le=1)
    long_prompt_tokens: int | None = Field(None, gt=0)
    system_prefix_tokens: int = Field(
        0, ge=0, description="shared prefix for prefix-caching runs; counts toward each prompt's length"
    )
    sessions: SessionsSpec | None = None
    shared_prefix: SharedPrefixSpec | None = None
    rag: RagSpec | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _long_only_mixed(self) -> WorkloadSpec:
        if self.long_fraction > 0 and self.kind != "mixed":
            raise ValueError(f"long_fraction needs kind 'mixed', got kind {self.kind!r}")
        for kind in REUSE_KINDS:
            # a reuse kind without its block takes the block's defaults; a block under another kind
            # would be silently ignored, so it is an error
            given = getattr(self, kind) is not None
            if given and self.kind != kind:
                raise ValueError(f"a {kind!r} block needs kind {kind!r}, got kind {self.kind!r}")
        if self.kind in REUSE_KINDS and self.system_prefix_tokens > 0:
            raise ValueError(f"system_prefix_tokens does not combine with kind {self.kind!r}")
        return self

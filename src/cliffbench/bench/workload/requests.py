"""Seeded synthetic workloads: prompts cut from a public-domain corpus at exact token lengths.

Every prompt is a window of consecutive corpus token ids, so it reads like text and has exactly
the sampled length; prompts travel as ids (`GenRequest.prompt_token_ids`) because decoding and
re-encoding text is not guaranteed to give the same ids back. The same `WorkloadSpec` always
yields the same requests, so engines compared in one study see identical work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cliffbench.bench.spec.workload import WorkloadSpec
from cliffbench.bench.workload import reuse
from cliffbench.bench.workload.lengths import sample_lengths
from cliffbench.config import DATA_DIR
from cliffbench.engines.base import GenRequest
from cliffbench.models.tokenizer import Tokenizer

__all__ = [
    "CORPUS_DIR",
    "LONG_PROMPT_MARGIN_TOKENS",
    "Tokenizer",
    "WorkloadSummary",
    "build_requests",
    "corpus_token_ids",
    "load_corpus",
    "sample_lengths",
]

CORPUS_DIR = DATA_DIR / "corpus"

# Headroom below the context limit for the default long prompt: chat templates and BOS tokens
# some engines add would otherwise push a request that exactly fills the context over it.
LONG_PROMPT_MARGIN_TOKENS = 8

IntArray = npt.NDArray[np.int64]

# Keyed by id(); the tokenizer itself is kept in the value so its id cannot be reused by a new
# object while the entry lives (which would silently serve another tokenizer's ids).
_TOKEN_CACHE: dict[int, tuple[Tokenizer, str, IntArray]] = {}


def load_corpus(corpus_dir: Path | None = None) -> str:
    """The corpus text: every `*.txt` in `corpus_dir` (default data/corpus), in name order."""
    folder = CORPUS_DIR if corpus_dir is None else corpus_dir
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"workload: no corpus files (*.txt) in {folder}")
    return "\n\n".join(f.read_text(encoding="utf-8").strip() for f in files) + "\n"


def corpus_token_ids(tokenizer: Tokenizer) -> IntArray:
    """The corpus as one token stream, tokenized once per tokenizer object."""
    text = load_corpus()
    cached = _TOKEN_CACHE.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer and cached[1] == text:
        return cached[2]
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    if ids.size == 0:
        raise ValueError("workload: the tokenizer turned the corpus into 0 tokens")
    ids.setflags(write=False)
    _TOKEN_CACHE[id(tokenizer)] = (tokenizer, text, ids)
    return ids


def _window(stream: IntArray, start: int, length: int) -> IntArray:
    # Modular indexing wraps past the end of the corpus, so any offset and any length work.
    window: IntArray = stream[(start + np.arange(length)) % stream.size]
    return window


def _prompt_lengths(
    spec: WorkloadSpec,
    n: int,
    output_tokens: IntArray,
    max_context: int | None,
    rng_prompt: np.random.Generator,
    rng_long: np.random.Generator,
) -> IntArray:
    lengths = sample_lengths(spec.prompt, n, rng_prompt)
    if spec.kind != "mixed":
        if spec.long_fraction > 0:
            raise ValueError(f"workload: long_fraction ({spec.long_fraction}) needs kind 'mixed', got {spec.kind!r}")
        return lengths
    long_tokens = spec.long_prompt_tokens
    # Checked before n is looked at, so a spec that needs max_context fails for every n alike.
    if spec.long_fraction > 0 and long_tokens is None and max_context is None:
        raise ValueError("workload: kind 'mixed' without long_prompt_tokens needs max_context to size long prompts")
    n_long = round(n * spec.long_fraction)
    if n_long == 0:
        return lengths
    if long_tokens is None:
        assert max_context is not None
        max_output = int(output_tokens.max())
        long_tokens = max_context - max_output - LONG_PROMPT_MARGIN_TOKENS
        if long_tokens < 1:
            raise ValueError(
                f"workload: no room for a long prompt: max_context {max_context} - max output "
                f"{max_output} - margin {LONG_PROMPT_MARGIN_TOKENS} = {long_tokens} tokens"
            )
    positions = rng_long.choice(n, size=n_long, replace=False)
    lengths[positions] = long_tokens
    return lengths


def build_requests(
    spec: WorkloadSpec,
    n: int,
    tokenizer: Tokenizer,
    *,
    max_context: int | None = None,
    start_id: int = 0,
) -> list[GenRequest]:
    """`n` requests for `spec`, identical for the same spec (seeded by `spec.seed`).

    `max_context` (tokens per request of the smallest engine context) sizes the default long
    prompt of kind 'mixed' and is checked against every prompt + output. Request ids run from
    `start_id`.
    """
    if n < 0:
        raise ValueError(f"workload: n must be >= 0, got {n}")
    if spec.kind in ("sessions", "shared_prefix", "rag"):
        stream = corpus_token_ids(tokenizer)
        if spec.kind == "sessions":
            plan = reuse.build_sessions(spec, n, tokenizer, stream, max_context=max_context, start_id=start_id)
            return reuse.SessionRequests(plan)
        build = reuse.build_shared_prefix if spec.kind == "shared_prefix" else reuse.build_rag
        return build(spec, n, tokenizer, stream, max_context=max_context, start_id=start_id)
    # Independent streams per quantity: changing the output distribution must not move the
    # prompts, and vice versa, so studies that vary one knob keep the rest fixed.
    rng_prompt, rng_output, rng_long, rng_offset = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(4)
    )
    output_tokens = sample_lengths(spec.output, n, rng_output)
    prompt_tokens = _prompt_lengths(spec, n, output_tokens, max_context, rng_prompt, rng_long)
    if n == 0:
        return []

    prefix_tokens = spec.system_prefix_tokens
    shortest = int(prompt_tokens.min())
    if prefix_tokens > 0 and prefix_tokens >= shortest:
        raise ValueError(
            f"workload: system_prefix_tokens ({prefix_tokens}) must be shorter than every prompt "
            f"(shortest: {shortest} tokens)"
        )
    if max_context is not None:
        total = prompt_tokens + output_tokens
        over = np.flatnonzero(total > max_context)
        if over.size:
            i = int(over[0])
            raise ValueError(
                f"workload: {over.size} of {n} requests exceed max_context {max_context}, e.g. "
                f"request {start_id + i}: {prompt_tokens[i]} prompt + {output_tokens[i]} output "
                f"= {total[i]} tokens"
            )

    stream = corpus_token_ids(tokenizer)
    prefix = _window(stream, 0, prefix_tokens)
    offsets = rng_offset.integers(0, stream.size, size=n)
    requests: list[GenRequest] = []
    for i in range(n):
        body = _window(stream, int(offsets[i]), int(prompt_tokens[i]) - prefix_tokens)
        ids: list[int] = np.concatenate([prefix, body]).tolist()
        requests.append(
            GenRequest(
                request_id=start_id + i,
                prompt_token_ids=tuple(ids),
                max_tokens=int(output_tokens[i]),
                prompt_text=tokenizer.decode(ids),
            )
        )
    return requests


@dataclass(frozen=True, slots=True)
class WorkloadSummary:
    """Token counts of a request list, for manifests and the report."""

    n_requests: int
    prompt_tokens_mean: float
    prompt_tokens_p50: float
    prompt_tokens_max: int
    output_tokens_mean: float
    output_tokens_max: int
    total_tokens: int

    @classmethod
    def of(cls, requests: Sequence[GenRequest]) -> WorkloadSummary:
        if not requests:
            return cls(0, 0.0, 0.0, 0, 0.0, 0, 0)
        prompt = np.array([r.prompt_tokens for r in requests])
        output = np.array([r.max_tokens for r in requests])
        return cls(
            n_requests=len(requests),
            prompt_tokens_mean=float(prompt.mean()),
            prompt_tokens_p50=float(np.median(prompt)),
            prompt_tokens_max=int(prompt.max()),
            output_tokens_mean=float(output.mean()),
            output_tokens_max=int(output.max()),
            total_tokens=int(prompt.sum() + output.sum()),
        )

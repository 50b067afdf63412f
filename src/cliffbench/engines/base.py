"""The one async interface every engine implements.

Lifecycle: `await start()` once per study, `stream(request)` per request (an async iterator that
yields one `TokenEvent` per generated token, stamped with `time.perf_counter()` when the event
reaches the harness's event loop), `memory()` at any time, `await stop()` on every exit path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Engine", "EngineError", "GenRequest", "KvMemory", "RequestRejected", "TokenEvent", "engine_failure"]


@dataclass(frozen=True, slots=True)
class GenRequest:
    """One request. Prompts travel as token ids so every engine sees exactly the same tokens."""

    request_id: int
    prompt_token_ids: tuple[int, ...]
    max_tokens: int
    prompt_text: str = ""

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One generated token. `t_s` is perf_counter on arrival in the harness's event loop.
    `t_scheduled_s` (same clock) is when the engine first scheduled the request, where the
    engine tells: the load generator derives `queue_s = t_scheduled_s - t_submit_s` from it.
    `text` is the server's text for the token where the engine only sees text (HTTP; -1 ids).
    `cached_tokens`: prompt tokens the engine served from its KV cache instead of computing them,
    where the engine tells (None: unknown, never 0 for unknown)."""

    token_id: int
    t_s: float
    t_scheduled_s: float | None = None
    text: str = ""
    cached_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class KvMemory:
    """KV-cache accounting at one instant: what is reserved vs what holds live tokens."""

    reserved_bytes: int
    live_bytes: int
    live_seqs: int
    waiting: int
    # cumulative since the engine started: differences over a level give its mean batch per step
    steps: int = 0  # forward passes (llama_decode calls, vLLM engine steps)
    decode_seqs: int = 0  # sequences that decoded a token, summed over steps
    preemptions: int = 0  # sequences evicted from the KV cache to be recomputed (vLLM)
    # a server scraped over HTTP (engines/server_metrics.py) reports its KV pool as a fraction, not
    # bytes, and vLLM's cumulative queue-time histogram; NaN / 0 where the engine does not tell
    kv_usage: float = float("nan")
    queue_wait_sum_s: float = float("nan")
    queue_wait_count: int = 0
    source: str = "engine"  # 'engine' (in-process), 'metrics' (a server's /metrics), 'none' (no state)


class EngineError(RuntimeError):
    """A per-request failure reported by an engine (the request fails, the engine lives)."""


class RequestRejected(EngineError):
    """The engine refused the request before running it (e.g. prompt + max_tokens > context)."""


@runtime_checkable
class Engine(Protocol):
    name: str

    async def start(self) -> None: ...

    def stream(self, request: GenRequest) -> AsyncIterator[TokenEvent]: ...

    def memory(self) -> KvMemory: ...

    async def stop(self) -> None: ...

    def describe(self) -> dict[str, object]:
        """Effective configuration (for the manifest and the report)."""
        ...


def engine_failure(engine: object) -> str | None:
    """Why `engine` can serve no more requests (its engine process or worker died, its server is
    gone), or None while it can. An engine tells through an optional `failure()` method; one
    without it (a fake) is taken as alive. The sweep stores a level during which its engine died
    as failed, and starts the engine afresh for the next."""
    check = getattr(engine, "failure", None)
    return check() if callable(check) else None

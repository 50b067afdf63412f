"""The slots of the llama.cpp engines (llamacpp.py) and llama-server's prompt reuse across requests.

After a request a slot keeps its tokens: their KV stays in the slot's sequence. A new request goes
to the free slot whose kept tokens share the longest common prefix with its prompt, if that
prefix is more than `slot_prompt_similarity` of the prompt, else to the least recently used free
slot (`server_context::get_available_slot` in tools/server/server-context.cpp). With
`cache_prompt` on, only the tokens after the common prefix are evaluated, and at least the last
one: its logits give the first output token (update_slots: "we have to evaluate at least 1
token to generate logits"). The reused length is what llama-server reports as `timings.cache_n`
and `usage.prompt_tokens_details.cached_tokens`.

Not modelled: llama-server's host-RAM prompt cache (`--cache-ram`), which saves a slot's state
before an LRU pick overwrites it, and `--cache-reuse` chunk shifting (off by default).

The KV operations take `seq_rm(seq_id, p0, p1) -> bool`, llama_memory_seq_rm bound to the
engine's memory (p1 = -1: to the end; p0 = -1: the whole sequence), so they run without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cliffbench.engines.base import GenRequest

__all__ = [
    "FreeSlot",
    "Pending",
    "SeqRm",
    "Slot",
    "choose_slot",
    "common_prefix",
    "drop_idle_kept",
    "release",
    "reused_prefix",
    "start",
]

SeqRm = Callable[[int, int, int], bool]


@dataclass
class Pending:
    """A request waiting for, or running in, a slot; `emit` hands its events to the caller's loop."""

    request: GenRequest
    emit: Callable[[object], None]
    cancelled: bool = False


@dataclass
class Slot:
    """One llama.cpp sequence: the request it runs and how far that request is, and once free
    what its KV still holds."""

    seq_id: int
    job: Pending | None = None
    n_past: int = 0
    prompt_pos: int = 0
    n_gen: int = 0
    last_token: int = -1
    batch_idx: int = -1
    t_scheduled_s: float = 0.0
    prompt: list[int] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    cached: int = 0  # prompt tokens of the running request served from the slot's KV
    kept: list[int] = field(default_factory=list)  # free slot: the tokens its KV sequence still holds
    last_used: int = -1  # when released (a counter, higher is later), for the least-recently-used pick


@dataclass(frozen=True, slots=True)
class FreeSlot:
    """A slot without a request, as the pick sees it: its index, the tokens its KV holds, and
    when it was last released (-1: never, as llama-server's t_last_used)."""

    index: int
    kept: Sequence[int]
    last_used: int = -1


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    # compared in numpy: the worker thread does this per free slot per admission, holding the GIL
    differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differ[0]) if differ.size else n


def choose_slot(prompt: Sequence[int], free: Sequence[FreeSlot], similarity: float) -> int:
    """Index of the slot llama-server gives `prompt` among `free` (non-empty): the one whose kept
    tokens match most of the prompt, if more than `similarity` of it (a strict >, and a later slot
    must beat the best so far strictly); else the least recently used, where llama-server's `<=`
    makes the last of equally old slots win. `similarity` 0 skips the match."""
    if not free:
        raise ValueError("choose_slot: no free slot")
    best: FreeSlot | None = None
    if similarity != 0.0 and prompt:
        best_sim = 0.0
        for slot in free:
            if not slot.kept:
                continue
            sim = common_prefix(slot.kept, prompt) / len(prompt)
            if sim > best_sim and sim > similarity:
                best, best_sim = slot, sim
    if best is None:
        for slot in free:
            if best is None or slot.last_used <= best.last_used:
                best = slot
    assert best is not None
    return best.index


def reused_prefix(kept: Sequence[int], prompt: Sequence[int], cache_prompt: bool) -> int:
    """Prompt tokens served from the slot's KV: the common prefix with what it kept, less one
    when it covers the whole prompt (the last prompt token is evaluated for its logits); 0 with
    cache_prompt off (llama-server then evaluates the whole prompt)."""
    if not cache_prompt:
        return 0
    n = common_prefix(kept, prompt)
    return n - 1 if n > 0 and n == len(prompt) else n


def start(slot: Slot, cache_prompt: bool, seq_rm: SeqRm) -> None:
    """Point a slot just given a request at the first prompt token to evaluate: the KV of the
    prefix the prompt shares with what the slot kept stays, the rest of the sequence goes."""
    n = reused_prefix(slot.kept, slot.prompt, cache_prompt)
    if not seq_rm(slot.seq_id, n, -1):
        # a memory that cannot drop a tail (recurrent models) starts over, as llama-server's does
        seq_rm(slot.seq_id, -1, -1)
        n = 0
    slot.cached = slot.n_past = slot.prompt_pos = n
    slot.kept = []


def release(slot: Slot, keep: bool, seq_rm: SeqRm, stamp: int) -> None:
    """Free a slot at time `stamp`. `keep` (its request ended normally, cache_prompt on): its tokens
    stay in the KV for a later prompt, the last answer token excepted (sampled, never decoded)."""
    if keep:
        slot.kept = (slot.prompt + slot.generated)[: slot.n_past]
    else:  # a failed or abandoned request's KV may be partial: nothing is kept
        seq_rm(slot.seq_id, -1, -1)
        slot.kept = []
    slot.last_used = stamp
    slot.job, slot.n_past, slot.prompt_pos, slot.n_gen, slot.batch_idx = None, 0, 0, 0, -1
    slot.generated = []


def drop_idle_kept(slots: Sequence[Slot], seq_rm: SeqRm) -> bool:
    """Free the KV one free slot kept (the first that holds any), as llama-server purges idle slots
    one by one when a batch finds the shared KV full. False: none kept any."""
    for slot in slots:
        if slot.job is None and slot.kept:
            seq_rm(slot.seq_id, -1, -1)
            slot.kept = []
            return True
    return False

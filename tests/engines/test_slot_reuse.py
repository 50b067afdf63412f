"""llama-server's slot pick and prompt reuse (engines/slot_reuse.py) without a model: the longest
common prefix above the similarity threshold, the least-recently-used fallback, the reused length,
and what a slot keeps and drops of its KV (a recorded `seq_rm`)."""

from __future__ import annotations

import pytest

from cliffbench.config import InputError, parse_spec
from cliffbench.engines.base import GenRequest
from cliffbench.engines.slot_reuse import (
    FreeSlot,
    Pending,
    Slot,
    choose_slot,
    common_prefix,
    drop_idle_kept,
    release,
    reused_prefix,
    start,
)
from cliffbench.engines.specs import LlamaCppSerialSpec, LlamaCppSlotsSpec

PROMPT = list(range(100, 110))  # 10 tokens


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix((5,), [6]) == 0


def test_the_longest_prefix_above_the_threshold_wins() -> None:
    free = [FreeSlot(0, PROMPT[:3], last_used=1), FreeSlot(1, [*PROMPT[:6], 7], last_used=2), FreeSlot(2, [], 0)]
    assert choose_slot(PROMPT, free, 0.10) == 1  # 6/10 beats 3/10, whatever their ages


def test_the_threshold_is_strict_and_falls_back_to_lru() -> None:
    # 1/10 is not more than 0.10: the least recently used slot (index 2, never used) gets it
    free = [FreeSlot(0, PROMPT[:1], last_used=5), FreeSlot(1, [9], last_used=3), FreeSlot(2, [], -1)]
    assert choose_slot(PROMPT, free, 0.10) == 2
    assert choose_slot(PROMPT, free, 0.05) == 0  # 0.1 > 0.05


def test_similarity_zero_turns_the_match_off() -> None:
    free = [FreeSlot(0, PROMPT, last_used=9), FreeSlot(1, [], last_used=4)]
    assert choose_slot(PROMPT, free, 0.0) == 1
    assert choose_slot(PROMPT, free, 0.10) == 0


def test_lru_ties_go_to_the_last_slot_as_in_llama_server() -> None:
    # get_available_slot keeps `slot.t_last_used <= t_last`: of equally old slots the last wins
    assert choose_slot(PROMPT, [FreeSlot(0, []), FreeSlot(1, []), FreeSlot(2, [])], 0.10) == 2
    assert choose_slot(PROMPT, [FreeSlot(0, [], 3), FreeSlot(1, [], 1), FreeSlot(2, [], 1)], 0.10) == 2
    # equal matches: the first keeps it (a later one must be strictly better)
    assert choose_slot(PROMPT, [FreeSlot(0, PROMPT[:5], 1), FreeSlot(1, PROMPT[:5], 0)], 0.10) == 0
    with pytest.raises(ValueError, match="no free slot"):
        choose_slot(PROMPT, [], 0.10)


def test_reused_prefix_leaves_the_last_prompt_token_to_evaluate() -> None:
    assert reused_prefix([*PROMPT[:4], 1, 2], PROMPT, True) == 4
    assert reused_prefix([*PROMPT, 1, 2], PROMPT, True) == 9  # the whole prompt kept: its logits still needed
    assert reused_prefix(PROMPT, PROMPT, True) == 9
    assert reused_prefix([*PROMPT, 1], PROMPT, False) == 0  # cache_prompt off
    assert reused_prefix([], PROMPT, True) == 0


class _Memory:
    """llama_memory_seq_rm as a record of calls; `partial=False`: a memory that cannot drop a tail."""

    def __init__(self, partial: bool = True) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.partial = partial

    def __call__(self, seq_id: int, p0: int, p1: int) -> bool:
        self.calls.append((seq_id, p0, p1))
        return self.partial or p0 <= 0


def _finished(seq_id: int, prompt: list[int], answer: list[int]) -> Slot:
    """A slot whose request just sampled its last answer token (that one never decoded)."""
    slot = Slot(seq_id, job=Pending(GenRequest(0, tuple(prompt), len(answer)), lambda _: None))
    slot.prompt, slot.generated, slot.n_gen = list(prompt), list(answer), len(answer)
    slot.n_past = len(prompt) + len(answer) - 1
    return slot


def test_a_released_slot_keeps_its_tokens_and_the_next_turn_reuses_them() -> None:
    mem = _Memory()
    slot = _finished(1, PROMPT, [7, 8, 9])
    release(slot, True, mem, stamp=4)
    assert slot.job is None and slot.last_used == 4 and mem.calls == []  # nothing removed
    assert slot.kept == [*PROMPT, 7, 8]  # the last answer token was sampled, never decoded
    # the next turn re-sends the history and a new message: only the tail after the kept part is new
    slot.prompt = [*PROMPT, 7, 8, 9, 50, 51]
    start(slot, True, mem)
    assert mem.calls == [(1, 12, -1)] and (slot.cached, slot.n_past, slot.prompt_pos) == (12, 12, 12)
    assert slot.kept == []


def test_without_keep_or_cache_prompt_nothing_is_reused() -> None:
    mem = _Memory()
    slot = _finished(0, PROMPT, [7, 8])
    release(slot, False, mem, stamp=1)  # cache_prompt off, or the request failed
    assert mem.calls == [(0, -1, -1)] and slot.kept == []
    slot.kept, slot.prompt = list(PROMPT), list(PROMPT)
    start(slot, False, mem)
    assert mem.calls[-1] == (0, 0, -1) and slot.cached == 0


def test_a_memory_that_cannot_drop_a_tail_starts_over() -> None:
    mem = _Memory(partial=False)
    slot = Slot(3, kept=list(PROMPT), prompt=[*PROMPT, 1])
    start(slot, True, mem)
    assert mem.calls == [(3, 10, -1), (3, -1, -1)] and slot.cached == slot.n_past == 0


def test_idle_slots_free_their_kept_tokens_one_at_a_time() -> None:
    mem = _Memory()
    busy = Slot(0, job=Pending(GenRequest(0, (1,), 1), lambda _: None), kept=[1, 2])
    empty, holder, other = Slot(1), Slot(2, kept=[3, 4]), Slot(3, kept=[5])
    slots = [busy, empty, holder, other]
    assert drop_idle_kept(slots, mem) and mem.calls == [(2, -1, -1)] and holder.kept == []
    assert drop_idle_kept(slots, mem) and other.kept == [] and busy.kept == [1, 2]
    assert not drop_idle_kept(slots, mem)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_a_bad_similarity_is_a_one_line_error(value: float) -> None:
    with pytest.raises(InputError, match=rf"^slot_prompt_similarity: must be a fraction in \[0, 1\].*got {value}$"):
        parse_spec(LlamaCppSlotsSpec, {"slot_prompt_similarity": value})
    with pytest.raises(InputError, match=r"^cache_prompt: Input should be a valid boolean"):
        parse_spec(LlamaCppSerialSpec, {"cache_prompt": "sometimes"})


def test_prompt_reuse_is_off_by_the_kits_default_and_named_when_on() -> None:
    assert not LlamaCppSlotsSpec().cache_prompt and LlamaCppSlotsSpec().slot_prompt_similarity == 0.10
    on = LlamaCppSlotsSpec(cache_prompt=True)
    assert "prompt reuse on" in on.speed_settings() and on.speed_key("q4_1") == (
        "llama.cpp",
        "q4_1",
        4,
        False,
        "cache_prompt",
    )


@pytest.mark.engine  # the engine reads the prepared model's manifest (no model is loaded)
@pytest.mark.parametrize(("cache_prompt", "want"), [(False, [0, 1, 2]), (True, [7, 6, 5])])
def test_admission_packs_the_lowest_slots_unless_prompts_are_kept(cache_prompt: bool, want: list[int]) -> None:
    """Without prompt reuse the lowest free slots take the requests: a decode over KV streams
    scattered across 32 slots (kv_unified off) ran 37-55 instead of 94-99 tok/s at 16 users. With
    reuse, llama-server's pick (here: the least recently used, ties to the last slot)."""
    from cliffbench.engines.llamacpp import LlamaCppEngine

    eng = LlamaCppEngine(LlamaCppSlotsSpec(slots=8, ctx_per_slot=64, cache_prompt=cache_prompt))
    eng._seq_rm = lambda seq_id, p0, p1: True  # type: ignore[method-assign]  # no model loaded
    for i in range(3):
        eng._queue.append(Pending(GenRequest(i, tuple(PROMPT), 4), lambda item: None))
    assert eng._admit()
    assert [next(s.seq_id for s in eng._slots if s.job and s.job.request.request_id == i) for i in range(3)] == want

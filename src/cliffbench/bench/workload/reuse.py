"""Workloads with KV reuse: shared system prompts, RAG over a document pool, multi-turn sessions.

Every token is cut from the corpus, seeded, so every engine sees the same ids. `shared_prefix`
and `rag` are plain request lists; `sessions` is a plan of conversations whose turns are only
known once the previous answer is generated: the request list holds each turn at its exact
length with a stand-in for the earlier answers (corpus tokens), and the user that runs the
session (bench/load/sessions.py) swaps in the answer ids it actually received.

The theoretical hit rate of a workload is what an infinite prefix cache would serve: for a plain
list, each prompt's longest prefix already sent by an earlier request (token-exact, no block
granularity); for sessions, each turn's history (the previous turn's prompt and its answer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cliffbench.bench.spec.workload import RagSpec, SessionsSpec, SharedPrefixSpec, WorkloadSpec
from cliffbench.bench.workload.lengths import sample_lengths
from cliffbench.engines.base import GenRequest
from cliffbench.models.tokenizer import Tokenizer

__all__ = [
    "SessionPlan",
    "SessionRequests",
    "SessionTurn",
    "build_rag",
    "build_sessions",
    "build_shared_prefix",
    "prefix_hit_tokens",
    "theoretical_hit_rate",
    "zipf_weights",
]

IntArray = npt.NDArray[np.int64]


def zipf_weights(n: int, s: float) -> npt.NDArray[np.float64]:
    """Popularity of items 1..n: proportional to 1 / rank**s (s = 0: uniform)."""
    w: npt.NDArray[np.float64] = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    out: npt.NDArray[np.float64] = w / w.sum()
    return out


def _window(stream: IntArray, start: int, length: int) -> list[int]:
    out: list[int] = stream[(start + np.arange(length)) % stream.size].tolist()
    return out


def _requests(bodies: list[list[int]], outputs: IntArray, tok: Tokenizer, start_id: int) -> list[GenRequest]:
    return [GenRequest(start_id + i, tuple(ids), int(outputs[i]), tok.decode(ids)) for i, ids in enumerate(bodies)]


def _check_context(requests: Sequence[GenRequest], max_context: int | None) -> None:
    if max_context is None:
        return
    for r in requests:
        if r.prompt_tokens + r.max_tokens > max_context:
            raise ValueError(
                f"workload: request {r.request_id}: {r.prompt_tokens} prompt + {r.max_tokens} output "
                f"exceeds max_context {max_context}"
            )


def build_shared_prefix(
    spec: WorkloadSpec, n: int, tok: Tokenizer, stream: IntArray, *, max_context: int | None, start_id: int
) -> list[GenRequest]:
    """`n` requests: a Zipf-chosen system prompt of the pool, then the request's own question."""
    sp = spec.shared_prefix or SharedPrefixSpec()
    rng_pick, rng_q, rng_out, rng_off = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(4))
    # the system prompts sit at evenly spaced corpus offsets, the questions at random ones
    prefixes = [_window(stream, p * stream.size // sp.prompts, sp.prefix_tokens) for p in range(sp.prompts)]
    picks = rng_pick.choice(sp.prompts, size=n, p=zipf_weights(sp.prompts, sp.zipf_s))
    questions = sample_lengths(spec.prompt, n, rng_q)
    outputs = sample_lengths(spec.output, n, rng_out)
    offsets = rng_off.integers(0, stream.size, size=n)
    bodies = [prefixes[int(picks[i])] + _window(stream, int(offsets[i]), int(questions[i])) for i in range(n)]
    reqs = _requests(bodies, outputs, tok, start_id)
    _check_context(reqs, max_context)
    return reqs


def build_rag(
    spec: WorkloadSpec, n: int, tok: Tokenizer, stream: IntArray, *, max_context: int | None, start_id: int
) -> list[GenRequest]:
    """`n` requests: `k` distinct Zipf-chosen documents of the pool, then a question."""
    rg = spec.rag or RagSpec()
    rng_pick, rng_q, rng_out, rng_off = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(4))
    docs = [
        _window(stream, rg.offset_tokens + d * stream.size // rg.documents, rg.doc_tokens) for d in range(rg.documents)
    ]
    weights = zipf_weights(rg.documents, rg.zipf_s)
    questions = sample_lengths(spec.prompt, n, rng_q)
    outputs = sample_lengths(spec.output, n, rng_out)
    offsets = rng_off.integers(0, stream.size, size=n)
    bodies = []
    for i in range(n):
        # the retriever ranks the documents: the most popular first, so requests sharing their top
        # document share a prefix, as a RAG pipeline that sorts by score does
        chosen = sorted(rng_pick.choice(rg.documents, size=rg.k, replace=False, p=weights).tolist())
        ids = [t for d in chosen for t in docs[d]]
        bodies.append(ids + _window(stream, int(offsets[i]), int(questions[i])))
    reqs = _requests(bodies, outputs, tok, start_id)
    _check_context(reqs, max_context)
    return reqs


@dataclass(frozen=True, slots=True)
class SessionTurn:
    """One turn of a planned session: its index in the level's request list, its new user message,
    its think time before it is sent, and the history it re-sends (tokens, 0 for a first turn)."""

    index: int
    user_ids: tuple[int, ...]
    think_s: float
    history_tokens: int


@dataclass(frozen=True)
class SessionPlan:
    """The level's conversations, in the order they start, the request list (one request per
    planned turn, exact lengths, earlier answers stood in by corpus tokens), and the `budget`: how
    many turns the level sends in all.

    More turns are planned than the budget sends, so that users never run out of conversations
    while the level lasts: a user that finishes one starts the next, and when the budget is spent
    every user stops after its current turn (its conversation left unfinished, as when a chat
    client closes). A user running dry before that would leave early and close the steady window
    with it (bench/metrics/phases.py)."""

    sessions: list[list[SessionTurn]]
    requests: list[GenRequest]
    budget: int

    @property
    def think_s(self) -> list[float]:
        """Think time before each request of the list (0 before a session's first turn)."""
        out = [0.0] * len(self.requests)
        for s in self.sessions:
            for t in s:
                out[t.index] = t.think_s
        return out

    def hit_rate(self, sent_prompt_tokens: Mapping[int, int] | None = None) -> float:
        """History tokens / prompt tokens (NaN without prompt tokens): over the turns sent, given
        as request id -> prompt tokens as sent (the real answers' lengths in the history), else
        over every planned turn."""
        hist = total = 0
        for s in self.sessions:
            for t in s:
                rid = self.requests[t.index].request_id
                if sent_prompt_tokens is None:
                    prompt = self.requests[t.index].prompt_tokens
                elif rid in sent_prompt_tokens:
                    prompt = sent_prompt_tokens[rid]
                else:
                    continue
                # a first turn has no history; a later one re-sends all but its new message
                hist += prompt - len(t.user_ids) if t.history_tokens else 0
                total += prompt
        return hist / total if total else float("nan")


class SessionRequests(list[GenRequest]):
    """A session level's request list that knows its conversations, so the level driver runs them
    as sessions wherever the list is handed (the sweep keeps lists, not plans). Its items are the
    first `plan.budget` planned turns: as many requests as the level sends, for counts and
    progress; which turns are sent is decided by the users as they run."""

    def __init__(self, plan: SessionPlan) -> None:
        super().__init__(plan.requests[: plan.budget])
        self.plan = plan


#: turns planned per turn of the budget: a user abandons at most its current session's later turns
#: when the budget is spent, so 3x covers sessions up to (3n - n) / users + 1 turns long
PLANNED_PER_SENT = 3


def build_sessions(
    spec: WorkloadSpec, n: int, tok: Tokenizer, stream: IntArray, *, max_context: int | None, start_id: int
) -> SessionPlan:
    """A budget of `n` turns, and whole sessions planned until `PLANNED_PER_SENT` x `n` turns are."""
    ss = spec.sessions or SessionsSpec()
    rng_turns, rng_user, rng_out, rng_off, rng_think, rng_first = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(6)
    )
    sessions: list[list[SessionTurn]] = []
    requests: list[GenRequest] = []
    while len(requests) < PLANNED_PER_SENT * n:
        turns = int(sample_lengths(ss.turns, 1, rng_turns)[0])
        history: list[int] = []
        session: list[SessionTurn] = []
        for k in range(turns):
            i = len(requests)
            length = int(sample_lengths(spec.prompt if k == 0 else ss.user, 1, rng_first if k == 0 else rng_user)[0])
            user = _window(stream, int(rng_off.integers(0, stream.size)), length)
            think = float(rng_think.exponential(ss.think_s)) if k > 0 and ss.think_s > 0 else 0.0
            session.append(SessionTurn(i, tuple(user), think, len(history)))
            ids = history + user
            answer = int(sample_lengths(spec.output, 1, rng_out)[0])
            requests.append(GenRequest(start_id + i, tuple(ids), answer, tok.decode(ids)))
            # the stand-in answer: as many corpus tokens as the answer will have
            history = ids + _window(stream, int(rng_off.integers(0, stream.size)), answer)
        sessions.append(session)
    _check_context(requests, max_context)
    return SessionPlan(sessions, requests, n)


def prefix_hit_tokens(requests: Sequence[GenRequest]) -> list[int]:
    """Per request, the tokens of its prompt that an earlier prompt of the list began with (the
    longest such prefix): what an infinite prefix cache, warmed by the list in order, would serve."""
    root: dict[int, dict] = {}  # type: ignore[type-arg]  # a trie of token ids, nested dicts
    hits = []
    for r in requests:
        node, hit, matching = root, 0, True
        for t in r.prompt_token_ids:
            nxt = node.get(t)
            if nxt is None:
                matching = False
                nxt = node[t] = {}
            elif matching:
                hit += 1
            node = nxt
        hits.append(hit)
    return hits


def theoretical_hit_rate(
    requests: Sequence[GenRequest],
    plan: SessionPlan | None = None,
    sent_prompt_tokens: Mapping[int, int] | None = None,
) -> float:
    """Tokens an infinite prefix cache would serve / prompt tokens (NaN without prompt tokens).
    With a session `plan` (or a `SessionRequests` list): each turn's history (its answers are in no
    earlier prompt). `sent_prompt_tokens` (request id -> prompt tokens as sent) restricts the count
    to those requests, as the measured hit rate is (a level's steady ones): the cache is still the
    one warmed by every request before them."""
    if plan is None and isinstance(requests, SessionRequests):
        plan = requests.plan
    if plan is not None:
        return plan.hit_rate(sent_prompt_tokens)
    counted = [
        (hit, r.prompt_tokens)
        for hit, r in zip(prefix_hit_tokens(requests), requests, strict=True)
        if sent_prompt_tokens is None or r.request_id in sent_prompt_tokens
    ]
    total = sum(p for _, p in counted)
    return sum(h for h, _ in counted) / total if total else float("nan")

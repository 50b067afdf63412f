"""Users holding conversations: each turn re-sends the history with the answer's ids as generated."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from cliffbench.bench.load.driver import Probes, run_level
from cliffbench.bench.spec.workload import SessionsSpec, WorkloadSpec
from cliffbench.bench.workload.requests import corpus_token_ids
from cliffbench.bench.workload.reuse import SessionPlan, build_sessions
from cliffbench.engines.base import GenRequest, TokenEvent
from cliffbench.engines.fake import FakeEngine
from cliffbench.models.tokenizer import CharTokenizer

_NO_PROBES = Probes(lag=False, memory=False)


class _Recording(FakeEngine):
    """A fake whose answer ids are unique per request (request_id * 1000 + k), so a turn can be
    checked against the exact answer before it; it keeps every request it was sent."""

    def __init__(self, fail_id: int = -1) -> None:
        super().__init__(itl_s=0.001)
        self.seen: list[GenRequest] = []
        self.fail_id = fail_id

    async def stream(self, request: GenRequest) -> AsyncIterator[TokenEvent]:
        self.seen.append(request)
        async for ev in super().stream(request):
            if request.request_id == self.fail_id:
                raise RuntimeError("fake failure")
            yield TokenEvent(request.request_id * 1000 + ev.token_id, ev.t_s, ev.t_scheduled_s)


def _plan(n: int, think_s: float = 0.0) -> SessionPlan:
    tok = CharTokenizer()
    ss = SessionsSpec(turns={"dist": "fixed", "mean": 3}, user={"mean": 5}, think_s=think_s)
    spec = WorkloadSpec(kind="sessions", sessions=ss, prompt={"mean": 10}, output={"mean": 4})
    return build_sessions(spec, n, tok, corpus_token_ids(tok), max_context=None, start_id=0)


def test_next_turn_contains_exactly_the_previous_answer_ids() -> None:
    plan = _plan(9, think_s=0.01)
    eng = _Recording()
    run = asyncio.run(run_level(eng, plan.requests, concurrency=2, sessions=plan, probes=_NO_PROBES))
    assert sorted(r.request_id for r in run.records) == list(range(9))
    by_id = {r.request_id: r for r in eng.seen}
    sent = [s for s in plan.sessions if s[0].index in by_id]
    assert len(sent) == 3  # the budget of 9 turns: three whole sessions of 3
    for session in sent:
        for prev, turn in itertools.pairwise(session):
            before, now = by_id[prev.index], by_id[turn.index]
            answer = tuple(prev.index * 1000 + k for k in range(4))
            assert now.prompt_token_ids == before.prompt_token_ids + answer + turn.user_ids
            assert now.prompt_tokens == plan.requests[turn.index].prompt_tokens  # as planned
    # a user holds one conversation at a time: a session's turns went through one user, in order
    users = {r.request_id: r.user for r in run.records}
    for session in sent:
        assert len({users[t.index] for t in session}) == 1


def test_a_failed_turn_ends_its_session() -> None:
    plan = _plan(6)
    eng = _Recording(fail_id=1)  # the second turn of the first session
    run = asyncio.run(run_level(eng, plan.requests, concurrency=1, sessions=plan, probes=_NO_PROBES))
    status = {r.request_id: r.status for r in run.records}
    # turn 2 never sent; the budget of 6 turns goes on into the third session
    assert status == {0: "ok", 1: "failed", 3: "ok", 4: "ok", 5: "ok", 6: "ok"}


def test_the_budget_stops_every_user_after_its_current_turn() -> None:
    """Users never run dry of conversations: when the budget is spent they all stop within one
    turn, sessions left unfinished, so the level's users leave together."""
    tok = CharTokenizer()
    ss = SessionsSpec(turns={"dist": "fixed", "mean": 5}, user={"mean": 5})
    spec = WorkloadSpec(kind="sessions", sessions=ss, prompt={"mean": 10}, output={"mean": 4})
    plan = build_sessions(spec, 12, tok, corpus_token_ids(tok), max_context=None, start_id=0)
    assert plan.budget == 12 and len(plan.requests) >= 3 * 12  # spare sessions planned
    run = asyncio.run(run_level(_Recording(), plan.requests, concurrency=4, sessions=plan, probes=_NO_PROBES))
    assert len(run.records) == 12
    per_user = {u: sum(r.user == u for r in run.records) for u in range(4)}
    assert per_user == {0: 3, 1: 3, 2: 3, 3: 3}  # equal service: every user sent 3 turns of its session
    ends = sorted(max(r.t_done_s for r in run.records if r.user == u) for u in range(4))
    assert ends[-1] - ends[0] < 0.5 * (ends[-1] - min(r.t_submit_s for r in run.records))

"""Users that hold conversations: each runs one session turn after turn, then starts the next.

A session's turn re-sends the whole history, as chat clients do: the previous turn's prompt, the
answer the engine actually generated (its token ids, exactly), then the new user message. The
sessions of a level are drawn from one shared plan (bench/workload/reuse.py) in order, so a user
that finishes a conversation starts the next one not yet taken; a failed turn ends its session
(the user gives up on that conversation), its later turns are not sent. The level sends the plan's
budget of turns in all, whichever users send them: once it is spent every user stops after its
current turn, so the users leave together, one turn apart, as with independent requests, not one
whole conversation apart.
"""

from __future__ import annotations

from collections.abc import Iterator

from cliffbench.bench.load.users import Sent, UserScript
from cliffbench.bench.workload.reuse import SessionPlan, SessionTurn
from cliffbench.engines.base import GenRequest

__all__ = ["SessionDraw", "SessionScript"]


class SessionDraw:
    """The level's sessions, handed out in order to the users that come free (`script_for`), and
    the turns left of the level's budget."""

    def __init__(self, plan: SessionPlan) -> None:
        self.plan = plan
        self._sessions: Iterator[list[SessionTurn]] = iter(plan.sessions)
        self._left = plan.budget

    def take_turn(self) -> bool:
        """One turn of the budget, if any is left."""
        if self._left <= 0:
            return False
        self._left -= 1
        return True

    def next_session(self) -> list[SessionTurn] | None:
        return next(self._sessions, None)

    def script_for(self, user: int) -> UserScript:
        return SessionScript(self)


class SessionScript:
    """One user's conversations: turn k+1 = turn k's prompt + its answer's ids + a new message."""

    def __init__(self, draw: SessionDraw) -> None:
        self._draw = draw
        self._turns: list[SessionTurn] = []
        self._next = 0

    def next_request(self, previous: Sent | None) -> tuple[int, GenRequest] | None:
        if previous is not None and previous.status != "ok":
            self._turns = []  # a failed turn ends its conversation
        if not self._draw.take_turn():
            return None
        if self._next >= len(self._turns):
            session = self._draw.next_session()
            if session is None:
                return None
            self._turns, self._next = session, 0
            previous = None
        turn = self._turns[self._next]
        self._next += 1
        planned = self._draw.plan.requests[turn.index]
        if previous is None:
            return turn.index, planned
        history = previous.request.prompt_token_ids + previous.output_token_ids
        ids = history + turn.user_ids
        return turn.index, GenRequest(planned.request_id, ids, planned.max_tokens, planned.prompt_text)

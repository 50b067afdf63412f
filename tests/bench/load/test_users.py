"""Users that own their requests, and their ramp: counts and orders, no wall-clock bounds."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cliffbench.bench.load.driver import run_level
from cliffbench.bench.load.users import Sent, SharedDraw, User, ramp_offsets_s, run_users
from cliffbench.engines.base import GenRequest
from cliffbench.engines.fake import FakeEngine


def _reqs(n: int, max_tokens: int = 3) -> list[GenRequest]:
    return [GenRequest(i, (1, 2, 3), max_tokens) for i in range(n)]


def test_ramp_offsets_are_stratified_seeded_and_start_with_the_first_user() -> None:
    a = ramp_offsets_s(8, 2.0, np.random.default_rng(3))
    assert a[0] == 0.0
    # user u within [u, u + 1) x 2.0 / 8
    assert all(u * 0.25 <= x < (u + 1) * 0.25 for u, x in enumerate(a))
    np.testing.assert_array_equal(a, ramp_offsets_s(8, 2.0, np.random.default_rng(3)))
    assert not ramp_offsets_s(4, 0.0, np.random.default_rng(0)).any()  # a burst
    with pytest.raises(ValueError, match="ramp_s"):
        ramp_offsets_s(4, -1.0, np.random.default_rng(0))


class _Turns:
    """A script that is not a shared draw: each answer's length sets the next request's id, the
    way a session's next turn carries its previous answer."""

    def __init__(self, first: int) -> None:
        self.next_id = first

    def next_request(self, previous: Sent | None) -> tuple[int, GenRequest] | None:
        if previous is not None:
            if previous.request.request_id >= 100:
                return None
            self.next_id = previous.request.request_id * 10 + previous.output_tokens
        return 0, GenRequest(self.next_id, (1,), 2)


def test_a_user_sends_what_its_script_yields_given_what_came_back() -> None:
    sent: list[tuple[int, int]] = []

    async def send(user: int, req: GenRequest) -> Sent:
        sent.append((user, req.request_id))
        await asyncio.sleep(0)
        return Sent(req, "ok", req.max_tokens)

    users = [User(0, _Turns(1)), User(1, _Turns(5))]
    asyncio.run(run_users(users, send, 0.0, None))
    # user 0: 1 -> 1*10+2 = 12 -> 122 (>= 100: done); user 1: 5 -> 52 -> 522
    assert sorted(r for u, r in sent if u == 0) == [1, 12, 122]
    assert sorted(r for u, r in sent if u == 1) == [5, 52, 522]


def test_shared_draw_hands_out_each_request_once_in_order() -> None:
    draw = SharedDraw(_reqs(3))
    got = [draw.script_for(u).next_request(None) for u in (0, 1, 0, 1)]
    assert [g[0] if g else None for g in got] == [0, 1, 2, None]


def test_closed_loop_records_its_users_and_ramps_them_in() -> None:
    # 24 requests of 50 ms each over 4 users last 0.3 s at least: every user starts before they run out
    engine = FakeEngine(ttft_s=0.05, itl_s=0.0)
    run = asyncio.run(run_level(engine, _reqs(24, 1), concurrency=4, ramp_s=0.2, seed=1))
    assert sorted({r.user for r in run.records}) == [0, 1, 2, 3] and run.ramp_s == 0.2
    first = {u: min(r.t_submit_s for r in run.records if r.user == u) for u in range(4)}
    # users start in order over the ramp, each in its own quarter of it (the sleep only delays)
    assert first[0] < first[1] < first[2] < first[3] and first[3] >= 0.15


def test_auto_ramp_is_the_warmup_request_s_wall() -> None:
    engine = FakeEngine(ttft_s=0.03, itl_s=0.0)
    warm = [GenRequest(1000, (1,), 1)]
    run = asyncio.run(run_level(engine, _reqs(4, 1), concurrency=2, ramp_s="auto", warmup=warm))
    wall = next(r.t_done_s - r.t_submit_s for r in run.records if r.warmup)
    assert run.ramp_s == pytest.approx(wall) and run.ramp_s >= 0.03

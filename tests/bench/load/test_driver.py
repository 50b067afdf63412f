"""The load generator against a fake engine (never used to claim anything about real engines).

No check here depends on how fast the machine is: a sleep never ends early, so times are bounded
from below (a timeout fires no sooner than its deadline, a request is never sent before its
scheduled time) and counts from above (a user sends no more requests than fit in the time); what
a busy machine changes (how late) is never asserted."""

from __future__ import annotations

import asyncio

import numpy as np

from cliffbench.bench.load.arrivals import poisson_offsets_s
from cliffbench.bench.load.driver import run_level
from cliffbench.bench.metrics.level import achieved_concurrency
from cliffbench.engines.base import GenRequest
from cliffbench.engines.fake import FakeEngine


def _reqs(n: int, max_tokens: int = 4) -> list[GenRequest]:
    return [GenRequest(i, (1, 2, 3), max_tokens) for i in range(n)]


def test_closed_loop_holds_target_concurrency() -> None:
    engine = FakeEngine(ttft_s=0.01, itl_s=0.005)
    run = asyncio.run(run_level(engine, _reqs(40), concurrency=8))
    assert engine.peak_in_flight == 8
    assert len(run.records) == 40 and all(r.status == "ok" and r.output_tokens == 4 for r in run.records)
    ok = [r for r in run.records if not r.warmup]
    starts = np.array([r.t_submit_s for r in ok])
    ends = np.array([r.token_times_s[-1] for r in ok])
    # all 40 requests in 5 waves of 8: concurrency stays at 8 until the last wave drains
    assert achieved_concurrency(starts, ends, (starts.min(), ends.max())) > 7.5


def test_warmup_runs_first_and_is_marked() -> None:
    engine = FakeEngine(ttft_s=0.001, itl_s=0.001)
    warm = [GenRequest(1000 + i, (1,), 2) for i in range(2)]
    run = asyncio.run(run_level(engine, _reqs(4), concurrency=2, warmup=warm))
    flags = [r.warmup for r in run.records]
    assert flags[:2] == [True, True] and flags[2:] == [False] * 4


def test_failures_are_records_not_crashes() -> None:
    engine = FakeEngine(ttft_s=0.001, itl_s=0.001, fail_every=3)
    run = asyncio.run(run_level(engine, _reqs(9), concurrency=3))
    failed = [r for r in run.records if r.status == "failed"]
    assert {r.request_id for r in failed} == {0, 3, 6}
    assert all("fake failure" in r.error for r in failed)


def test_timeout_is_its_own_status() -> None:
    engine = FakeEngine(ttft_s=0.5, itl_s=0.0)
    run = asyncio.run(run_level(engine, _reqs(2, 1), concurrency=2, request_timeout_s=0.05))
    assert [r.status for r in run.records] == ["timeout", "timeout"]


class _SlowEvenIds(FakeEngine):
    """Even request ids never answer (until cancelled); odd ones answer at once."""

    async def stream(self, request: GenRequest):  # type: ignore[no-untyped-def]
        if request.request_id % 2 == 0:
            await asyncio.sleep(60)
        async for ev in super().stream(request):
            yield ev


def test_timeout_leaves_the_users_next_request_alone() -> None:
    # one user: a timed-out request must not leave a cancel pending for the same task's next one
    run = asyncio.run(run_level(_SlowEvenIds(), _reqs(6, 2), concurrency=1, request_timeout_s=0.05))
    # each even request timed out, each odd one (the same user's next) answered whole
    assert [(r.request_id, r.status, r.output_tokens) for r in run.records] == [
        (i, "timeout", 0) if i % 2 == 0 else (i, "ok", 2) for i in range(6)
    ]
    for r in run.records:
        if r.status == "timeout":  # cut by the watchdog, never before its deadline
            assert r.t_done_s - r.t_submit_s >= 0.05
            assert r.error == "no completion within request_timeout_s=0.05"
        else:  # sent after the timed-out one had ended: one request at a time per user
            assert r.t_submit_s >= run.records[r.request_id - 1].t_done_s and r.t_done_s >= r.token_times_s[-1]


def test_cancelling_the_level_is_not_a_timeout() -> None:
    async def main() -> list[str]:
        seen: list[str] = []
        task = asyncio.ensure_future(
            run_level(_SlowEvenIds(), _reqs(2, 2), concurrency=1, on_record=lambda r: seen.append(r.status))
        )
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            seen.append("cancelled")
        return seen

    assert asyncio.run(main()) == ["cancelled"]  # Ctrl-C propagates; no record is mislabelled


def test_open_loop_follows_schedule() -> None:
    engine = FakeEngine(ttft_s=0.001, itl_s=0.001)
    run = asyncio.run(run_level(engine, _reqs(50, 2), rate_rps=200.0, seed=3))
    # the seeded schedule (the level's only draw): request i is due at offsets[i] after the start
    offsets = poisson_offsets_s(50, 200.0, 1.0, np.random.default_rng(3))
    assert sorted(r.request_id for r in run.records) == list(range(50))  # each sent once
    submits = {r.request_id: r.t_submit_s for r in run.records}
    # never before its time (a busy machine sends late, not early): no request is fired ahead
    assert all(submits[i] >= offsets[i] for i in range(50))
    # not all at once either: the last is due a whole schedule after the first (about 50 / 200 s)
    assert offsets[-1] - offsets[0] > 0.1 and max(submits.values()) >= offsets[-1]


def test_duration_bounds_a_level() -> None:
    engine = FakeEngine(ttft_s=0.01, itl_s=0.01)
    run = asyncio.run(run_level(engine, _reqs(10_000, 3), concurrency=4, duration_s=0.3))
    # a request takes at least 0.03 s (its sleeps), so a user sends at most 0.3 / 0.03 + 1 of them
    # before the deadline stops it: far fewer than the 10,000 offered, however slow the machine
    assert 1 <= len(run.records) <= 4 * (0.3 / 0.03 + 1)
    assert all(r.status == "ok" for r in run.records)
    assert run.wall_s >= 0.3  # the deadline, not the requests, ended the level


def test_harness_checks_recorded() -> None:
    engine = FakeEngine(ttft_s=0.01, itl_s=0.01)
    run = asyncio.run(run_level(engine, _reqs(8, 5), concurrency=4))
    assert run.lag_s.size > 5 and np.all(run.lag_s >= 0)
    assert 0 <= run.loop_cpu_share < 1.5
    assert len(run.memory) >= 1


def test_batched_fake_engine_steps_together() -> None:
    engine = FakeEngine(ttft_s=0.02, itl_s=0.01, batched=True)
    run = asyncio.run(run_level(engine, _reqs(16, 6), concurrency=8))
    assert engine.peak_in_flight == 8
    assert all(r.status == "ok" and r.output_tokens == 6 for r in run.records)
    # every token came from the one ticker, and a step served several sequences at once (a timer
    # per sequence would take a step per token): counted, not timed
    assert engine.decode_seqs == 16 * 6
    assert engine.steps < engine.decode_seqs / 2


def test_lag_probe_measures_a_blocked_loop() -> None:
    import time

    async def block() -> None:
        await asyncio.sleep(0.02)
        time.sleep(0.05)  # the loop is stuck: a posted callback waits up to 50 ms

    async def level() -> np.ndarray:
        task = asyncio.create_task(block())
        run = await run_level(FakeEngine(ttft_s=0.01, itl_s=0.01), _reqs(4, 10), concurrency=2)
        await task
        return run.lag_s

    lags = asyncio.run(level())
    assert float(lags.max()) > 0.02


def test_lag_probe_records_the_threads_wait_on_a_grid() -> None:
    run = asyncio.run(run_level(FakeEngine(ttft_s=0.01, itl_s=0.01), _reqs(4, 10), concurrency=2))
    # at most one wake-up per 5 ms interval of the level (plus one after a stall), each at or after
    # its grid time; a thread starved by a busy machine wakes less often, so no lower bound
    assert 1 <= run.thread_wait_s.size <= run.wall_s / 0.005 + 2
    assert float(run.thread_wait_s.min()) >= 0.0
    assert run.thread_wait_s.size - 1 <= run.lag_s.size <= run.thread_wait_s.size  # one callback per wake-up

"""The load generator against a fake engine (never used to claim anything about real engines)."""

from __future__ import annotations

import asyncio

import numpy as np

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
    assert [r.status for r in run.records] == ["timeout", "ok"] * 3
    for r in run.records:
        held_s = r.t_done_s - r.t_submit_s
        if r.status == "timeout":  # the watchdog fires within one step (timeout / 10) after the deadline
            assert 0.05 <= held_s < 0.5  # generous: CI machines stall
            assert r.error == "no completion within request_timeout_s=0.05"
        else:
            assert r.t_done_s >= r.token_times_s[-1] and held_s < 0.05


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
    submits = np.sort([r.t_submit_s for r in run.records])
    rate = (len(submits) - 1) / (submits[-1] - submits[0])
    assert 100 < rate < 400  # seeded Poisson at 200/s over 50 arrivals


def test_duration_bounds_a_level() -> None:
    engine = FakeEngine(ttft_s=0.01, itl_s=0.01)
    run = asyncio.run(run_level(engine, _reqs(10_000, 3), concurrency=4, duration_s=0.3))
    assert 10 < len(run.records) < 200
    assert run.wall_s < 1.0


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
    gaps = np.concatenate([np.diff(r.token_times_s[1:]) for r in run.records])
    # one tick per step: the gaps sit on the 10 ms grid, never a skipped tick (20 ms)
    assert 0.007 < float(np.median(gaps)) < 0.013
    assert float(np.percentile(gaps, 90)) < 0.018


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
    # one wake-up per 5 ms interval of the level, each at or after its grid time
    assert run.thread_wait_s.size >= 0.5 * run.wall_s / 0.005
    assert float(run.thread_wait_s.min()) >= 0.0
    assert run.thread_wait_s.size - 1 <= run.lag_s.size <= run.thread_wait_s.size  # one callback per wake-up

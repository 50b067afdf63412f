"""A closed-loop level stopped where its steady window ends (`end_at_window`): the drain's requests are
aborted and stored as 'stopped', the steady requests are those of a level that waits, the engine is
left empty. On the fake engine: counts and phases, no wall-clock bound."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from cliffbench.bench.load.driver import LevelRun, run_level
from cliffbench.bench.metrics.phases import assign_phases
from cliffbench.bench.metrics.steady import summarize_phases
from cliffbench.bench.store.tables import level_tables
from cliffbench.engines.base import GenRequest
from cliffbench.engines.fake import FakeEngine
from cliffbench.engines.specs import FakeSpec

N_USERS, SLOTS, TOKENS, N_REQUESTS = 6, 2, 4, 24


Level = tuple[pd.DataFrame, pd.DataFrame, LevelRun, FakeEngine]


def _level(end_at_window: bool, think_time_s: float = 0.0) -> Level:
    engine = FakeEngine(FakeSpec(ttft_s=0.005, itl_s=0.005, max_batch=SLOTS))
    reqs = [GenRequest(i, (1, 2, 3), TOKENS) for i in range(N_REQUESTS)]

    async def go() -> LevelRun:
        await engine.start()
        try:
            return await run_level(
                engine, reqs, concurrency=N_USERS, ramp_s=0.02, seed=3, think_time_s=think_time_s,
                end_at_window=end_at_window,
            )  # fmt: skip
        finally:
            await engine.stop()

    run = asyncio.run(go())
    requests, tokens, _ = level_tables(run)
    requests["phase"], _window = assign_phases(requests, run.ramp_s, run.window_end_s)
    return requests, tokens, run, engine


@pytest.fixture(scope="module")
def stopped() -> Level:
    """One level stopped at its window's end, read by the tests that only look at it."""
    return _level(end_at_window=True)


def test_the_drain_is_stopped_and_only_the_drain(stopped: Level) -> None:
    requests, _, run, engine = stopped
    assert run.window_end_s is not None
    cut = requests[requests["status"] == "stopped"]
    # below 20 users the window ends when the first user leaves: the other five were mid-request
    assert len(cut) == N_USERS - 1
    assert set(cut["phase"]) == {"drain"}
    assert (cut["t_done_s"] > run.window_end_s).all()
    # nothing but the stopped requests failed, and fewer requests were sent than the list holds
    assert set(requests["status"]) == {"ok", "stopped"}
    assert len(requests) <= N_REQUESTS
    steady = requests[requests["phase"] == "steady"]
    assert len(steady) > 0 and (steady["t_done_s"] <= run.window_end_s).all()
    assert engine.in_flight == 0  # the engine aborted what the level stopped


def test_stopping_at_the_window_keeps_as_many_steady_requests_as_waiting() -> None:
    """The steady requests are those sent after every user arrived and closed before the first one
    left, whether the level then waits for its drain or stops it: about N_REQUESTS - 2N either way
    (which user draws the list's last entries varies with the fake's timer grid)."""
    counts = {}
    for end_at_window in (False, True):
        requests, _, _, _ = _level(end_at_window)
        counts[end_at_window] = int((requests["phase"] == "steady").sum())
    assert all(N_REQUESTS - 2 * N_USERS - 2 <= n <= N_REQUESTS - N_USERS for n in counts.values()), counts
    assert abs(counts[True] - counts[False]) <= 2, counts


def test_stopped_requests_count_apart_and_their_tokens_in_the_window(stopped: Level) -> None:
    requests, tokens, run, _ = stopped
    _, window = assign_phases(requests, run.ramp_s, run.window_end_s)
    steady, transient = summarize_phases(requests, tokens, window, slo={"ttft_s": 1.0}, target_concurrency=N_USERS)
    # the counts say what the level sent: the steady summary carries the whole level's
    assert transient.counts.n_stopped == steady.counts.n_stopped == N_USERS - 1
    assert transient.counts.n_failed == 0 and steady.counts.n_failed == 0
    # the window's output counts every token emitted in it, a stopped request's included
    emitted = tokens[tokens["t_s"].between(window.start_s, window.end_s, inclusive="left")]
    assert steady.throughput.output_tok_s * (window.end_s - window.start_s) == len(emitted)


def test_users_stopped_while_thinking_leave_the_window_where_the_driver_saw_it_end() -> None:
    requests, _, run, engine = _level(end_at_window=True, think_time_s=0.01)
    assert run.window_end_s is not None
    steady = requests[requests["phase"] == "steady"]
    assert len(steady) > 0 and (steady["t_done_s"] <= run.window_end_s).all()
    assert (requests.loc[requests["status"] == "stopped", "phase"] == "drain").all()
    assert engine.in_flight == 0

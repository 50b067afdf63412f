"""The steady window against queueing theory, on a slot-bound fake engine (c slots, a fixed service
time S per request, N closed-loop users). Little's law over the window: the slots never idle, so
throughput is c / S and each request waits (N - c) x S / c for a slot. Every expectation is in
units of the S the level measured (slot taken to stream closed), so a slow machine stretches both
sides alike; the tolerances cover the fake engine's shared step grid, not the machine."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from cliffbench.bench.load.driver import run_level
from cliffbench.bench.metrics.phases import assign_phases
from cliffbench.bench.metrics.steady import summarize_phases
from cliffbench.bench.metrics.summary import LevelSummary
from cliffbench.bench.store.tables import level_tables
from cliffbench.engines.base import GenRequest
from cliffbench.engines.fake import FakeEngine
from cliffbench.engines.specs import FakeSpec

N_USERS, SLOTS, PER_USER, TOKENS = 6, 2, 5, 4
# each test times a real level of thirty requests on the fake's clock: 1.3-1.8 s each
pytestmark = pytest.mark.slow


def _level(ramp_s: float) -> tuple[pd.DataFrame, LevelSummary, float]:
    engine = FakeEngine(FakeSpec(ttft_s=0.02, itl_s=0.02, max_batch=SLOTS))
    reqs = [GenRequest(i, (1, 2, 3), TOKENS) for i in range(N_USERS * PER_USER)]
    run = asyncio.run(run_level(engine, reqs, concurrency=N_USERS, ramp_s=ramp_s, seed=2))
    requests, tokens, _ = level_tables(run)
    requests["phase"], window = assign_phases(requests, run.ramp_s)
    steady, _ = summarize_phases(requests, tokens, window, slo={}, target_concurrency=N_USERS)
    service_s = float((requests["t_done_s"] - requests["t_submit_s"] - requests["queue_s"]).mean())
    return requests, steady, service_s


def test_closed_loop_steady_window_matches_littles_law() -> None:
    requests, steady, s = _level(ramp_s=0.05)
    st = requests[requests["phase"] == "steady"]
    assert len(st) >= 15 and (requests["status"] == "ok").all()
    wait_s = (N_USERS - SLOTS) * s / SLOTS  # 2 S
    assert float(st["queue_s"].mean()) == pytest.approx(wait_s, rel=0.2)
    # TTFT is that wait plus the first token's own delay, which is under S
    assert wait_s < float(st["ttft_s"].mean()) < wait_s + s
    assert steady.throughput.request_s == pytest.approx(SLOTS / s, rel=0.2)


def test_the_burst_s_first_wave_waits_less_than_the_steady_state_by_the_amount_computed_by_hand() -> None:
    requests, _, s = _level(ramp_s=0.0)
    ramp = requests[requests["phase"] == "ramp"].sort_values("t_submit_s")
    steady = requests[requests["phase"] == "steady"]
    # all 6 users at t = 0 into 2 slots: waves wait 0, 0, S, S, 2S, 2S; the ramp is every first
    # request but the last user's: mean (0 + 0 + 1 + 1 + 2) S / 5 = 0.8 S, against 2 S steady
    assert len(ramp) == N_USERS - 1
    np.testing.assert_allclose(ramp["queue_s"].to_numpy() / s, [0, 0, 1, 1, 2], atol=0.25)
    gap_s = float(steady["queue_s"].mean() - ramp["queue_s"].mean())
    assert gap_s == pytest.approx((2.0 - 0.8) * s, rel=0.25)

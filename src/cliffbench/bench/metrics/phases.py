"""The steady window of a level: which requests ran while the engine carried its full load.

A level starts from an idle engine and ends by letting it empty. A request sent while the users are
still arriving (the ramp) meets a lighter queue than the load claims; one still running while the
users leave (the drain) decodes in a shrinking batch. Both are the starting gun and the finish,
not the load: the level's metrics, its SLO verdict, and so its cliff and ratios, are taken over the
steady window, and the transient's metrics are stored apart (`LevelInfo.transient`).

**Closed loop** (N users, each owns its sequence of requests: bench/load/users.py). A user is *present*
from its first submit to the close of its last request; users never come back once gone.

- the window opens when the last user sends its first request: from then on every user is there;
- it closes when fewer than 95% of the users are left, i.e. when the (N - ceil(0.95 N) + 1)-th user
  closes its last request (below 20 users, the first one to leave);
- a request is *steady* when it was submitted in the window and closed by its end: it ran its whole
  life at (at least 95% of) the full load; *ramp* when submitted before the window opened; *drain*
  otherwise.

Why users present, not requests in flight (vLLM's `vllm-bench` counts requests in flight >= 95% of
the target). Without think time the two coincide: a user's next request follows its previous one in
the same task, so a user is in flight whenever present but for microseconds. With think time a
thinking user has no request in flight by design, and a 95% in-flight rule would call the whole
level transient; counting users present keeps the definition about the load, not its duty cycle.

Why a request must also *close* in the window. With independent requests the users draw from one
shared list, so every request but each user's last one closes before the list runs dry, and the
last ones (one per user, the requests in flight when the list ran dry) are exactly those that run
past the window's end: their decode sees the batch shrink one user at a time, a TPOT biased low.
Excluding them costs N requests, never a length-biased choice among the others. Together with the
ramp (about one request per user), a closed-loop level spends about 2N requests on its transient:
`load.steady_requests` asks for that many more (`LoadSpec.requests_at`).

**Open loop** (no users): the ramp is the first `ramp_s` seconds of arrivals (the engine fills from
empty; the default ramp is one request's duration, after which Little's law puts the queue near its
mean), the window closes at the last arrival, and a request is steady when submitted after the ramp
and closed before the arrivals stopped.

Rates over the window count what happened inside it, whatever phase a request belongs to: output
tokens emitted in the window, requests completed in it, each over the window's length, as a
steady-state throughput must (a request straddling the window's start emits part of its tokens in
it). Latencies and the SLO use the steady requests (bench/metrics/steady.py computes both).
Kept free of scipy: the store and every client process import it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PHASES",
    "STEADY_SHARE",
    "TOO_SHORT",
    "TRANSIENT_COLUMNS",
    "SteadyWindow",
    "assign_phases",
    "leavers_at_close",
    "steady_only",
]

PHASES = ("ramp", "steady", "drain")
STEADY_SHARE = 0.95  # the window lasts while at least this share of the users are present
TOO_SHORT = "too short to reach steady state"
#: the transient's metrics kept as `transient_<name>` columns of the levels table (all are in level.json)
TRANSIENT_COLUMNS = ("n_requests", "ttft_s_p50", "ttft_s_p90", "tpot_s_p50", "e2e_s_p90", "output_tok_s")


class SteadyWindow(BaseModel):
    """Where a level's steady window lay (level-start seconds) and how its requests split."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    ramp_s: float = Field(description="closed loop: the users' starts spread over it; open loop: the ramp phase")
    users: int | None = Field(description="closed loop: users that sent a request; None: open loop")
    start_s: float = Field(description="the window opens (NaN: the level has none)")
    end_s: float = Field(description="the window closes (NaN: the level has none)")
    n_ramp: int
    n_steady: int
    n_drain: int

    def columns(self) -> dict[str, float | int]:
        """This window as columns of the study's levels table."""
        return {
            "ramp_s": self.ramp_s,
            "steady_start_s": self.start_s,
            "steady_end_s": self.end_s,
            "n_ramp": self.n_ramp,
            "n_steady": self.n_steady,
            "n_drain": self.n_drain,
        }


def leavers_at_close(n_users: int) -> int:
    """How many of `n_users` closed-loop users have left when the steady window closes: the first
    one to take the users present below 95% (N - ceil(0.95 N) + 1; 1 below 20 users)."""
    return n_users - math.ceil(STEADY_SHARE * n_users) + 1


def _closed_window(measured: pd.DataFrame, done_s: np.ndarray) -> tuple[float, float, int]:
    users = measured["user"].to_numpy()
    submit = measured["t_submit_s"].to_numpy(dtype=np.float64)
    ids = np.unique(users)
    first = np.array([submit[users == u].min() for u in ids])
    last = np.sort([np.nanmax(done_s[users == u]) for u in ids])
    n = ids.size
    return float(first.max()), float(last[leavers_at_close(n) - 1]), n


def assign_phases(requests: pd.DataFrame, ramp_s: float, end_s: float | None = None) -> tuple[pd.Series, SteadyWindow]:
    """The phase of every request ('ramp', 'steady', 'drain'; 'warmup' for warm-up requests) and
    the level's window. Closed loop where the measured requests carry a user (`user` >= 0).
    `end_s`: the window's end as the driver saw it, for a closed loop it stopped there
    (bench/load/users.py `WindowEnd`): a user stopped while thinking sent no last request to count."""
    phase = pd.Series("warmup", index=requests.index, dtype=object)
    measured = requests[~requests["warmup"].astype(bool)]
    if measured.empty:
        return phase, SteadyWindow(ramp_s=ramp_s, users=None, start_s=math.nan, end_s=math.nan, n_ramp=0,
                                   n_steady=0, n_drain=0)  # fmt: skip
    submit = measured["t_submit_s"].to_numpy(dtype=np.float64)
    # the client holds a request until its stream closed; a record without that time closed at its last token
    done = measured["t_done_s"].to_numpy(dtype=np.float64)
    done = np.where(np.isnan(done), measured["t_end_s"].to_numpy(dtype=np.float64), done)
    users: int | None = None
    if "user" in measured and (measured["user"].to_numpy() >= 0).all():
        start, end, users = _closed_window(measured, done)
        if end_s is not None:
            end = end_s
    else:
        start, end = float(submit.min()) + ramp_s, float(submit.max())
    steady = (submit >= start) & (done <= end) & (end > start)
    ramp = submit < start
    phase.loc[measured.index] = np.where(steady, "steady", np.where(ramp, "ramp", "drain"))
    has_window = end > start
    window = SteadyWindow(
        ramp_s=ramp_s,
        users=users,
        start_s=start if has_window else math.nan,
        end_s=end if has_window else math.nan,
        n_ramp=int(ramp.sum()),
        n_steady=int(steady.sum()),
        n_drain=int((~steady & ~ramp).sum()),
    )
    return phase, window


def steady_only(requests: pd.DataFrame) -> pd.DataFrame:
    """The steady requests of `requests`; a level stored before phases existed counts whole (its
    rows carry no phase)."""
    if "phase" not in requests:
        return requests
    phase = requests["phase"]
    return requests[phase.isna() | (phase == "steady")]

"""An engine at a user count, from its measured levels: its cliff, its verdict there and its numbers.

A study measures each engine at its own levels: the grid for all, the end points only for some,
and the cliff search's probes (19, 20 users) for the searched ones. Comparing engines at "the
nearest measured level" then compares one engine's probe at 19 users with another's grid level at
32, which is not a comparison at the same load. Here every engine is placed at the same user count
`n` from its own measured neighbours:

* the verdict assumes the monotone verdicts the cliff search assumes: an engine meets the SLO at
  every load up to its cliff (`Cliff.meets_up_to`), so meeting at 32 users implies meeting at 19,
  and it misses at every load above a measured miss, so missing at 8 implies missing at 16. Between
  the last level that meets and the first that does not, the first one's verdict is carried down
  (conservative: not shown to meet there). Above the highest measured level of an engine that never
  missed, nothing is known (`unmeasured`).
* the numbers (output tok/s, TTFT at the SLO percentile) are interpolated linearly in log2(users)
  between the measured levels around `n`. Below the lowest measured level, throughput is scaled
  down in proportion to the users (each user at most as fast as at that level, a lower bound) and
  TTFT is that level's (an upper bound): both conservative for the engine not measured there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["AtLoad", "Cliff", "engine_at_load", "engine_cliff_details", "users_text"]


def users_text(n: float) -> str:
    """'1 user', '19 users'."""
    return f"{n:g} user" if n == 1 else f"{n:g} users"


@dataclass(frozen=True)
class Cliff:
    """Where an engine stops meeting the SLO: it meets it at every measured level up to
    `meets_up_to` (0: not even at the lowest), and `first_miss` is the next measured level (None
    when none missed: `at_least`). `first_miss_verdict` is 'misses' or 'uncertain' (the interval
    straddles the budget, or n was too small for one)."""

    engine: str
    meets_up_to: float
    first_miss: float | None
    first_miss_verdict: str = ""

    @property
    def at_least(self) -> bool:
        return self.first_miss is None

    @property
    def users(self) -> float:
        return self.meets_up_to

    def text(self) -> str:
        if self.at_least:
            return f"at least {users_text(self.meets_up_to)} (no measured level missed)"
        assert self.first_miss is not None
        unsure = self.first_miss_verdict != "misses"
        because = "the interval straddles the budget, or n is too small for one"
        why = f" (not shown to meet it there: {because})"
        if self.meets_up_to <= 0:
            if unsure:
                return (
                    f"not shown to meet it even at its lowest measured level ({users_text(self.first_miss)}): {because}"
                )
            return f"below {users_text(self.first_miss)}: misses at its lowest measured level"
        return f"between {self.meets_up_to:g} and {users_text(self.first_miss)}" + (why if unsure else "")


def _verdicts(lv: pd.DataFrame, engine: str) -> pd.Series:
    rows = lv[lv["engine"] == engine].sort_values("concurrency")
    return pd.Series(rows["slo_verdict"].to_numpy(), index=rows["concurrency"].to_numpy(dtype=np.float64))


def engine_cliff_details(levels: pd.DataFrame) -> dict[str, Cliff]:
    """Each engine's cliff bracket, from pooled levels of one level set (see `Cliff`)."""
    if "slo_verdict" not in levels:
        raise ValueError("levels lack slo_verdict: pool them with bench.metrics.repeats.pool_repeats and an SLO")
    out: dict[str, Cliff] = {}
    for engine in sorted(str(e) for e in levels["engine"].unique()):
        v = _verdicts(levels, engine)
        if v.empty:
            continue
        bad = [u for u, x in v.items() if x != "meets"]
        if not bad:
            out[engine] = Cliff(engine, float(v.index[-1]), None)
            continue
        first = float(str(bad[0]))
        below = [float(u) for u in v.index if u < first]
        out[engine] = Cliff(engine, below[-1] if below else 0.0, first, str(v[first]))
    return out


@dataclass(frozen=True)
class AtLoad:
    """One engine at `users`: `verdict` ('meets', 'misses', 'uncertain' or 'unmeasured'), carried
    from its measured level `judged_at` (`how` says how, empty when `users` itself was measured);
    `tok_s` and `ttft_s` at `users` (`numbers` says where they come from); `headroom`: its cliff
    over `users` (how many times the users it still meets the SLO at; NaN unless it meets)."""

    engine: str
    users: float
    verdict: str
    judged_at: float | None
    how: str
    tok_s: float
    ttft_s: float
    numbers: str
    headroom: float

    @property
    def measured(self) -> bool:
        return self.judged_at == self.users


def _at_users(by_users: pd.Series, n: float, scale_below: bool) -> tuple[float, str]:
    """`by_users` (indexed by users, sorted) at `n`, with where the value comes from."""
    s = by_users.dropna()
    if s.empty:
        return math.nan, "not measured"
    x = s.index.to_numpy(dtype=np.float64)
    y = s.to_numpy(dtype=np.float64)
    if n in s.index:
        return float(s[n]), f"measured at {users_text(n)}"
    if n < x[0]:
        value = y[0] * n / x[0] if scale_below else y[0]
        how = "scaled down from" if scale_below else "as at"
        return float(value), f"{how} its lowest measured level ({users_text(x[0])})"
    if n > x[-1]:
        return math.nan, f"above its highest measured level ({users_text(x[-1])})"
    value = float(np.interp(math.log2(n), np.log2(x), y))
    below, above = x[x < n][-1], x[x > n][0]
    return value, f"interpolated between its {below:g} and {users_text(above)}"


def _carried(verdicts: pd.Series, cliff: Cliff, n: float) -> tuple[str, float | None, str]:
    """The verdict at `n` under monotone verdicts: (verdict, measured level it comes from, how)."""
    users = [float(u) for u in verdicts.index]
    if n <= cliff.meets_up_to:
        at = min(u for u in users if u >= n)
        if at == n:
            return "meets", at, ""
        if n < users[0]:
            return "meets", at, f"{users_text(n)} is below the lowest measured level: judged at {users_text(at)}"
        below = max(u for u in users if u < n)
        return "meets", at, f"{users_text(n)} lies between measured levels {below:g} and {at:g}: judged at {at:g}"
    if cliff.first_miss is None:
        return "unmeasured", None, f"{users_text(n)} is above its highest measured level"
    first = cliff.first_miss
    if n <= first:
        how = "" if n == first else f"between its last level meeting the SLO and its first not: judged at {first:g}"
        return str(verdicts[first]), first, how
    later = [u for u in users if u >= n]
    if later and verdicts[later[0]] == "misses":
        below = max(u for u in users if u < n)
        how = (
            ""
            if later[0] == n
            else f"{users_text(n)} lies between measured levels {below:g} and {later[0]:g}: judged at {later[0]:g}"
        )
        return "misses", later[0], how
    # above a measured miss it misses (monotone), whatever a level above it says (noise: it met
    # again at more users); above only uncertain levels it is not shown to meet
    missed = [u for u in users if first <= u <= n and verdicts[u] == "misses"]
    if missed:
        return "misses", missed[0], f"misses at {users_text(missed[0])} already: monotone verdicts"
    at = later[0] if later else first
    return "uncertain", at, f"not shown to meet it from {users_text(first)} on: judged at {users_text(at)}"


def engine_at_load(lv: pd.DataFrame, cliff: Cliff, n: float, metric: str = "output_tok_s") -> AtLoad:
    """`cliff.engine` at `n` users from its pooled, judged levels `lv` (one level set; other
    engines' rows are ignored): the monotone verdict and the numbers at the same load."""
    if not n > 0:
        raise ValueError(f"users must be > 0, got {n}")
    rows = lv[lv["engine"] == cliff.engine].sort_values("concurrency")
    if rows.empty:
        raise ValueError(f"no levels for engine {cliff.engine!r}")
    verdicts = _verdicts(rows, cliff.engine)
    verdict, at, how = _carried(verdicts, cliff, n)
    by_users = rows.set_index(rows["concurrency"].astype(float))
    # the numbers come from levels that met the SLO only: a level past the cliff says nothing
    # about how fast the engine serves users within it
    good = by_users[by_users["slo_verdict"] == "meets"]
    tok_s, numbers = _at_users(good[metric], n, scale_below=True)
    ttft_s = _at_users(good["slo_ttft_s"], n, scale_below=False)[0] if "slo_ttft_s" in good else math.nan
    headroom = cliff.meets_up_to / n if verdict == "meets" else math.nan
    return AtLoad(cliff.engine, float(n), verdict, at, how, tok_s, ttft_s, numbers, headroom)

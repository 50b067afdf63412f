"""How a level set asks: arrivals, users and their ramp, requests per level, repeats, the search."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from cliffbench.bench.spec.search import SearchSpec
from cliffbench.config import Spec

__all__ = ["LoadSpec"]


class LoadSpec(Spec):
    """How it is asked. `closed`: N users, each sends its next request when the last ends;
    `poisson`: open loop at `rate_rps` with gamma `burstiness` (1 = Poisson)."""

    arrival: Literal["closed", "poisson"] = "closed"
    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])
    rate_rps: list[float] = Field(default_factory=list)
    burstiness: float = Field(1.0, gt=0)
    think_time_s: float = Field(0.0, ge=0)
    requests_per_level: int | None = Field(16, gt=0)
    requests_per_user: int | None = Field(
        None, gt=0, description="closed loop: at least this many requests per user at every level"
    )
    steady_requests: int | None = Field(
        None,
        gt=0,
        description="closed loop: at least this + 2 x users requests per level, about this many in its steady "
        "window (each user's first request falls in the ramp, its last in the drain: bench/metrics/phases.py); "
        "open loop: at least this many requests",
    )
    ramp_s: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="closed loop: users start spread over this many seconds (seeded jitter); open loop: the ramp "
        "phase. 'auto': the median wall of the level's warm-up requests (no warm-up: 0, every user at once)",
    )
    duration_s: float | None = Field(None, gt=0)
    end_at_window: bool = Field(
        False,
        description="closed loop: stop the level where its steady window ends, the drain's requests aborted and "
        "stored as 'stopped' (bench/load/users.py WindowEnd); false: wait for every request (a burst's whole level)",
    )
    warmup_requests: int = Field(1, ge=0)
    request_timeout_s: float = Field(600.0, gt=0)
    max_lag_s: float = Field(0.005, gt=0, description="event-loop lag p99 above this flags a level")
    # the harness's self-checks: on in every study; benchmarks/engine_overhead.py switches them off to
    # price them (a level without them flags nothing)
    lag_probe: bool = Field(True, description="the event-loop lag / GIL-wait probe thread (wakes every 5 ms)")
    memory_probe: bool = Field(True, description="the KV-memory sampler (every 50 ms)")
    only_at: dict[str, list[int]] = Field(
        default_factory=dict,
        description="engine label -> the only user counts of this set it runs (empty list: none); "
        "engines not named run every level",
    )
    repeats: int = Field(
        1,
        ge=1,
        le=50,
        description="times every level is measured; repeat r of every engine runs before repeat r+1 starts",
    )
    client_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="openai-http engines: split each level's users (or rate) over this many client processes "
        "that start together (one asyncio loop saturates near a few hundred instant requests in flight: "
        "benchmarks/multi_client.py); their records merge into one level",
    )
    search: SearchSpec | None = Field(
        None, description="after the grid, search each engine's cliff (bench/search/bracket.py); the grid may be empty"
    )

    @field_validator("concurrency", "rate_rps")
    @classmethod
    def _positive(cls, v: list[float], info: ValidationInfo) -> list[float]:
        if any(x <= 0 for x in v):
            raise ValueError(f"every {info.field_name} must be > 0, got {v}")
        return v

    def requests_at(self, users: int | None) -> int | None:
        """Measured requests of a level at `users` (None: open loop); None for a duration-bound level."""
        n = self.requests_per_level
        if self.requests_per_user and users:
            n = max(n or 0, self.requests_per_user * users)
        if self.steady_requests:
            n = max(n or 0, self.steady_requests + 2 * (users or 0))
        return n

    @model_validator(mode="after")
    def _end_condition(self) -> LoadSpec:
        if self.requests_per_level is None and self.duration_s is None:
            raise ValueError("set requests_per_level or duration_s")
        if self.client_processes > 1 and self.burstiness != 1.0:
            # K independent gamma streams do not add up to one gamma stream of that burstiness
            raise ValueError("client_processes > 1 splits an open loop into Poisson streams: needs burstiness 1")
        if self.arrival == "poisson" and not self.rate_rps and self.search is None:
            raise ValueError("arrival 'poisson' needs rate_rps")
        if self.search is not None and (self.search.over == "users") != (self.arrival == "closed"):
            needs = "closed" if self.search.over == "users" else "poisson"
            raise ValueError(f"search over {self.search.over} needs arrival {needs!r}")
        return self

"""The engine tuning sweep as stored (benchmarks/engine_tuning.py writes benchmarks/results/
engine_tuning.json; the report reads it beside the study).

Each configuration of each engine family is measured over several interleaved repeats at the top
and bottom user counts of the default study; `TuningSweep.winner` is a family's fastest
configuration by median output tok/s at a user count, and `ratio` compares two configurations
with the spread of their per-repeat ratios.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from cliffbench.engines.specs import Family

__all__ = ["TuningRun", "TuningSweep"]


class TuningRun(BaseModel):
    """One configuration at one user count, over the sweep's repeats (in repeat order)."""

    model_config = ConfigDict(frozen=True)

    config: str  # the label, e.g. llamacpp-q8_0-32, vllm-bf16-eager
    family: Family
    users: int
    spec: dict[str, Any]  # the engine spec as a study file writes it
    precision: str  # the roofline's name of the weights' precision on the sweep's machine
    output_tok_s: list[float]
    ttft_p50_s: list[float]
    start_s: list[float]  # engine start before each repeat
    busy_levels: int = 0  # levels flagged busy (other processes used the CPU)
    failed_levels: int = 0
    engine_config: dict[str, Any] = {}  # the engine's describe() at its first start

    @property
    def median_tok_s(self) -> float:
        return statistics.median(self.output_tok_s) if self.output_tok_s else float("nan")

    @property
    def range_tok_s(self) -> tuple[float, float]:
        return (min(self.output_tok_s), max(self.output_tok_s)) if self.output_tok_s else (float("nan"),) * 2

    @property
    def median_ttft_p50_s(self) -> float:
        return statistics.median(self.ttft_p50_s) if self.ttft_p50_s else float("nan")

    @property
    def median_start_s(self) -> float:
        return statistics.median(self.start_s) if self.start_s else float("nan")


class TuningSweep(BaseModel):
    """What benchmarks/engine_tuning.py stores."""

    model_config = ConfigDict(frozen=True)

    created_at: datetime
    quick: bool
    repeats: int
    users: list[int]
    workload: dict[str, Any]  # the chat level set's workload and load, as the sweep ran them
    wall_s: float
    loadavg_1m_before: float
    loadavg_1m_after: float
    machine: dict[str, Any]  # the kit's provenance: versions, cpu (model, flags), gpu, git sha
    runs: list[TuningRun]

    @property
    def cpu_model(self) -> str:
        return str(self.machine.get("cpu", {}).get("model", "unknown CPU"))

    @property
    def cpu_flags(self) -> list[str]:
        return list(self.machine.get("cpu", {}).get("flags", []))

    def at(self, users: int, family: Family | None = None) -> list[TuningRun]:
        """Runs at `users` with data, fastest first."""
        runs = [r for r in self.runs if r.users == users and r.output_tok_s and (family is None or r.family == family)]
        return sorted(runs, key=lambda r: -r.median_tok_s)

    def winner(self, family: Family, users: int) -> TuningRun | None:
        runs = self.at(users, family)
        return runs[0] if runs else None

    def run(self, config: str, users: int) -> TuningRun | None:
        return next((r for r in self.runs if r.config == config and r.users == users and r.output_tok_s), None)

    def ratio(self, num: TuningRun, den: TuningRun) -> tuple[float, float, float]:
        """(median ratio of medians, min, max over the repeats' pairwise ratios): repeat r of both
        was measured in the same round, so a round's drift hits both alike."""
        pairs = [a / b for a, b in zip(num.output_tok_s, den.output_tok_s, strict=False) if b > 0]
        mid = num.median_tok_s / den.median_tok_s if den.median_tok_s > 0 else float("nan")
        return (mid, min(pairs), max(pairs)) if pairs else (mid, mid, mid)

"""The matrix's recommendation for the reader's hard constraints: the honest top choice among the
options those constraints leave (a tie when a weight moved by x0.8 to x1.25 changes it), its
runner-up, what would flip it, and whether cost should stop the reader: where the top choice costs
more than COST_WARNING_RATIO times the cheapest option that meets every hard constraint (ranked,
allowed by the reader's constraints, cost known, and for self-hosted options the TTFT SLO met at
the peak users), the recommendation says so first."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cliffbench.decide.matrix.ranking import TopChoice, score_matrix, sensitivity, top_choice
from cliffbench.decide.matrix.score import MatrixResult
from cliffbench.decide.matrix.values import scoring_inputs

__all__ = ["COST_WARNING_RATIO", "Verdict", "verdict"]

COST_WARNING_RATIO = 2.0


@dataclass(frozen=True)
class Verdict:
    choice: TopChoice
    allowed: list[str]  # the ranked options the reader's hard constraints leave
    cheapest: str  # the cheapest of them that meets every hard constraint ("" when none has a known cost)
    cost_ratio: float  # the top's cost over the cheapest's (NaN when either is unknown)

    @property
    def cost_warning(self) -> bool:
        return math.isfinite(self.cost_ratio) and self.cost_ratio > COST_WARNING_RATIO


def verdict(r: MatrixResult, allowed: list[str] | None = None) -> Verdict:
    """The recommendation among `allowed` (default: every ranked option)."""
    left = [o for o in (allowed if allowed is not None else r.eligible) if o in r.eligible]
    if left == r.eligible:
        choice = r.choice
    else:
        weights, directions, log_scale = scoring_inputs(r.params, r.data)
        total = score_matrix(r.values, directions, weights, left, log_scale).total
        _, thresholds = sensitivity(r.values, directions, weights, left, log_scale)
        choice = top_choice(total, thresholds, left)
    cost = r.values["cost"]
    meeting = [
        o
        for o in left
        if math.isfinite(float(cost.loc[o])) and (r.data.options[o].kind == "managed" or r.meets_slo.get(o, False))
    ]
    cheapest = min(meeting, key=lambda o: float(cost.loc[o])) if meeting else ""
    top_cost = float(cost.loc[choice.top]) if choice.top else math.nan
    ratio = top_cost / float(cost.loc[cheapest]) if cheapest else math.nan
    return Verdict(choice, left, cheapest, ratio)

"""The Architecture Decision Matrix: sourced data, a cost model, weights, a ranking and its sensitivity.

The data live in data/matrix/ (schema in its README): options, criteria, one sourced cell per
option x scored criterion, and GPU hourly prices. Two criteria are computed for the user's
profile instead of typed in:

- cost, USD per 1M output tokens. Managed: (input x input price + output x output price) / output,
  per request, so the input mix counts. Self-hosted: GPU-hours paid a day x USD/h / output tokens
  served a day, under a daily load profile (peak users for some hours, off-peak users the rest, or a
  utilisation fraction; autoscaling replicas optional): idle hours are paid (daily.py). The GPU-hour
  is the cheapest stored price of one pricing model (on-demand VM, serverless, marketplace).
- ttft, seconds. Self-hosted only; managed APIs publish no TTFT guarantee, so their cells say so.

Self-hosted throughput comes from a stored study when its GPU matches the hardware ("measured:
study X"), else from the roofline (`cliffbench.audit.roofline`), scaled by `efficiency`. A roofline is an
upper bound, so efficiency (default 0.5, a middle reading of measured fractions of peak bandwidth
for 8B decode) turns it into an estimate; it is a parameter because it is the least certain number
here. Per replica with batch B (slots, or every user while the KV cache holds them), closed-loop
users, prompt I and output O tokens, prefill rate P and batched decode rate D(B):

    GPU-seconds per B requests  = B x I / P + O x B / D(B)
    output tok/s                = O x B / (GPU-seconds per B requests)
    TTFT                        = wait + I / P + B / D(B),  wait = users / X - service  (Little's law)

where X is requests/s and service the time a request holds its slot; wait is 0 while every user
has a slot. Options that may scale out (vLLM behind LiteLLM) add replicas until the TTFT SLO holds.

Scores: each criterion is min-max normalised to 0..1 over the ranked options that know it
(computed criteria on a log scale: half the price counts the same at any price); an unknown cell
is left out of that criterion's normalisation and of its option's weighted mean, and flagged; an
'n/a' cell is left out unflagged. Retired, retiring and discontinued options, and any past an
announced shutdown, are shown but never ranked. Every cell and price is dated; freshness.py flags
what is older than `stale_after_months` on the report date.
"""

from __future__ import annotations

from cliffbench.decide.matrix.daily import DailyCost, cost_curve, load_profile, self_hosted_daily
from cliffbench.decide.matrix.data import (
    MATRIX_DIR,
    PRICING_MODELS,
    Cell,
    Criterion,
    GpuPrice,
    MatrixData,
    Option,
    load_matrix,
)
from cliffbench.decide.matrix.measured import MeasuredFamily, measured_families, option_engines, self_hosted_estimate
from cliffbench.decide.matrix.model import (
    GpuPriceUsed,
    MatrixParams,
    SelfHostedEstimate,
    check_params,
    gpu_price,
    managed_cost_usd_per_1m,
    param_problem,
    parse_assignments,
)
from cliffbench.decide.matrix.ranking import TopChoice, top_choice
from cliffbench.decide.matrix.score import (
    MatrixResult,
    Scores,
    evaluate,
    exclusion_reason,
    score_matrix,
    sensitivity,
)
from cliffbench.decide.matrix.values import TotalCost

__all__ = [
    "MATRIX_DIR",
    "PRICING_MODELS",
    "Cell",
    "Criterion",
    "DailyCost",
    "GpuPrice",
    "GpuPriceUsed",
    "MatrixData",
    "MatrixParams",
    "MatrixResult",
    "MeasuredFamily",
    "Option",
    "Scores",
    "SelfHostedEstimate",
    "TopChoice",
    "TotalCost",
    "check_params",
    "cost_curve",
    "evaluate",
    "exclusion_reason",
    "gpu_price",
    "load_matrix",
    "load_profile",
    "managed_cost_usd_per_1m",
    "measured_families",
    "option_engines",
    "param_problem",
    "parse_assignments",
    "score_matrix",
    "self_hosted_daily",
    "self_hosted_estimate",
    "sensitivity",
    "top_choice",
]

"""A day of the load profile: GPU-hours paid and tokens served, so idle hours cost what they cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from cliffbench.decide.matrix.data import RANKED_STATUSES, MatrixData, Option, load_matrix
from cliffbench.decide.matrix.measured import MeasuredFamily, self_hosted_estimate
from cliffbench.decide.matrix.model import (
    MatrixParams,
    SelfHostedEstimate,
    check_params,
    gpu_price,
    managed_cost_usd_per_1m,
)

__all__ = ["DailyCost", "cost_curve", "load_profile", "self_hosted_daily"]


def load_profile(params: MatrixParams) -> tuple[float, int]:
    """(hours a day at peak, users the rest of the day): from `utilisation` when given (peak for that
    fraction of the day, idle otherwise), else `peak_hours` and `offpeak_users`."""
    if params.utilisation is not None:
        return 24.0 * params.utilisation, 0
    return params.peak_hours, params.offpeak_users


@dataclass(frozen=True)
class DailyCost:
    """A self-hosted option over one day of the load profile: GPU-hours paid and tokens served."""

    usd_per_1m: float
    gpu_hours: float
    tokens: float
    peak: SelfHostedEstimate
    offpeak: SelfHostedEstimate | None
    autoscaled: bool

    def text(self, usd_per_hour: float) -> str:
        return (
            f"{fmt_g(self.gpu_hours)} GPU-h x ${usd_per_hour:g}/h / {fmt_g(self.tokens / 1e6)}M output tokens a day"
            + (" (replicas follow the load)" if self.autoscaled else "")
        )


def fmt_g(x: float) -> str:
    return f"{x:.3g}"


def self_hosted_daily(
    option: Option,
    params: MatrixParams,
    usd_per_hour: float,
    users: int | None = None,
    measured: MeasuredFamily | None = None,
) -> DailyCost | None:
    """Cost per 1M output tokens = GPU-hours paid a day x hourly price / output tokens served a day.

    The peak hours run `users` (default params.users) closed-loop users; the other hours run the
    off-peak users (none: the GPU idles, paid all the same). Without autoscaling the fleet sized for
    the peak is paid for 24 hours; with it (options that scale out), each period pays the replicas
    its own load needs, at least `min_replicas`. `measured`: the option's engine in a stored study.
    """
    users = users or params.users
    peak_h, off_users = load_profile(params)
    off_users, off_h = min(off_users, users), 24.0 - peak_h
    peak = self_hosted_estimate(option, params, users, measured=measured)
    if peak is None:
        return None
    scales = params.autoscale and option.max_replicas != 1
    off = None
    if off_users and off_h > 0:
        off = self_hosted_estimate(option, params, off_users, None if scales else peak.replicas, measured)
    tokens = 3600 * (peak.output_tok_s * peak_h + (off.output_tok_s * off_h if off else 0.0))
    if scales:
        gpu_hours = peak.replicas * peak_h + max(params.min_replicas, off.replicas if off else 0) * off_h
    else:
        gpu_hours = peak.replicas * 24.0
    return DailyCost(gpu_hours * usd_per_hour / tokens * 1e6, gpu_hours, tokens, peak, off, scales)


def cost_curve(
    params: MatrixParams,
    data: MatrixData | None = None,
    users: list[int] | None = None,
    measured: Mapping[str, MeasuredFamily] | None = None,
) -> pd.DataFrame:
    """Compute cost per 1M output tokens vs concurrent users (GPU-hours or list prices, without staff
    and exit, which depend on the demand): one row per option x user count (tidy)."""
    measured = measured or {}
    data = data or load_matrix()
    check_params(params, data)
    grid = users or [1, 2, 4, 8, 16, 32, 64, 128, 256]
    usd_h = gpu_price(params, data).usd_per_hour
    rows = []
    for o, opt in data.options.items():
        if opt.status not in RANKED_STATUSES or (o, "cost") in data.cells:
            continue  # not ranked, or its cost is stored as unknown (no price, no model shape)
        for u in grid:
            if opt.kind == "managed":
                cost, src = managed_cost_usd_per_1m(opt, params.input_tokens, params.output_tokens), "list price"
            else:
                day = self_hosted_daily(opt, params, usd_h, u, measured.get(o))
                if day is None:
                    continue
                cost, src = day.usd_per_1m, day.peak.source
            rows.append(
                {"option": o, "name": opt.name, "kind": opt.kind, "users": u, "usd_per_1m_output": cost, "source": src}
            )
    return pd.DataFrame(rows)

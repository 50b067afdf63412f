"""The rules `cliffbench.audit.shape_verdicts` judges a shape by, and the measured tail it compares
with a published p99.

A shape is judged by direction and rough magnitude, never by equality: a growth factor by its class
(`class_verdict`), a ratio against half the published one (`ratio_verdict`). Either way a result
more extreme in the claimed direction counts as reproduced, since magnitudes cannot transfer from
an A100 serving 8B to another machine. A published p99 meets a measured p99 pooled over every
repeat's requests (`pooled_p99`), with its exact 95 % interval where n allows one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cliffbench.bench.metrics.level import quantile_ci
from cliffbench.bench.store.levels import Results, ok_requests
from cliffbench.config import fmt_number as fmt

__all__ = ["GROWTH_CLASSES", "Tail", "class_verdict", "growth_class", "pooled_p99", "ratio_verdict"]

# growth factor classes: the verdict compares classes, since magnitudes cannot transfer across hardware
GROWTH_CLASSES = ((0.9, "falls"), (1.5, "flat"), (10.0, "grows"), (math.inf, "grows >10x"))
_FLAT = 1  # index of "flat" in GROWTH_CLASSES


def growth_class(factor: float) -> str:
    """'falls' (< x0.9), 'flat' (x0.9-1.5), 'grows' (x1.5-10) or 'grows >10x'."""
    if math.isnan(factor):
        return "n/a"
    return next(name for bound, name in GROWTH_CLASSES if factor < bound)


def class_verdict(published: float, measured: float) -> str:
    """Two growth factors by class: the same class, or one further from 'flat' on the same side
    (more extreme in the claimed direction), reproduces; a smaller move the same way is the
    direction only; a move against flat, flat against a move, or opposite moves do not reproduce."""
    names = [name for _, name in GROWTH_CLASSES]
    p, m = growth_class(published), growth_class(measured)
    if "n/a" in (p, m):
        return "not judged"
    dp, dm = names.index(p) - _FLAT, names.index(m) - _FLAT
    if dp == 0 or dp * dm <= 0:
        return "reproduced" if dp == dm else "not reproduced"
    return "reproduced" if abs(dm) >= abs(dp) else "direction only"


def ratio_verdict(published: float, lo: float, hi: float) -> str:
    """A measured ratio (interval [lo, hi]; lo == hi for a point) against a published one, on the
    side of 1 the source claims: reproduced when all of it is at least half the published ratio (a
    larger one counts), the direction only when all of it is on the claimed side, not reproduced
    when none of it is, uncertain otherwise."""
    if any(math.isnan(x) for x in (published, lo, hi)) or published == 1:
        return "not judged"
    if published < 1:
        published, lo, hi = 1 / published, (1 / hi if hi else math.inf), (1 / lo if lo else math.inf)
    if lo >= 0.5 * published:
        return "reproduced"
    return "direction only" if lo > 1 else ("not reproduced" if hi <= 1 else "uncertain")


@dataclass(frozen=True)
class Tail:
    """TTFT p99 over the measured requests of every repeat of one level, with its exact 95 %
    interval (NaN below `min_n_for_ci(99)` requests); n = 0: the level's median p99 over repeats,
    where the requests hold no TTFT."""

    point: float
    lo: float
    hi: float
    n: int

    def text(self) -> str:
        if not self.n:
            return f"{fmt(self.point)} s (median p99 over repeats)"
        ci = f", 95 % interval {fmt(self.lo)}-{fmt(self.hi)} s" if math.isfinite(self.hi) else ""
        return f"{fmt(self.point)} s (p99 of {self.n} requests{ci})"


def pooled_p99(res: Results, engine: str, level_set: str, users: int) -> Tail:
    """`engine`'s TTFT p99 at `users` in `level_set`, pooled over the repeats that ran."""
    lv = res.levels
    at = (lv["engine"] == engine) & (lv["level_set"] == level_set) & (lv["concurrency"] == users)
    at &= lv["status"] == "ok"
    req = res.requests
    vals = np.array([])
    if {"ttft_s", "status", "warmup", "level_key"} <= set(req.columns):
        req = ok_requests(req)
        vals = req.loc[req["level_key"].isin(lv.loc[at, "level_key"]), "ttft_s"].dropna().to_numpy(dtype=float)
    if not vals.size:
        return Tail(float(pd.to_numeric(lv.loc[at, "ttft_s_p99"]).median()), math.nan, math.nan, 0)
    ci = quantile_ci(vals, 99.0)
    return Tail(float(np.quantile(vals, 0.99, method="inverted_cdf")), ci.lo, ci.hi, int(vals.size))

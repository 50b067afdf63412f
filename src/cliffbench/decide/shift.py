"""How much faster or slower is B than A: an exact, distribution-free interval of a ratio B/A from
the repeats of two independent runs, for one level or pooled over the levels of an engine.

Which interval, and why this one. Two studies are measured hours or machines apart, so repeat r of
A has nothing to do with repeat r of B: pairing them (as `bench.metrics.repeats.paired_ratio` pairs two
engines interleaved in one study) would invent a pairing, and a bootstrap of 3 values per side
resamples only 10 distinct sets, whose percentile interval covers far less than it says. What
holds instead, for any continuous distribution of the repeats: the Mann-Whitney (Hodges-Lehmann)
interval of a shift in log scale. If B's repeats are A's scaled by a factor theta (a run-to-run
drift multiplies throughput, it does not add to it), then log B - log A has a shift log theta, and
the order statistics of all `m x n` pairwise log differences give an interval for it whose
coverage is exact: `1 - 2 P(U <= k - 1)`, U the Mann-Whitney count under no shift. The repeats on
these VMs have outliers (one repeat at 183 tok/s among 440s: benchmarks/results/run_to_run.json);
ranks are not dragged by them, a t interval of the logs would be.

The price is resolution: 3 against 3 repeats give at most 90 % (`[min, max]` of the 9 pairwise
ratios, 1 - 2/20). So one level's interval is reported at its own exact coverage, and an engine's
verdict pools every level it ran in both studies: the stratified (van Elteren) form sums the
Mann-Whitney counts of the levels, whose exact null distribution is the convolution of theirs; its
interval is the order statistics of all within-level differences pooled, at the coverage asked for
(6 levels x 3 x 3 repeats reach 99.9 %). It assumes one common factor across the levels: where B
is slower only at its heaviest loads, the pooled factor is a weighted middle, and the level lines
show where. The point estimate is the median of the pairwise ratios (Hodges-Lehmann), which lies
inside its interval by construction; the ratio of medians need not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["VERDICTS", "ShiftInterval", "mann_whitney_null", "shift_interval", "shift_verdict"]

VERDICTS = ("same within noise", "faster", "slower", "undecided")
_MAX_REPEATS = 60  # the null distribution's table is (m + 1) x (n + 1) arrays of length m x n


@functools.lru_cache(maxsize=512)
def _null(m: int, n: int) -> tuple[float, ...]:
    # the largest of the m + n values is one of B's (probability n / (m + n)), beating all m of A's,
    # or one of A's, beating none of B's: U_{m,n} = m + U_{m,n-1} or U_{m-1,n}
    if m == 0 or n == 0:
        return (1.0,)
    out = np.zeros(m * n + 1)
    from_b = np.asarray(_null(m, n - 1))
    from_a = np.asarray(_null(m - 1, n))
    out[m : m + from_b.size] += n / (m + n) * from_b
    out[: from_a.size] += m / (m + n) * from_a
    return tuple(float(x) for x in out)


def mann_whitney_null(sizes: Sequence[tuple[int, int]]) -> npt.NDArray[np.float64]:
    """P(U = u), u = 0..sum(m x n), of the summed Mann-Whitney counts of independent strata of
    `(m, n)` values each, with no shift and no ties."""
    dist = np.ones(1)
    for m, n in sizes:
        if m > _MAX_REPEATS or n > _MAX_REPEATS:
            raise ValueError(f"at most {_MAX_REPEATS} repeats per side, got {m} and {n}")
        dist = np.convolve(dist, np.asarray(_null(m, n)))
    return dist


@dataclass(frozen=True)
class ShiftInterval:
    """B/A: `ratio` (the Hodges-Lehmann point: median of the pairwise ratios), `[lo, hi]` of exact
    coverage `level` (NaN throughout when the repeats are too few for one), from `n_a` repeats of A
    and `n_b` of B in `strata` levels."""

    ratio: float
    lo: float
    hi: float
    level: float
    n_a: int
    n_b: int
    strata: int

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.level)

    def text(self) -> str:
        """'x0.93 (x0.88-x0.97, 95 %)'; 'x0.93 (one repeat each: no interval)'."""
        if math.isnan(self.ratio):
            return "n/a"
        if not self.has_interval:
            return f"x{self.ratio:.3g} (too few repeats for an interval)"
        return f"x{self.ratio:.3g} (x{self.lo:.3g}-x{self.hi:.3g}, {100 * self.level:.3g} %)"


_NONE = ShiftInterval(math.nan, math.nan, math.nan, math.nan, 0, 0, 0)


def _positive(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr) & (arr > 0)]


def shift_interval(
    strata: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]], level: float = 0.95, *, widest_if_short: bool = False
) -> ShiftInterval:
    """The interval of the ratio B/A from `strata`, each `(A's repeats, B's repeats)` of one level
    (values > 0; others dropped, a stratum left with no value on a side is skipped). The pair of
    order statistics with coverage >= `level` and the smallest such coverage; when none reaches it,
    all-NaN bounds, or with `widest_if_short` the widest pair (`[min, max]` of the pairwise ratios)
    at its own, lower coverage."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diffs, sizes = [], []
    for a, b in strata:
        la, lb = np.log(_positive(a)), np.log(_positive(b))
        if la.size and lb.size:
            diffs.append((lb[None, :] - la[:, None]).ravel())
            sizes.append((int(la.size), int(lb.size)))
    if not sizes:
        return _NONE
    d = np.sort(np.concatenate(diffs))
    n_a, n_b = sum(m for m, _ in sizes), sum(n for _, n in sizes)
    point = float(np.exp(np.median(d)))
    cdf = np.cumsum(mann_whitney_null(sizes))
    # [D_(k), D_(N+1-k)] (1-based) misses with probability 2 P(U <= k - 1): the largest k that still
    # covers `level` is the narrowest such interval
    coverage = 1.0 - 2.0 * cdf[: (d.size + 1) // 2]
    ok = np.flatnonzero(coverage >= level - 1e-12)
    if ok.size:
        k = int(ok[-1]) + 1
    elif widest_if_short and coverage.size and coverage[0] > 0:
        k = 1
    else:
        return ShiftInterval(point, math.nan, math.nan, math.nan, n_a, n_b, len(sizes))
    lo, hi = float(np.exp(d[k - 1])), float(np.exp(d[d.size - k]))
    return ShiftInterval(point, lo, hi, float(coverage[k - 1]), n_a, n_b, len(sizes))


def shift_verdict(iv: ShiftInterval, higher_is_better: bool) -> str:
    """'faster' / 'slower' when the interval excludes 1 (B better / worse than A); 'same within
    noise' when it holds 1: no change the repeats can tell from run-to-run noise (how large a change
    that leaves room for is the interval's width, printed beside it); 'undecided' when the repeats
    are too few for an interval at all. A tolerance plays no part here: `compare` gates on it."""
    if not iv.has_interval:
        return "undecided"
    if iv.lo > 1.0:
        return "faster" if higher_is_better else "slower"
    if iv.hi < 1.0:
        return "slower" if higher_is_better else "faster"
    return "same within noise"

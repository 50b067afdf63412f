"""Token lengths drawn from a `LengthDist`: the sampler every workload generator shares."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cliffbench.bench.spec.workload import LengthDist

__all__ = ["sample_lengths"]

IntArray = npt.NDArray[np.int64]

# Default upper clip of a lognormal without `high`: far enough out to keep the tail, close enough
# that one draw cannot ask for an absurd context.
_LOGNORMAL_DEFAULT_HIGH_X = 8


def sample_lengths(dist: LengthDist, n: int, rng: np.random.Generator) -> IntArray:
    """`n` token lengths (each >= 1) drawn from `dist`.

    fixed: `mean`; uniform: integers in [low, high], high defaulting to 2*mean; lognormal: median
    `mean`, shape `sigma`, rounded and clipped to [low, high], high defaulting to 8*mean.
    """
    if n < 0:
        raise ValueError(f"workload: n must be >= 0, got {n}")
    if dist.dist == "fixed":
        out = np.full(n, dist.mean, dtype=np.int64)
    elif dist.dist == "uniform":
        # max() keeps a spec with low > 2*mean and no high valid instead of an empty range.
        high = max(dist.low, dist.high if dist.high is not None else 2 * dist.mean)
        out = rng.integers(dist.low, high, size=n, endpoint=True, dtype=np.int64)
    else:
        high = dist.high if dist.high is not None else _LOGNORMAL_DEFAULT_HIGH_X * dist.mean
        high = max(dist.low, high)
        draws = rng.lognormal(mean=np.log(dist.mean), sigma=dist.sigma, size=n)
        out = np.clip(np.rint(draws), dist.low, high).astype(np.int64)
    return np.maximum(out, 1)

"""Probes of this machine's physical ceilings: memory bandwidth (a STREAM-like triad) and matmul
rate per dtype. A study probes once before any engine runs and keeps the result in its manifest."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from cliffbench.config import InputError
from cliffbench.hardware import Hardware, usable_cpus

__all__ = ["local_hardware", "probe_matmul_tflops", "probe_memory_bandwidth_gb_s"]


# float64 elements per inner step: three 256 KiB slices stay in L2, so the second pass of the triad
# (a += b after a = s*c) hits cache and DRAM sees the 3 arrays STREAM counts.
_BLOCK = 1 << 15
_F64 = npt.NDArray[np.float64]


def _triad(a: _F64, b: _F64, c: _F64, scalar: float, lo: int, hi: int) -> None:
    for i in range(lo, hi, _BLOCK):
        j = min(i + _BLOCK, hi)
        np.multiply(c[i:j], scalar, out=a[i:j])
        np.add(a[i:j], b[i:j], out=a[i:j])


def _best_s(step: Callable[[], object], runs: int) -> float:
    step()  # warm-up: page faults, thread start-up and BLAS dispatch stay out of the timing
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    # the best run, as STREAM reports: other load only slows a run down, and a ceiling is an upper bound
    return min(times)


def probe_memory_bandwidth_gb_s(size_mb: float = 256, runs: int = 5) -> float:
    """STREAM-like triad a = b + s*c on float64 arrays of `size_mb` MB each, split over one thread
    per usable core (numpy releases the GIL); best of `runs`, counting 3 arrays x 8 B per element."""
    if size_mb <= 0 or runs < 1:
        raise InputError(f"size_mb/runs: need size_mb > 0 and runs >= 1, got {size_mb} and {runs}")
    n = max(int(size_mb * 1e6) // 8, _BLOCK)
    a, b, c = np.zeros(n), np.full(n, 1.0), np.full(n, 2.0)  # filled, so every page is mapped before timing
    edges = np.linspace(0, n, usable_cpus() + 1).astype(int)
    chunks = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
    with ThreadPoolExecutor(len(chunks)) as pool:
        seconds = _best_s(lambda: list(pool.map(lambda ch: _triad(a, b, c, 3.0, *ch), chunks)), runs)
    return 3 * n * 8 / seconds / 1e9


_MATMUL_DTYPES = ("float32", "float64", "bfloat16", "float16")


def probe_matmul_tflops(dtype: str = "float32", n: int = 2048, runs: int = 3) -> float:
    """Dense n x n matmul rate (2n^3 FLOP per product), best of `runs`: numpy for float32/64,
    torch for bfloat16/float16 (numpy has no bf16)."""
    if dtype not in _MATMUL_DTYPES:
        raise InputError(f"dtype: {dtype!r} is not one of {', '.join(_MATMUL_DTYPES)}")
    if n < 1 or runs < 1:
        raise InputError(f"n/runs: need n >= 1 and runs >= 1, got {n} and {runs}")
    step: Callable[[], object]
    if dtype in ("float32", "float64"):
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
        step = lambda: x @ y  # noqa: E731
    else:
        try:
            import torch
        except ImportError:
            raise InputError(f"dtype: {dtype} needs torch, which is not installed") from None
        tx, ty = (torch.randn(n, n, dtype=getattr(torch, dtype)) for _ in range(2))
        step = lambda: torch.matmul(tx, ty)  # noqa: E731
    return 2 * n**3 / _best_s(step, runs) / 1e12


def local_hardware(size_mb: float = 256, n: int = 2048, runs: int = 3) -> Hardware:
    """This machine as a `Hardware` ("local"), from the probes; bf16 falls back to fp32 without torch."""
    import psutil

    fp32 = probe_matmul_tflops("float32", n, runs)
    try:
        bf16, how = probe_matmul_tflops("bfloat16", n, runs), "torch bf16 matmul"
    except InputError:
        bf16, how = fp32, "no torch: fp32 rate"
    return Hardware(
        name="local",
        memory_bandwidth_gb_s=probe_memory_bandwidth_gb_s(size_mb, runs),
        bf16_tflops=bf16,
        fp32_tflops=fp32,
        memory_gib=psutil.virtual_memory().total / 2**30,
        source="measured by cliffbench probes",
        note=f"triad {size_mb:g} MB x3 on {usable_cpus()} threads; {n}x{n} matmul; bf16: {how}; best of {runs}; "
        f"load average {os.getloadavg()[0]:.1f} while probing",
    )

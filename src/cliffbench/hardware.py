"""What hardware is: the datasheet peaks of known accelerators, and what this machine has (CPU
model and flags, usable cores, GPUs). Detected, never assumed; stored with every result."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from pydantic import BaseModel, ConfigDict, Field

from cliffbench.config import Spec

__all__ = ["HARDWARE", "QUANTISED", "CpuInfo", "GpuInfo", "Hardware", "cpu_info", "gpu_info", "usable_cpus"]

_FLAGS = ("avx", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma", "f16c", "neon", "sve")
QUANTISED = ("q8_0", "q4_k_m", "q4_1")


def usable_cpus() -> int:
    """Cores this process may run on (the affinity mask), else every logical CPU."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class CpuInfo(BaseModel):
    """This machine's CPU as detected (a field is None where a stored record did not hold it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    machine: str | None = None
    logical_cpus: int | None = None
    usable_cpus: int | None = None
    flags: list[str] = Field(default_factory=list, description="the SIMD/matrix flags the roofline asks about")
    memory_gib: float | None = None
    os: str | None = None


class GpuInfo(BaseModel):
    """One GPU as nvidia-smi names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    memory: str = ""
    driver: str = ""


def cpu_info() -> CpuInfo:
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
    usable = usable_cpus()
    mem_gib = None
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return CpuInfo(
        model=model,
        machine=platform.machine(),
        logical_cpus=os.cpu_count(),
        usable_cpus=usable,
        flags=sorted(f for f in _FLAGS if f in flags),
        memory_gib=mem_gib,
        os=platform.platform(),
    )


def gpu_info() -> list[GpuInfo]:
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
        gpus.append(GpuInfo(name=name, memory=mem, driver=driver))
    return gpus


class Hardware(Spec):
    """One accelerator's peaks. TFLOP/s are dense (no 2:4 sparsity), as GEMMs of LLMs run."""

    name: str
    memory_bandwidth_gb_s: float = Field(gt=0)
    bf16_tflops: float = Field(gt=0, description="dense bf16 tensor peak, fp32 accumulate")
    fp32_tflops: float | None = Field(None, gt=0, description="non-tensor fp32 peak")
    int8_tops: float | None = Field(None, gt=0, description="dense int8 tensor peak")
    memory_gib: float = Field(gt=0)
    source: str
    note: str = ""

    def compute_tflops(self, precision: str) -> float:
        """The highest peak a model of `precision` could run its matmuls at. Generous on purpose:
        llama.cpp multiplies quantised weights as int8 (MMQ), and an engine may upcast to fp32."""
        peaks = [self.bf16_tflops, self.fp32_tflops or 0.0]
        if precision in QUANTISED:
            peaks.append(self.int8_tops or 0.0)
        return max(peaks)


_A100 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
_H100 = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_ADA = "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
_PAGE = "https://www.nvidia.com/en-us/data-center/"
_CHECKED = "NVIDIA URL from memory, not fetched; values match third-party copies of its spec table"
HARDWARE: dict[str, Hardware] = {
    # rows in field order: name, GB/s, bf16 TF, fp32 TF, int8 TOPS, GiB, source, note
    str(row[0]): Hardware.model_validate(dict(zip(Hardware.model_fields, row, strict=True)))
    for row in (
        (
            "a100-40gb",
            1555,
            312,
            19.5,
            624,
            40,
            _A100,
            "SXM4 and PCIe 40GB share 1,555 GB/s and 312 TF (the research "
            "note's numbers); the PCIe card's 250 W cap can keep it below peak. URL from memory, not fetched",
        ),
        ("a100-80gb", 2039, 312, 19.5, 624, 80, _A100, "SXM4 (the 80GB PCIe card has 1,935 GB/s). Unsure: from memory"),
        ("h100-sxm", 3350, 989, 67, 1979, 80, _H100, "datasheet gives 1,979 TF bf16 with sparsity. " + _CHECKED),
        ("h100-pcie", 2000, 756, 51, 1513, 80, _H100, "datasheet gives 1,513 TF bf16 with sparsity. " + _CHECKED),
        ("h200", 4800, 989, 67, 1979, 141, _PAGE + "h200/", "SXM; H100 SXM compute; 141 GB as marketed. " + _CHECKED),
        ("l4", 300, 121, 30.3, 242.5, 24, _PAGE + "l4/", "datasheet 242 TF bf16 is with sparsity. " + _CHECKED),
        ("l40s", 864, 362, 91.6, 733, 48, _PAGE + "l40s/", "datasheet gives 733 TF bf16 with sparsity. " + _CHECKED),
        (
            "rtx-4090",
            1008,
            165.2,
            82.6,
            660.6,
            24,
            _ADA,
            "bf16/fp16 tensor with fp32 accumulate, the GeForce rate "
            "engines get (fp16 accumulate: 330 TF). " + _CHECKED.replace("NVIDIA", "Ada whitepaper"),
        ),
    )
}

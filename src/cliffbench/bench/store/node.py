"""The machine a level ran on, when a study runs on a Ray cluster (bench/cluster/driver.py): stored in
each level's `level.json` (`LevelInfo.node`; None for a level measured by a local run)."""

from __future__ import annotations

import socket

from pydantic import BaseModel, ConfigDict, Field

from cliffbench.hardware import cpu_info, gpu_info

__all__ = ["NodeInfo", "this_node"]


class NodeInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    ray_node_id: str = Field("", description="the Ray node id (hex) the level's task ran on")
    cpu_model: str = ""
    cpus: int = Field(0, ge=0, description="logical CPUs of the node")
    gpus: list[str] = Field(default_factory=list, description="GPU names and memory from nvidia-smi, one per GPU")
    gpu_driver: str = Field("", description="NVIDIA driver version ('' without a GPU)")


def this_node(ray_node_id: str = "") -> NodeInfo:
    """The machine this process runs on (nvidia-smi is asked once: the GPUs and their driver)."""
    cpu = cpu_info()
    gpus = gpu_info()
    return NodeInfo(
        host=socket.gethostname(),
        ray_node_id=ray_node_id,
        cpu_model=str(cpu.get("model", "")),
        cpus=int(cpu.get("logical_cpus", 0) or 0),
        gpus=[f"{g['name']} ({g['memory']})" for g in gpus],
        gpu_driver=gpus[0]["driver"] if gpus else "",
    )

"""What every engine spec answers, whatever its kind: the facts the rest of the kit asks of an engine
(context limit, batch capacity, precision, KV bytes, family, how it is reached, how the report names
its settings), and the precision helpers the kinds share. Code outside `cliffbench.engines` asks
these, never an engine's kind (tests/engines/test_sealed.py)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, Final, Literal

from pydantic import Field

from cliffbench.config import Spec
from cliffbench.hardware import cpu_info, usable_cpus
from cliffbench.models.spec import ModelSpec

__all__ = [
    "FAMILIES",
    "LLAMACPP",
    "PRECISION_OF",
    "VLLM",
    "EngineSpecBase",
    "Family",
    "gguf_name",
    "omp_bind",
    "preset_title",
    "resolve_dtype",
]

# the engine families the report sets against each other; the names are stored (the tuning
# sweep's runs) and printed (the tuning table), so they stay as they are
Family = Literal["vllm", "llama.cpp"]
VLLM: Final = "vllm"
LLAMACPP: Final = "llama.cpp"
FAMILIES: tuple[Family, ...] = (VLLM, LLAMACPP)

# what engines call a precision (vLLM dtypes, GGUF variants) -> the roofline's names
PRECISION_OF: dict[str, str] = {
    "q4_1": "q4_1",
    "q8_0": "q8_0",
    "f16": "fp16",
    "bf16": "bf16",
    "f32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "float32": "fp32",
}


# what a preset's product is called, by the start of the preset's name (engines.defaults.PRESETS)
_PRODUCTS = (("ollama", "Ollama"), ("llama-server", "llama-server"), ("vllm", "vLLM"))


def preset_title(preset: str) -> str:
    """'ollama-0.10+' -> 'Ollama 0.10+ as shipped'; 'vllm-default' -> 'vLLM as shipped'."""
    prefix, product = next(((k, v) for k, v in _PRODUCTS if preset.startswith(k)), ("", preset))
    version = preset.removeprefix(prefix).strip("-")
    return f"{product} {version} as shipped" if version and version != "default" else f"{product} as shipped"


def gguf_name(precision: str) -> str:
    """llama.cpp's own name of a weight type: fp32 -> F32, q8_0 -> Q8_0."""
    return {"fp32": "F32", "fp16": "F16"}.get(precision, precision.upper())


def resolve_dtype(dtype: str, device: str, cpu_flags: Collection[str] | None = None) -> str:
    """'best' -> bfloat16 where bf16 matmuls are native (CUDA; CPUs with AVX512-BF16 or AMX-BF16:
    measured 2x fp32 at 32 users here), float32 elsewhere (AVX2-only CPUs fall back to slow kernels).
    `cpu_flags` defaults to this machine's; a stored study passes the flags it was measured with."""
    if dtype != "best":
        return dtype
    if device == "cuda":
        return "bfloat16"
    flags = set(cpu_info().flags if cpu_flags is None else cpu_flags)
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


def omp_bind(setting: str) -> str | None:
    """VLLM_CPU_OMP_THREADS_BIND value: 'all' binds every core (vLLM's default 'auto' keeps one
    core for the front end, which on 2 cores halves decode throughput: FIELD_NOTES)."""
    if setting == "auto":
        return None
    if setting == "all":
        n = usable_cpus()
        return f"0-{n - 1}" if n > 1 else "0"
    return setting


class EngineSpecBase(Spec):
    kind: str  # each kind narrows it to its Literal: the discriminator of EngineSpec
    label: str | None = Field(None, description="name in results and figures; defaults to kind")
    preset: str | None = Field(None, description="the preset this spec was built from (cliffbench.engines.defaults)")
    model: ModelSpec = ModelSpec()

    # "module:Class" of the engine that runs this kind, imported only when one is built (registry.py)
    runner: ClassVar[str] = ""
    # the field (dotted, from the engine) that sets the per-request context, and the one to name
    # when the engine's memory does not fit
    context_field: ClassVar[str] = ""
    memory_field: ClassVar[str] = ""
    # the field that sets a KV budget reserved up front, where it is not implied by memory_field
    reserve_field: ClassVar[str | None] = None
    serves_model: ClassVar[bool] = True  # False: no model files to resolve, hash or take a tokenizer from
    # the family the report compares (vLLM against llama.cpp) when the engine runs in this process;
    # None: an HTTP endpoint or the fake, never a side of a comparison
    family: ClassVar[Family | None] = None
    in_process: ClassVar[bool] = True  # False: reached over HTTP
    core_in_child: ClassVar[bool] = False  # the engine's core runs in a child process of the kit's
    # serves at most a fixed number of sequences at once (llama.cpp's slots), whatever the load
    static_slots: ClassVar[bool] = False
    # how a title names the engine's family ("vLLM and llama.cpp under concurrent load")
    family_title: ClassVar[str] = "an OpenAI-compatible server"

    @property
    def name(self) -> str:
        return self.label or self.kind

    @property
    def server_kind(self) -> str | None:
        """The kind of the server the kit starts for this engine (None: in-process or external)."""
        return None

    @property
    def remote_host(self) -> str | None:
        """The host of an endpoint the kit does not run (None: the kit runs the engine)."""
        return None

    @property
    def external(self) -> bool:
        """Served by a machine the kit neither starts nor describes (its precision and cores unknown)."""
        return not self.in_process and self.server_kind is None

    def title(self) -> str:
        """How a title names this engine's family (an HTTP engine: the one its server runs)."""
        return self.family_title

    def people_name(self, precision: str) -> str:
        """The engine named by what it is, for people: 'Ollama 0.10+ as shipped' for a preset, else
        its configuration ('vLLM, bf16, tuned', 'llama.cpp, 32 slots, F32') at `precision`."""
        return preset_title(self.preset) if self.preset else self.configured_name(precision)

    def configured_name(self, precision: str) -> str:
        """`people_name` of an engine not built from a preset."""
        return self.title()

    def reuse_text(self) -> str:
        """How the engine reuses a prompt's KV across requests, in a table cell ('off' where it never does)."""
        return "off"

    def weights_text(self, precision: str) -> str:
        """The weight type as the engine's own docs name it (llama.cpp: F32, Q8_0; vLLM: bf16)."""
        return precision

    def context_limit(self) -> int:
        """The most prompt + output tokens one request may hold."""
        raise NotImplementedError

    def batch_capacity(self) -> int:
        """The most sequences decoded together."""
        raise NotImplementedError

    def precision(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> str:
        """The roofline precision (`PRECISION_OF` values) the weights are served at."""
        raise NotImplementedError

    def kv_dtype_bytes(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> int:
        """Bytes of one KV-cache element."""
        raise NotImplementedError

    def kv_reserved_bytes(self, kv_token_bytes: int, gpu_bytes: float | None = None, weights_bytes: float = 0) -> float:
        """KV-cache bytes the engine reserves at start on a GPU of `gpu_bytes` (None: on this CPU)."""
        raise NotImplementedError

    def host_reserve_gib(self) -> float:
        """GiB of this machine's memory the engine reserves at start by a setting (`reserve_field`),
        known before any model is read; 0 where the reservation follows from the model."""
        return 0.0

    def gpus(self) -> int:
        """GPUs one instance of the engine spans (the estimate checks each of them)."""
        return 1

    def node_gpus(self, cluster_gpus: float) -> int:
        """GPUs one instance takes on a cluster node of a cluster with `cluster_gpus` in all."""
        return 0

    def speed_settings(self) -> list[str]:
        """The settings that decide the engine's speed besides its precision, as the comparison
        table prints them."""
        return ["one request at a time"]

    def speed_key(self, precision: str) -> tuple[Any, ...] | None:
        """The settings that make two specs the same configuration for speed, whatever their labels
        (None: not an engine the tuning sweep measures)."""
        return None

    @classmethod
    def stands_for(cls, option_engine: str, option_slots: int | None) -> bool:
        """Whether this kind measures a decision-matrix option served by `option_engine` (a kind)
        with `option_slots` fixed slots (None: tuned to the users)."""
        return False

"""The engines that run in the kit's own process: vLLM's async engine, llama.cpp one request at a
time or in static slots, and the fake of the fast tier. One class per kind, each with the facts the
kit asks of it (`EngineSpecBase`): adding a kind or a precision variant is a change here (and in
`specs.py`'s union) and in the engine's own module."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import Field, field_validator

from cliffbench.engines.parallel import LlamaCppGpuSplit, VllmParallel
from cliffbench.engines.spec_base import LLAMACPP, PRECISION_OF, VLLM, EngineSpecBase, gguf_name, resolve_dtype
from cliffbench.hardware import usable_cpus

__all__ = [
    "FakeSpec",
    "InProcessSpec",
    "InProcessUnion",
    "LlamaCppSerialSpec",
    "LlamaCppSlotsSpec",
    "LlamaCppSpec",
    "VllmSpec",
]

# llama.cpp keeps its KV cache in f16 whatever the weights are
_LLAMACPP_KV_BYTES = 2
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}


class VllmSpec(VllmParallel, EngineSpecBase):
    """vLLM's async engine in-process. Defaults follow vLLM's CPU docs for this 2-core machine:
    the OpenMP threads bind to every core (`omp_threads_bind="all"`) instead of vLLM's default of
    reserving one core for the front end, which halves throughput here (FIELD_NOTES)."""

    kind: Literal["vllm"] = "vllm"
    dtype: Literal["best", "float32", "bfloat16", "float16", "auto"] = Field(
        "best",
        description="'best': bfloat16 where the hardware has bf16 matmul kernels (CUDA, or a CPU with "
        "AVX512-BF16 / AMX-BF16, as vLLM's CPU docs recommend), else float32",
    )
    max_num_seqs: int = Field(256, gt=0)
    max_num_batched_tokens: int | None = Field(None, gt=0)
    max_model_len: int = Field(2048, gt=0)
    block_size: int = Field(128, gt=0)
    kv_cache_gib: float = Field(1.0, gt=0, description="VLLM_CPU_KVCACHE_SPACE on CPU")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    enforce_eager: bool = True
    enable_prefix_caching: bool = False
    omp_threads_bind: str = Field(
        "all", description="VLLM_CPU_OMP_THREADS_BIND: 'all' = every core, 'auto' = vLLM default, or '0-1'"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"

    runner: ClassVar[str] = "cliffbench.engines.vllm:VllmEngine"
    context_field: ClassVar[str] = "max_model_len"
    memory_field: ClassVar[str] = "max_num_seqs"
    reserve_field: ClassVar[str | None] = "kv_cache_gib"
    family: ClassVar[Literal["vllm"]] = VLLM
    family_title: ClassVar[str] = "vLLM"
    core_in_child: ClassVar[bool] = True  # AsyncLLM's engine core

    def context_limit(self) -> int:
        return self.max_model_len

    def batch_capacity(self) -> int:
        return self.max_num_seqs

    def dtype_on(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> str:
        """The dtype vLLM is started with ('best' resolved for the hardware; 'auto' is vLLM's)."""
        return resolve_dtype(self.dtype, "cuda" if gpu else "cpu", cpu_flags)

    def precision(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> str:
        # vLLM's 'auto' takes the checkpoint's dtype, which the kit's prepared folders do not pin:
        # counted as 'best', the precision vLLM picks on such hardware
        dtype = "best" if self.dtype == "auto" else self.dtype
        return PRECISION_OF[resolve_dtype(dtype, "cuda" if gpu else "cpu", cpu_flags)]

    def kv_dtype_bytes(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> int:
        return _DTYPE_BYTES[self.dtype_on(cpu_flags, gpu)]

    def kv_reserved_bytes(self, kv_token_bytes: int, gpu_bytes: float | None = None, weights_bytes: float = 0) -> float:
        if gpu_bytes is None or self.device == "cpu":
            return self.kv_cache_gib * 2**30
        return max(0.0, gpu_bytes * self.gpu_memory_utilization - weights_bytes)

    def host_reserve_gib(self) -> float:
        return 0.0 if self.device == "cuda" else self.kv_cache_gib

    def node_gpus(self, cluster_gpus: float) -> int:
        # 'auto' runs on CUDA where the cluster has GPUs
        return self.gpus() if self.device == "cuda" or (self.device == "auto" and cluster_gpus > 0) else 0

    def speed_settings(self) -> list[str]:
        return [
            "OpenMP on every core" if self.omp_threads_bind == "all" else f"OpenMP bind {self.omp_threads_bind}",
            "eager" if self.enforce_eager else "compiled",
            "prefix caching on" if self.enable_prefix_caching else "prefix caching off",
        ]

    def speed_key(self, precision: str) -> tuple[Any, ...] | None:
        return (self.family, precision, self.enforce_eager, self.omp_threads_bind, self.enable_prefix_caching)

    def configured_name(self, precision: str) -> str:
        # 'tuned': OpenMP bound to every core as vLLM's CPU docs advise; 'auto' is vLLM's own default
        tuned = "default core binding" if self.omp_threads_bind == "auto" else "tuned"
        return (
            f"vLLM, {precision}, {tuned}"
            + ("" if self.enforce_eager else ", compiled")
            + (", prefix cache" if self.enable_prefix_caching else "")
        )

    def reuse_text(self) -> str:
        return "prefix cache" if self.enable_prefix_caching else "off"

    @classmethod
    def stands_for(cls, option_engine: str, option_slots: int | None) -> bool:
        return option_engine == "vllm"


class LlamaCppSpec(LlamaCppGpuSplit, EngineSpecBase):
    """What both llama.cpp kinds share; `slot_layout()` is where they differ."""

    n_threads: int | None = Field(None, gt=0, description="decode threads; default = all cores")
    n_batch: int = Field(512, gt=0, description="prompt tokens per llama_decode call")
    flash_attn: Literal["auto", "on", "off"] = Field("auto", description="llama.cpp default is auto")
    max_queue: int | None = Field(
        None,
        ge=0,
        description="requests waiting beyond this are rejected, as Ollama answers 503 past OLLAMA_MAX_QUEUE; "
        "None: unbounded",
    )
    # off unless asked, as VllmSpec's prefix caching: a study's independent prompts then measure the
    # same engine work as before; the presets of llama-server and Ollama turn it on (engine_defaults.csv)
    cache_prompt: bool = Field(
        False,
        description="keep each slot's tokens after its request and evaluate only what a new prompt adds "
        "(llama-server's per-request cache_prompt, on there by default; engines/slot_reuse.py)",
    )
    slot_prompt_similarity: float = Field(
        0.10,
        description="a request goes to the free slot whose kept tokens match more than this fraction of its "
        "prompt, else to the least recently used; 0 turns the match off (llama-server --slot-prompt-similarity)",
    )

    runner: ClassVar[str] = "cliffbench.engines.llamacpp:LlamaCppEngine"
    family: ClassVar[Literal["llama.cpp"]] = LLAMACPP
    family_title: ClassVar[str] = "llama.cpp"
    static_slots: ClassVar[bool] = True

    @field_validator("slot_prompt_similarity")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"must be a fraction in [0, 1] (0 turns the longest-prefix pick off), got {v}")
        return v

    def threads(self) -> int:
        return self.n_threads or usable_cpus()

    def precision(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> str:
        return PRECISION_OF[self.model.gguf_variant]

    def kv_dtype_bytes(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> int:
        return _LLAMACPP_KV_BYTES

    def slot_layout(self) -> tuple[int, int, bool]:
        """(slots, context per slot, unified KV)."""
        raise NotImplementedError

    def batch_capacity(self) -> int:
        return self.slot_layout()[0]

    def context_limit(self) -> int:
        slots, per_slot, unified = self.slot_layout()
        return per_slot * (slots if unified else 1)

    def kv_reserved_bytes(self, kv_token_bytes: int, gpu_bytes: float | None = None, weights_bytes: float = 0) -> float:
        slots, per_slot, _ = self.slot_layout()
        return float(slots * per_slot * kv_token_bytes)

    def node_gpus(self, cluster_gpus: float) -> int:
        return self.gpus()

    def layout_text(self) -> str:
        """How the engine holds its requests, as the comparison table says it."""
        raise NotImplementedError

    def speed_settings(self) -> list[str]:
        reuse = ["prompt reuse on"] if self.cache_prompt else []
        return [self.layout_text(), *reuse] + ([f"rejects past {self.max_queue} waiting"] if self.max_queue else [])

    def reuse_text(self) -> str:
        return "slot prompt reuse" if self.cache_prompt else "off"

    def speed_key(self, precision: str) -> tuple[Any, ...] | None:
        slots, _, unified = self.slot_layout()  # context per slot: room, not speed, at the study's lengths
        # prompt reuse named only when on: the keys of configurations measured before it existed stay
        return (self.family, precision, slots, unified) + (("cache_prompt",) if self.cache_prompt else ())

    def configured_name(self, precision: str) -> str:
        slots, _, unified = self.slot_layout()
        held = "one request at a time" if slots == 1 else f"{slots} slots" + (", shared KV" if unified else "")
        return f"llama.cpp, {held}, {gguf_name(precision)}" + (", prompt reuse" if self.cache_prompt else "")

    def weights_text(self, precision: str) -> str:
        return gguf_name(precision)


class LlamaCppSerialSpec(LlamaCppSpec):
    """One llama.cpp context, one request at a time, FIFO (llama-cpp-python's server,
    Ollama with OLLAMA_NUM_PARALLEL=1)."""

    kind: Literal["llamacpp-serial"] = "llamacpp-serial"
    n_ctx: int = Field(2048, gt=0)

    context_field: ClassVar[str] = "n_ctx"
    memory_field: ClassVar[str] = "n_ctx"

    def slot_layout(self) -> tuple[int, int, bool]:
        return 1, self.n_ctx, False

    def layout_text(self) -> str:
        return "one request at a time"

    @classmethod
    def stands_for(cls, option_engine: str, option_slots: int | None) -> bool:
        # the matrix names a one-slot llama.cpp server: one request at a time
        return option_engine == "llamacpp-slots" and option_slots == 1


class LlamaCppSlotsSpec(LlamaCppSpec):
    """N static slots decoded in one batch per step (llama-server -np N, Ollama NUM_PARALLEL=N)."""

    kind: Literal["llamacpp-slots"] = "llamacpp-slots"
    slots: int = Field(4, gt=0)
    ctx_per_slot: int = Field(2048, gt=0)
    kv_unified: bool = False

    context_field: ClassVar[str] = "ctx_per_slot"
    memory_field: ClassVar[str] = "slots"

    def slot_layout(self) -> tuple[int, int, bool]:
        return self.slots, self.ctx_per_slot, self.kv_unified

    def layout_text(self) -> str:
        return f"{self.slots} slots, {'one shared KV cache' if self.kv_unified else 'KV per slot'}"

    @classmethod
    def stands_for(cls, option_engine: str, option_slots: int | None) -> bool:
        return option_engine == "llamacpp-slots" and option_slots != 1


# the kinds a managed server can mirror: written once, InProcessSpec and ServerSpec.engine derive from it
InProcessUnion: TypeAlias = VllmSpec | LlamaCppSerialSpec | LlamaCppSlotsSpec
InProcessSpec = Annotated[InProcessUnion, Field(discriminator="kind")]


class FakeSpec(EngineSpecBase):
    """A deterministic engine with fixed timings (`cliffbench.engines.fake`): the fast test tier
    and the harness benchmarks name it in a study. It serves no model and measures nothing about a
    real engine; results of a fake engine are never presented as an engine's."""

    kind: Literal["fake"] = "fake"
    ttft_s: float = Field(0.01, ge=0, description="time to the first token")
    itl_s: float = Field(0.002, ge=0, description="time between tokens")
    itl_per_seq_s: float = Field(
        0.0, ge=0, description="added to each step per sequence in the batch (a batch-bound decode)"
    )
    jitter: float = Field(0.0, ge=0, le=2, description="lognormal sigma on every step and first-token time")
    seed: int = 0
    max_batch: int = Field(256, gt=0, description="sequences stepped together (one timer)")
    context_tokens: int = Field(2048, gt=0)
    fail_every: int = Field(0, ge=0, description="every n-th request fails after its first token (0: none)")

    runner: ClassVar[str] = "cliffbench.engines.fake:FakeEngine"
    family_title: ClassVar[str] = "a fake engine"
    serves_model: ClassVar[bool] = False
    context_field: ClassVar[str] = "context_tokens"
    memory_field: ClassVar[str] = "max_batch"

    def context_limit(self) -> int:
        return self.context_tokens

    def batch_capacity(self) -> int:
        return self.max_batch

    def precision(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> str:
        return "fp32"

    def kv_dtype_bytes(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> int:
        return 2

    def kv_reserved_bytes(self, kv_token_bytes: int, gpu_bytes: float | None = None, weights_bytes: float = 0) -> float:
        return 0.0

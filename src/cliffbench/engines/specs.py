"""The engine specs of a study, and every fact the kit asks of an engine kind (context limit,
batch capacity, precision, KV bytes, the server it mirrors). One class per kind: adding a kind or a
precision variant is a change here and in the engine's own module."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from cliffbench.config import InputError, Spec
from cliffbench.engines.parallel import LlamaCppGpuSplit, VllmParallel
from cliffbench.hardware import cpu_info, usable_cpus
from cliffbench.models.spec import ModelSpec

__all__ = [
    "ENGINE_KINDS",
    "PRECISION_OF",
    "EngineSpec",
    "FakeSpec",
    "InProcessSpec",
    "LlamaCppSerialSpec",
    "LlamaCppSlotsSpec",
    "LlamaCppSpec",
    "OpenAIHttpSpec",
    "ServerSpec",
    "VllmSpec",
    "omp_bind",
    "resolve_dtype",
]

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
# llama.cpp keeps its KV cache in f16 whatever the weights are
_LLAMACPP_KV_BYTES = 2
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}


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


class _EngineBase(Spec):
    kind: str  # each kind narrows it to its Literal: the discriminator of EngineSpec
    label: str | None = Field(None, description="name in results and figures; defaults to kind")
    preset: str | None = Field(None, description="the preset this spec was built from (cliffbench.engines.defaults)")
    model: ModelSpec = ModelSpec()

    # the field (dotted, from the engine) that sets the per-request context, and the one to name
    # when the engine's memory does not fit
    context_field: ClassVar[str] = ""
    memory_field: ClassVar[str] = ""
    # the field that sets a KV budget reserved up front, where it is not implied by memory_field
    reserve_field: ClassVar[str | None] = None
    serves_model: ClassVar[bool] = True  # False: no model files to resolve, hash or take a tokenizer from

    @property
    def name(self) -> str:
        return self.label or self.kind

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


class VllmSpec(VllmParallel, _EngineBase):
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

    context_field: ClassVar[str] = "max_model_len"
    memory_field: ClassVar[str] = "max_num_seqs"
    reserve_field: ClassVar[str | None] = "kv_cache_gib"

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


class LlamaCppSpec(LlamaCppGpuSplit, _EngineBase):
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


class LlamaCppSerialSpec(LlamaCppSpec):
    """One llama.cpp context, one request at a time, FIFO (llama-cpp-python's server,
    Ollama with OLLAMA_NUM_PARALLEL=1)."""

    kind: Literal["llamacpp-serial"] = "llamacpp-serial"
    n_ctx: int = Field(2048, gt=0)

    context_field: ClassVar[str] = "n_ctx"
    memory_field: ClassVar[str] = "n_ctx"

    def slot_layout(self) -> tuple[int, int, bool]:
        return 1, self.n_ctx, False


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


InProcessSpec = Annotated[VllmSpec | LlamaCppSerialSpec | LlamaCppSlotsSpec, Field(discriminator="kind")]

SERVER_KINDS = ("llama-server", "vllm", "llama-cpp-python")
# which in-process engine each server stands for: the server runs that engine's configuration
_SERVER_MIRRORS: dict[str, tuple[str, ...]] = {
    "llama-server": ("llamacpp-slots", "llamacpp-serial"),
    "vllm": ("vllm",),
    "llama-cpp-python": ("llamacpp-serial",),
}


class ServerSpec(Spec):
    """A real server the kit starts on 127.0.0.1 (free port), health-checks and stops on every exit
    path. `mirrors` is the in-process engine spec whose configuration the server is given (model
    file, slots, context, threads, dtype...), so a server and its in-process twin cannot drift."""

    kind: Literal["llama-server", "vllm", "llama-cpp-python"]
    mirrors: InProcessSpec | None = Field(None, description="in-process spec to mirror; default per kind")
    binary: Path | None = Field(None, description="llama-server: default is `make reference-servers`' build")
    startup_timeout_s: float = Field(300.0, gt=0, description="seconds to wait for the health check")
    extra_args: list[str] = Field(default_factory=list, description="appended to the server's command line")

    @model_validator(mode="after")
    def _mirror_fits(self) -> ServerSpec:
        allowed = _SERVER_MIRRORS[self.kind]
        if self.mirrors is not None and self.mirrors.kind not in allowed:
            raise ValueError(f"a {self.kind} server mirrors {' or '.join(allowed)}, got {self.mirrors.kind!r}")
        return self

    @property
    def engine(self) -> VllmSpec | LlamaCppSerialSpec | LlamaCppSlotsSpec:
        if self.mirrors is not None:
            return self.mirrors
        if self.kind == "vllm":
            return VllmSpec()
        return LlamaCppSerialSpec() if self.kind == "llama-cpp-python" else LlamaCppSlotsSpec()


class OpenAIHttpSpec(_EngineBase):
    """Any OpenAI-compatible endpoint, streamed over SSE: `url` for a server you run, or `server`
    for one the kit starts. The API key is read from the environment variable `api_key_env` at
    start and is never stored. `flavor` decides the non-standard fields that make output lengths
    exact ('auto': from the managed server's kind, else from GET /v1/models' owned_by)."""

    kind: Literal["openai-http"] = "openai-http"
    url: str | None = Field(None, description="base URL including /v1, e.g. http://127.0.0.1:8080/v1")
    server: ServerSpec | None = None
    api: Literal["completions", "chat"] = "completions"
    flavor: Literal["auto", "vllm", "llama-server", "llama-cpp-python", "generic"] = "auto"
    served_model: str | None = Field(None, description="the request's model field; default: first of /v1/models")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    prompt_format: Literal["auto", "token_ids", "text"] = Field(
        "auto", description="token_ids keeps prompts token-exact; 'auto' picks text only where the server needs it"
    )
    max_connections: int = Field(256, gt=0, description="HTTP pool size; must be >= the study's concurrency")
    connect_timeout_s: float = Field(10.0, gt=0)
    context_tokens: int = Field(2048, gt=0, description="prompt + output tokens one request may hold (url form)")
    retry_on_reset: bool = Field(
        True, description="retry once on a fresh connection when the server drops one before answering"
    )
    extra_body: dict[str, Any] = Field(default_factory=dict, description="merged into every request body")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http:// or https:// URL, got {v!r}")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _one_target(self) -> OpenAIHttpSpec:
        if (self.url is None) == (self.server is None):
            raise ValueError("give exactly one of url (a running server) or server (one the kit starts)")
        return self

    @property
    def context_field(self) -> str:  # type: ignore[override]
        return f"server.mirrors.{self.server.engine.context_field}" if self.server else "context_tokens"

    def context_limit(self) -> int:
        return self.server.engine.context_limit() if self.server else self.context_tokens

    def batch_capacity(self) -> int:
        return self.server.engine.batch_capacity() if self.server else self.max_connections

    def precision(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> str:
        # a remote server's weights are unknown: the roofline then assumes the widest, fp32
        return self.server.engine.precision(cpu_flags, gpu) if self.server else "fp32"

    def kv_dtype_bytes(self, cpu_flags: Collection[str] | None = None, gpu: bool = False) -> int:
        return self.server.engine.kv_dtype_bytes(cpu_flags, gpu) if self.server else 2

    def kv_reserved_bytes(self, kv_token_bytes: int, gpu_bytes: float | None = None, weights_bytes: float = 0) -> float:
        return self.server.engine.kv_reserved_bytes(kv_token_bytes, gpu_bytes, weights_bytes) if self.server else 0.0

    def api_key(self) -> str | None:
        """The key from the environment; InputError naming api_key_env when the variable is unset."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise InputError(f"api_key_env: environment variable {self.api_key_env} is not set")
        return key


class FakeSpec(_EngineBase):
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


_ENGINE_SPECS = (VllmSpec, LlamaCppSerialSpec, LlamaCppSlotsSpec, OpenAIHttpSpec, FakeSpec)
ENGINE_KINDS: tuple[str, ...] = tuple(cls.model_fields["kind"].default for cls in _ENGINE_SPECS)

EngineSpec = Annotated[
    VllmSpec | LlamaCppSerialSpec | LlamaCppSlotsSpec | OpenAIHttpSpec | FakeSpec, Field(discriminator="kind")
]

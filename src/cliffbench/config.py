"""Paths and the pydantic specs of a study: the one place where input is validated.

Every spec forbids unknown keys, so a typo in a study file is an error, not a silent default.
`InputError` carries a one-line message naming the parameter; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "DATA_DIR",
    "ENGINE_KINDS",
    "FIGURES_DIR",
    "MODELS_DIR",
    "PROJECT_ROOT",
    "REPORT_DIR",
    "RESULTS_DIR",
    "SLO_METRICS",
    "WORKLOAD_PRESETS",
    "EngineSpec",
    "InputError",
    "LengthDist",
    "LevelSetSpec",
    "LlamaCppSerialSpec",
    "LlamaCppSlotsSpec",
    "LoadSpec",
    "ModelSpec",
    "OpenAIHttpSpec",
    "ServerSpec",
    "SloSpec",
    "Spec",
    "StudySpec",
    "VllmSpec",
    "WorkloadSpec",
    "flag_study",
    "load_study",
    "one_line_error",
    "parse_spec",
]


def _find_root() -> Path:
    env = os.environ.get("CLIFFBENCH_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "src" / "cliffbench").exists():
            return parent
    return Path.cwd()


PROJECT_ROOT = _find_root()
DATA_DIR = PROJECT_ROOT / "data"
MODELS_DIR = DATA_DIR / "models"
RESULTS_DIR = DATA_DIR / "results"
FIGURES_DIR = PROJECT_ROOT / "figures"
REPORT_DIR = PROJECT_ROOT / "report"

SLO_METRICS = ("ttft_s", "tpot_s", "e2e_s")


class InputError(ValueError):
    """Bad user input: the message is one line naming the parameter and what is allowed."""


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Spec):
    """Which prepared model to serve. `name` is a folder under data/models/ (see `prepare-model`);
    `hf_path` / `gguf_path` point to a user's own files instead."""

    name: str = Field("smollm2-135m", description="prepared model folder under data/models/")
    hf_path: Path | None = Field(None, description="a Hugging Face folder for vLLM (overrides name)")
    gguf_path: Path | None = Field(None, description="a GGUF file for llama.cpp (overrides name)")
    gguf_variant: Literal["q4_1", "f32", "f16"] = Field(
        "q4_1", description="which GGUF of a prepared model llama.cpp loads (f32: bundled model; f16: presets)"
    )


class _EngineBase(Spec):
    label: str | None = Field(None, description="name in results and figures; defaults to kind")
    model: ModelSpec = ModelSpec()

    @property
    def name(self) -> str:
        return self.label or self.kind  # type: ignore[attr-defined]


class VllmSpec(_EngineBase):
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
    tensor_parallel_size: int = Field(1, gt=0)
    omp_threads_bind: str = Field(
        "all", description="VLLM_CPU_OMP_THREADS_BIND: 'all' = every core, 'auto' = vLLM default, or '0-1'"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"


class _LlamaCppBase(_EngineBase):
    n_threads: int | None = Field(None, gt=0, description="decode threads; default = all cores")
    n_batch: int = Field(512, gt=0, description="prompt tokens per llama_decode call")
    n_gpu_layers: int = Field(0, ge=-1, description="-1 offloads every layer (GPU builds)")
    flash_attn: Literal["auto", "on", "off"] = Field("auto", description="llama.cpp default is auto")


class LlamaCppSerialSpec(_LlamaCppBase):
    """One llama.cpp context, one request at a time, FIFO (llama-cpp-python's server,
    Ollama with OLLAMA_NUM_PARALLEL=1)."""

    kind: Literal["llamacpp-serial"] = "llamacpp-serial"
    n_ctx: int = Field(2048, gt=0)


class LlamaCppSlotsSpec(_LlamaCppBase):
    """N static slots decoded in one batch per step (llama-server -np N, Ollama NUM_PARALLEL=N)."""

    kind: Literal["llamacpp-slots"] = "llamacpp-slots"
    slots: int = Field(4, gt=0)
    ctx_per_slot: int = Field(2048, gt=0)
    kv_unified: bool = False


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
        from urllib.parse import urlsplit

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

    def api_key(self) -> str | None:
        """The key from the environment; InputError naming api_key_env when the variable is unset."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise InputError(f"api_key_env: environment variable {self.api_key_env} is not set")
        return key


ENGINE_KINDS: tuple[str, ...] = tuple(
    cls.model_fields["kind"].default for cls in (VllmSpec, LlamaCppSerialSpec, LlamaCppSlotsSpec, OpenAIHttpSpec)
)

EngineSpec = Annotated[VllmSpec | LlamaCppSerialSpec | LlamaCppSlotsSpec | OpenAIHttpSpec, Field(discriminator="kind")]


class LengthDist(Spec):
    """A token-length distribution. `fixed`: always `mean`; `uniform`: [low, high];
    `lognormal`: median `mean`, shape `sigma`, clipped to [low, high]."""

    dist: Literal["fixed", "uniform", "lognormal"] = "fixed"
    mean: int = Field(64, gt=0)
    low: int = Field(1, gt=0)
    high: int | None = Field(None, gt=0)
    sigma: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> LengthDist:
        if self.high is not None and self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class WorkloadSpec(Spec):
    """What is asked. `mixed` adds a `long_fraction` of document prompts of `long_prompt_tokens`
    (default: close to the smallest per-request context of the study's engines)."""

    kind: Literal["fixed", "uniform", "lognormal", "mixed"] = "fixed"
    prompt: LengthDist = LengthDist(mean=32)
    output: LengthDist = LengthDist(mean=64)
    long_fraction: float = Field(0.0, ge=0, le=1)
    long_prompt_tokens: int | None = Field(None, gt=0)
    system_prefix_tokens: int = Field(
        0, ge=0, description="shared prefix for prefix-caching runs; counts toward each prompt's length"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _long_only_mixed(self) -> WorkloadSpec:
        if self.long_fraction > 0 and self.kind != "mixed":
            raise ValueError(f"long_fraction needs kind 'mixed', got kind {self.kind!r}")
        return self


class LoadSpec(Spec):
    """How it is asked. `closed`: N users, each sends its next request when the last ends;
    `poisson`: open loop at `rate_rps` with gamma `burstiness` (1 = Poisson)."""

    arrival: Literal["closed", "poisson"] = "closed"
    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])
    rate_rps: list[float] = Field(default_factory=list)
    burstiness: float = Field(1.0, gt=0)
    think_time_s: float = Field(0.0, ge=0)
    requests_per_level: int | None = Field(16, gt=0)
    requests_per_user: int | None = Field(
        None, gt=0, description="closed loop: at least this many requests per user at every level"
    )
    duration_s: float | None = Field(None, gt=0)
    warmup_requests: int = Field(1, ge=0)
    request_timeout_s: float = Field(600.0, gt=0)
    max_lag_s: float = Field(0.005, gt=0, description="event-loop lag p99 above this flags a level")

    @field_validator("concurrency")
    @classmethod
    def _positive_concurrency(cls, v: list[int]) -> list[int]:
        if any(c <= 0 for c in v):
            raise ValueError(f"every concurrency must be >= 1, got {v}")
        return v

    @field_validator("rate_rps")
    @classmethod
    def _positive_rate(cls, v: list[float]) -> list[float]:
        if any(r <= 0 for r in v):
            raise ValueError(f"every rate must be > 0, got {v}")
        return v

    @model_validator(mode="after")
    def _end_condition(self) -> LoadSpec:
        if self.requests_per_level is None and self.duration_s is None:
            raise ValueError("set requests_per_level or duration_s")
        if self.arrival == "poisson" and not self.rate_rps:
            raise ValueError("arrival 'poisson' needs rate_rps")
        return self


class SloSpec(Spec):
    """SLO thresholds in seconds; goodput counts requests meeting every one of them."""

    thresholds: dict[str, float] = Field(default_factory=lambda: {"ttft_s": 1.0, "tpot_s": 0.2})

    @field_validator("thresholds")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if k not in SLO_METRICS:
                raise ValueError(f"unknown SLO metric {k!r}; allowed: {', '.join(SLO_METRICS)}")
            if x <= 0:
                raise ValueError(f"SLO {k} must be > 0, got {x}")
        return v


WORKLOAD_PRESETS: dict[str, WorkloadSpec] = {
    # short chat turns: prompt lengths spread around 32 tokens, fixed 64-token answers
    "chat": WorkloadSpec(
        kind="lognormal",
        prompt=LengthDist(dist="lognormal", mean=32, sigma=0.5, low=8, high=128),
        output=LengthDist(mean=64),
    ),
    # the seed's head-of-line case: 80% chat turns, 20% documents near the context limit
    "mixed": WorkloadSpec(
        kind="mixed",
        prompt=LengthDist(dist="lognormal", mean=32, sigma=0.5, low=8, high=128),
        output=LengthDist(mean=64),
        long_fraction=0.2,
    ),
    "fixed": WorkloadSpec(kind="fixed", prompt=LengthDist(mean=32), output=LengthDist(mean=64)),
}


class LevelSetSpec(Spec):
    """One workload under a list of load levels (e.g. `chat` at 1..32 users, `mixed` at 4 and 16)."""

    name: str = Field("chat", pattern=r"^[A-Za-z0-9_.-]+$")
    workload: WorkloadSpec = WorkloadSpec()
    load: LoadSpec = LoadSpec()


class StudySpec(Spec):
    """A study: engines x level sets (workload x load levels), with SLOs. YAML round-trips."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    engines: list[EngineSpec] = Field(min_length=1)
    level_sets: list[LevelSetSpec] = Field(default_factory=lambda: [LevelSetSpec()], min_length=1)
    slo: SloSpec = SloSpec()
    seed: int = 0
    hardware: str | None = Field(
        None,
        description="hardware the study is meant for (a cliffbench.roofline HARDWARE key, or 'local'): "
        "dry-run estimates and the KV-memory check use it",
    )

    @field_validator("hardware")
    @classmethod
    def _known_hardware(cls, v: str | None) -> str | None:
        from cliffbench.roofline import HARDWARE  # roofline imports this module: import late

        if v is not None and v != "local" and v not in HARDWARE:
            raise ValueError(f"unknown hardware {v!r}; allowed: local, {', '.join(HARDWARE)}")
        return v

    @model_validator(mode="after")
    def _unique_labels(self) -> StudySpec:
        for what, names in (
            ("engine labels", [e.name for e in self.engines]),
            ("level_sets names", [s.name for s in self.level_sets]),
        ):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"{what} must be unique, repeated: {sorted(dup)}")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def one_line_error(exc: ValidationError, prefix: str = "") -> str:
    """Reduce a pydantic error to one line: `field.path: message`."""
    err = exc.errors()[0]
    # discriminated unions add the tag to the path (engines.0.vllm.dtype): keep it, it names the kind
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).replace("Value error, ", "")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "input"
    return f"{where}: {msg}{more}".replace("\n", " ")


def parse_spec(cls: type[Spec], data: Any, prefix: str = "") -> Any:
    """Validate `data` into `cls`, raising InputError with a one-line message."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise InputError(one_line_error(exc, prefix)) from None


def flag_study(
    engine: str,
    slots: int | None,
    concurrency: str,
    requests_per_level: int,
    workload: str,
    name: str | None,
    url: str | None = None,
) -> StudySpec:
    """The study of `cliffbench run --engine ...` (and of notebook 10's flag form)."""
    if engine not in ENGINE_KINDS:
        raise InputError(f"--engine: unknown engine {engine!r}; allowed: {', '.join(ENGINE_KINDS)}")
    if workload not in WORKLOAD_PRESETS:
        raise InputError(f"--workload: unknown workload {workload!r}; allowed: {', '.join(WORKLOAD_PRESETS)}")
    try:
        levels = [int(x) for x in concurrency.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--concurrency: expected comma-separated integers, got {concurrency!r}") from None
    eng: dict[str, Any] = {"kind": engine}
    if (url is not None) != (engine == "openai-http"):
        raise InputError("--url: give it exactly when --engine is openai-http")
    if url is not None:
        eng["url"] = parse_spec(OpenAIHttpSpec, {"url": url}, prefix="--").url
    if slots is not None:
        if engine != "llamacpp-slots":
            raise InputError("--slots: only for --engine llamacpp-slots")
        eng["slots"] = slots
    level_set = parse_spec(
        LevelSetSpec,
        {
            "name": workload,
            "workload": WORKLOAD_PRESETS[workload].model_dump(),
            "load": {"concurrency": levels, "requests_per_level": requests_per_level},
        },
        prefix="",
    )
    study: StudySpec = parse_spec(
        StudySpec,
        {
            "name": name or f"{engine}{'-' + str(slots) if slots else ''}-{workload}",
            "engines": [eng],
            "level_sets": [level_set.model_dump()],
        },
        prefix="",
    )
    return study


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study YAML file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"study: file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"study: {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"study: {p} must hold a mapping at top level")
    data.setdefault("name", p.stem)
    spec: StudySpec = parse_spec(StudySpec, data, prefix="study.")
    return spec

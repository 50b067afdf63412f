"""The engines reached over HTTP: any OpenAI-compatible endpoint, or a real server the kit starts
(llama-server, `vllm serve`, llama-cpp-python's server) configured from the in-process spec it
mirrors, so a server and its in-process twin cannot drift."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from cliffbench.config import InputError, Spec
from cliffbench.engines.local_specs import (
    InProcessSpec,
    InProcessUnion,
    LlamaCppSerialSpec,
    LlamaCppSlotsSpec,
    VllmSpec,
)
from cliffbench.engines.spec_base import EngineSpecBase

__all__ = ["SERVER_KINDS", "OpenAIHttpSpec", "ServerSpec", "serve_mirror"]

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
    def engine(self) -> InProcessUnion:
        if self.mirrors is not None:
            return self.mirrors
        if self.kind == "vllm":
            return VllmSpec()
        return LlamaCppSerialSpec() if self.kind == "llama-cpp-python" else LlamaCppSlotsSpec()


def serve_mirror(kind: str, slots: int, ctx_per_slot: int, kv_unified: bool) -> dict[str, Any]:
    """The in-process spec (as a study file writes it) that `cliffbench serve KIND` mirrors: vLLM's
    defaults, llama-cpp-python's one context, or llama-server's slots."""
    if kind == "vllm":
        return {"kind": "vllm"}
    if kind == "llama-cpp-python":
        return {"kind": "llamacpp-serial", "n_ctx": ctx_per_slot}
    return {"kind": "llamacpp-slots", "slots": slots, "ctx_per_slot": ctx_per_slot, "kv_unified": kv_unified}


class OpenAIHttpSpec(EngineSpecBase):
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

    runner: ClassVar[str] = "cliffbench.engines.http:OpenAIHttpEngine"
    in_process: ClassVar[bool] = False

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

    @property
    def server_kind(self) -> str | None:
        return self.server.kind if self.server else None

    @property
    def remote_host(self) -> str | None:
        return urlsplit(self.url).hostname if self.url is not None else None

    def title(self) -> str:
        return self.server.engine.title() if self.server else self.family_title

    def configured_name(self, precision: str) -> str:
        return f"{self.server.kind} server over HTTP" if self.server else "an external server over HTTP"

    def node_gpus(self, cluster_gpus: float) -> int:
        return self.server.engine.node_gpus(cluster_gpus) if self.server else 0

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

"""Engines behind one async interface; `make_engine(spec)` picks the class by `spec.kind`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cliffbench.config import ENGINE_KINDS, EngineSpec, LlamaCppSerialSpec, LlamaCppSlotsSpec, OpenAIHttpSpec, VllmSpec
from cliffbench.engines.base import Engine, EngineError, GenRequest, KvMemory, RequestRejected, TokenEvent

if TYPE_CHECKING:
    from cliffbench.engines.http import OpenAIHttpEngine
    from cliffbench.engines.llamacpp import LlamaCppEngine
    from cliffbench.engines.vllm import VllmEngine

__all__ = [
    "ENGINE_KINDS",
    "Engine",
    "EngineError",
    "GenRequest",
    "KvMemory",
    "RequestRejected",
    "TokenEvent",
    "make_engine",
]


def make_engine(spec: EngineSpec) -> VllmEngine | LlamaCppEngine | OpenAIHttpEngine:
    """Build (not start) the engine for a validated spec. Heavy imports happen here, lazily."""
    if isinstance(spec, VllmSpec):
        from cliffbench.engines.vllm import VllmEngine

        return VllmEngine(spec)
    if isinstance(spec, LlamaCppSerialSpec | LlamaCppSlotsSpec):
        from cliffbench.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(spec)
    if isinstance(spec, OpenAIHttpSpec):
        from cliffbench.engines.http import OpenAIHttpEngine

        return OpenAIHttpEngine(spec)
    raise TypeError(f"unknown engine spec {type(spec).__name__}")

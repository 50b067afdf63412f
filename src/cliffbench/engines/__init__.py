"""Engines behind one async interface: specs (what a study names), the registry (kind -> class)
and one module per engine."""

from __future__ import annotations

from cliffbench.engines.base import Engine, EngineError, GenRequest, KvMemory, RequestRejected, TokenEvent
from cliffbench.engines.registry import make_engine
from cliffbench.engines.specs import ENGINE_KINDS, EngineSpec

__all__ = [
    "ENGINE_KINDS",
    "Engine",
    "EngineError",
    "EngineSpec",
    "GenRequest",
    "KvMemory",
    "RequestRejected",
    "TokenEvent",
    "make_engine",
]

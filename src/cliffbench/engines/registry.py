"""Engine kind -> the class that runs it. Engine modules are imported only when an engine of
their kind is built, so naming a kind never imports vLLM or llama.cpp."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from cliffbench.engines.base import Engine
from cliffbench.engines.specs import ENGINE_KINDS, EngineSpec

__all__ = ["ENGINE_CLASSES", "make_engine"]

# kind -> "module:Class" (lazy: the heavy imports happen in make_engine)
ENGINE_CLASSES: dict[str, str] = {
    "vllm": "cliffbench.engines.vllm:VllmEngine",
    "llamacpp-serial": "cliffbench.engines.llamacpp:LlamaCppEngine",
    "llamacpp-slots": "cliffbench.engines.llamacpp:LlamaCppEngine",
    "openai-http": "cliffbench.engines.http:OpenAIHttpEngine",
    "fake": "cliffbench.engines.fake:FakeEngine",
}
assert set(ENGINE_CLASSES) == set(ENGINE_KINDS), "every engine kind needs a class"


def make_engine(spec: EngineSpec) -> Engine:
    """Build (not start) the engine for a validated spec."""
    module, _, name = ENGINE_CLASSES[spec.kind].partition(":")
    cls = cast(Callable[[EngineSpec], Engine], getattr(importlib.import_module(module), name))
    return cls(spec)

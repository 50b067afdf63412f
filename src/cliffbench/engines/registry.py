"""Engine kind -> the class that runs it. Engine modules are imported only when an engine of
their kind is built, so naming a kind never imports vLLM or llama.cpp."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from cliffbench.engines.base import Engine
from cliffbench.engines.specs import ENGINE_KINDS, ENGINE_SPECS, EngineSpec

__all__ = ["ENGINE_CLASSES", "make_engine"]

# kind -> "module:Class" (lazy: the heavy imports happen in make_engine), from each spec's `runner`;
# a dict, so a test can point a kind at a stand-in
ENGINE_CLASSES: dict[str, str] = {kind: cls.runner for kind, cls in zip(ENGINE_KINDS, ENGINE_SPECS, strict=True)}
assert all(ENGINE_CLASSES.values()), "every engine kind needs a class"


def make_engine(spec: EngineSpec) -> Engine:
    """Build (not start) the engine for a validated spec."""
    module, _, name = ENGINE_CLASSES[spec.kind].partition(":")
    cls = cast(Callable[[EngineSpec], Engine], getattr(importlib.import_module(module), name))
    return cls(spec)

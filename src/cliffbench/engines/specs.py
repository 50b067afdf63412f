"""The engine specs of a study: the union of engine kinds, written once here (the pydantic
discriminated union; `ENGINE_SPECS`, `ENGINE_KINDS` and the registry derive from it), and the
lookups by kind for data that stores a kind rather than a spec (a levels table's `engine_kind`, a
flag, a decision-matrix option). The kinds live in `local_specs.py` (in this process) and
`http_specs.py` (over HTTP); every fact the kit asks of one is in `spec_base.EngineSpecBase`."""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import Field

from cliffbench.engines.http_specs import SERVER_KINDS, OpenAIHttpSpec, ServerSpec, serve_mirror
from cliffbench.engines.local_specs import (
    FakeSpec,
    InProcessSpec,
    InProcessUnion,
    LlamaCppSerialSpec,
    LlamaCppSlotsSpec,
    LlamaCppSpec,
    VllmSpec,
)
from cliffbench.engines.spec_base import (
    FAMILIES,
    LLAMACPP,
    PRECISION_OF,
    VLLM,
    EngineSpecBase,
    Family,
    omp_bind,
    resolve_dtype,
)

__all__ = [
    "ENGINE_KINDS",
    "ENGINE_SPECS",
    "FAMILIES",
    "LLAMACPP",
    "PRECISION_OF",
    "SERVER_KINDS",
    "VLLM",
    "EngineSpec",
    "EngineSpecBase",
    "FakeSpec",
    "Family",
    "InProcessSpec",
    "LlamaCppSerialSpec",
    "LlamaCppSlotsSpec",
    "LlamaCppSpec",
    "OpenAIHttpSpec",
    "ServerSpec",
    "VllmSpec",
    "family_kind",
    "family_of",
    "kinds_with",
    "omp_bind",
    "resolve_dtype",
    "serve_mirror",
    "slot_bound",
    "spec_class",
    "stands_for",
]

EngineSpec = Annotated[InProcessUnion | OpenAIHttpSpec | FakeSpec, Field(discriminator="kind")]

# the union's members in order, and their kinds: the one list every lookup below reads
ENGINE_SPECS: tuple[type[EngineSpecBase], ...] = get_args(get_args(EngineSpec)[0])
_BY_KIND: dict[str, type[EngineSpecBase]] = {cls.model_fields["kind"].default: cls for cls in ENGINE_SPECS}
ENGINE_KINDS: tuple[str, ...] = tuple(_BY_KIND)
# the kind a family's spec takes when it is stored without one (the tuning sweep's runs: llama.cpp in slots)
_FAMILY_KIND: dict[Family, str] = {VLLM: "vllm", LLAMACPP: "llamacpp-slots"}


def spec_class(kind: str) -> type[EngineSpecBase] | None:
    """The spec class of an engine kind (None: not a kind this kit runs, e.g. from an older study)."""
    return _BY_KIND.get(kind)


def kinds_with(field: str) -> tuple[str, ...]:
    """The kinds whose spec has the setting `field` (what a flag that sets it applies to)."""
    return tuple(k for k, cls in _BY_KIND.items() if field in cls.model_fields)


def family_of(kind: str) -> Family | None:
    """The family an engine kind belongs to (None: neither, e.g. an HTTP server or the fake)."""
    cls = spec_class(kind)
    return cls.family if cls is not None else None


def family_kind(family: Family) -> str:
    """The kind a spec of `family` stored without its kind is read as."""
    return _FAMILY_KIND[family]


def slot_bound(kind: str) -> bool:
    """Whether engines of `kind` serve at most a fixed number of sequences at once (llama.cpp's slots)."""
    cls = spec_class(kind)
    return cls is not None and cls.static_slots


def stands_for(kind: str, option_engine: str, option_slots: int | None) -> bool:
    """Whether a study's engine of `kind` measures a decision-matrix option served by `option_engine`
    with `option_slots` fixed slots."""
    cls = spec_class(kind)
    return cls is not None and cls.stands_for(option_engine, option_slots)


assert set(_FAMILY_KIND) == set(FAMILIES), "every family reads a stored spec as one of its kinds"

"""What engines do out of the box, as published: `data/published/engine_defaults.csv` (one sourced
row per engine, setting and version range), and the named presets built from those rows.

A preset is an engine-spec dict (`preset_spec`) a study names instead of typing the numbers
(`{preset: ollama-0.10+}`): the values come from the CSV, so a corrected row corrects every preset
that reads it. Versions are dotted numbers (`0.10.0`) or, for llama.cpp, build dates (`2025-10-23`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from cliffbench.config import DATA_DIR, InputError, Spec, read_csv_specs

__all__ = [
    "ENGINE_DEFAULTS_CSV",
    "PRESETS",
    "EngineDefault",
    "Preset",
    "default_value",
    "load_engine_defaults",
    "parse_version",
    "preset_spec",
]

ENGINE_DEFAULTS_CSV = DATA_DIR / "published" / "engine_defaults.csv"

Value = int | float | bool | str | None
_CLAUSE = re.compile(r"^(>=|<=|==|>|<)\s*(\S+)$")
_VERSION = re.compile(r"^v?(\d+(?:[.-]\d+)*)")


def parse_version(text: str) -> tuple[int, ...]:
    """`0.10.0`, `v0.9.7-rc0` (the pre-release is dropped) or a build date `2025-10-23` as a tuple
    compared number by number; trailing zeros do not count (`0.10` == `0.10.0`)."""
    m = _VERSION.match(text.strip())
    if not m:
        raise ValueError(f"version {text!r}: expected dotted numbers (0.10.0) or a build date (2025-10-23)")
    parts = [int(p) for p in re.split(r"[.-]", m.group(1))]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class _Range:
    lo: tuple[int, ...] | None = None
    lo_in: bool = True
    hi: tuple[int, ...] | None = None
    hi_in: bool = False

    def contains(self, v: tuple[int, ...]) -> bool:
        above = self.lo is None or v > self.lo or (self.lo_in and v == self.lo)
        below = self.hi is None or v < self.hi or (self.hi_in and v == self.hi)
        return above and below

    def overlaps(self, other: _Range) -> bool:
        return not (_below(self, other) or _below(other, self))


def _below(a: _Range, b: _Range) -> bool:
    """Every version of `a` is below every version of `b`."""
    if a.hi is None or b.lo is None:
        return False
    return a.hi < b.lo or (a.hi == b.lo and not (a.hi_in and b.lo_in))


def _parse_range(text: str) -> _Range:
    """`*` (every version) or comma-separated clauses `>=A`, `>A`, `<B`, `<=B`, `==V`."""
    if text.strip() == "*":
        return _Range()
    lo: tuple[tuple[int, ...], bool] | None = None
    hi: tuple[tuple[int, ...], bool] | None = None
    for clause in text.split(","):
        m = _CLAUSE.match(clause.strip())
        if not m:
            raise ValueError(f"{clause.strip()!r} is not '*' or a clause like '>=0.10.0', '<0.6.7', '==0.9.2'")
        op, v = m.group(1), parse_version(m.group(2))
        if op in (">=", ">", "=="):
            lo = (v, op != ">")
        if op in ("<=", "<", "=="):
            hi = (v, op != "<")
    r = _Range(lo[0] if lo else None, lo[1] if lo else True, hi[0] if hi else None, hi[1] if hi else False)
    if _below(_Range(hi=r.hi, hi_in=r.hi_in), _Range(lo=r.lo, lo_in=r.lo_in)):
        raise ValueError(f"{text!r} holds no version")
    return r


class EngineDefault(Spec):
    """One row of engine_defaults.csv: an engine's default for one setting over a version range."""

    engine: Literal["ollama", "llama-server", "vllm"]
    setting: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    value: str = Field(min_length=1, description="'true'/'false', a number, 'none', 'a|b' (a, else b), or a word")
    versions: str = Field(description="'*' or clauses '>=A', '<B', '==V', comma-separated")
    since: str = Field(pattern=r"^(\d{4}-\d{2}-\d{2}|unknown)$")
    source_url: str = Field(pattern=r"^https?://\S+$")
    as_of: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    note: str = ""

    @field_validator("versions")
    @classmethod
    def _range(cls, v: str) -> str:
        _parse_range(v)
        return v

    @property
    def range(self) -> _Range:
        return _parse_range(self.versions)

    @property
    def typed(self) -> Value:
        """`value` as Python: bool, int, float, None ('none') or the text itself."""
        v = self.value.strip()
        if v in ("true", "false"):
            return v == "true"
        if v == "none":
            return None
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v


def load_engine_defaults(path: str | Path | None = None) -> list[EngineDefault]:
    """engine_defaults.csv validated row by row; InputError names the line and the field, or the
    two rows whose version ranges of one setting overlap."""
    p = Path(path) if path is not None else ENGINE_DEFAULTS_CSV
    rows = read_csv_specs(p, EngineDefault)
    for i, a in enumerate(rows):
        for j, b in enumerate(rows[:i]):
            if (a.engine, a.setting) == (b.engine, b.setting) and a.range.overlaps(b.range):
                raise InputError(
                    f"{p.name} line {i + 2} ({a.engine} {a.setting}): versions: {a.versions!r} overlaps "
                    f"line {j + 2}'s {b.versions!r}"
                )
    return rows


def _row(rows: list[EngineDefault], engine: str, setting: str, version: str | None) -> EngineDefault | None:
    mine = [r for r in rows if (r.engine, r.setting) == (engine, setting)]
    if not mine:
        known = sorted({f"{r.engine} {r.setting}" for r in rows})
        raise InputError(f"engine defaults: no row for {engine} {setting}; known: {', '.join(known)}")
    if version is None:  # the current default: the range with no upper end
        hit = [r for r in mine if r.range.hi is None]
    else:
        try:
            v = parse_version(version)
        except ValueError as exc:
            raise InputError(f"engine defaults: {exc}") from None
        hit = [r for r in mine if r.range.contains(v)]
    return hit[0] if hit else None


def default_value(
    engine: str, setting: str, version: str | None = None, *, rows: list[EngineDefault] | None = None
) -> Value:
    """The `engine`'s default for `setting` at `version` (None: the current one, the row with no
    upper version bound), typed as `EngineDefault.typed`. InputError when no row covers it."""
    row = _row(load_engine_defaults() if rows is None else rows, engine, setting, version)
    if row is None:
        raise InputError(f"engine defaults: no {engine} {setting} row covers version {version or 'current'}")
    return row.typed


# -- presets --------------------------------------------------------------------------------


Lookup = Callable[[str, str, str | None], Value]


@dataclass(frozen=True)
class Preset:
    """A named engine configuration: `build` turns a lookup of the CSV into an engine-spec dict."""

    description: str
    build: Callable[[Lookup], dict[str, Any]]


def _first(v: Value) -> int:
    """`4|1` (4, or 1 where memory is short) -> 4; a plain number -> itself."""
    return int(str(v).split("|")[0])


def _ollama(version: str) -> Callable[[Lookup], dict[str, Any]]:
    def build(get: Lookup) -> dict[str, Any]:
        n = _first(get("ollama", "num_parallel", version))
        queue = get("ollama", "max_queue", version)
        # prompt reuse where the CSV sources it; older releases keep the kit's default (off)
        reuse = get("ollama", "cache_prompt", version)
        extra = {} if reuse is None else {"cache_prompt": bool(reuse)}
        if n == 1:
            return {"kind": "llamacpp-serial", "max_queue": queue, **extra}
        per_slot = get("ollama", "kv_per_slot", version) == "num_ctx"
        return {"kind": "llamacpp-slots", "slots": n, "kv_unified": not per_slot, "max_queue": queue, **extra}

    return build


def _llama_server(get: Lookup) -> dict[str, Any]:
    return {
        "kind": "llamacpp-slots",
        "slots": _first(get("llama-server", "slots", None)),
        "kv_unified": bool(get("llama-server", "kv_unified", None)),
        "max_queue": get("llama-server", "max_queue", None),
        "cache_prompt": bool(get("llama-server", "cache_prompt", None)),
        "slot_prompt_similarity": float(str(get("llama-server", "slot_prompt_similarity", None))),
    }


def _vllm(get: Lookup) -> dict[str, Any]:
    return {"kind": "vllm", "enable_prefix_caching": bool(get("vllm", "prefix_caching", None))}


PRESETS: dict[str, Preset] = {
    "ollama-0.10+": Preset(
        "Ollama from v0.10.0: one request at a time (llamacpp-serial) reusing its prompt cache, OLLAMA_MAX_QUEUE "
        "waiting, the rest rejected",
        _ollama("0.10.0"),
    ),
    "ollama-0.6.7-0.9": Preset(
        "Ollama v0.6.7 to v0.9.x with memory to spare: 2 slots of per-slot KV (queue limit not in the CSV)",
        _ollama("0.6.7"),
    ),
    "ollama-0.2-0.6": Preset(
        "Ollama v0.2.0 to v0.6.6 with memory to spare: 4 slots of per-slot KV (queue limit not in the CSV)",
        _ollama("0.6.6"),
    ),
    "llama-server-default": Preset(
        "llama-server started without -np (builds from 2025-10-23): 4 slots sharing one unified KV cache, each "
        "keeping its prompt for the next request (cache_prompt, slot similarity 0.10)",
        _llama_server,
    ),
    "vllm-default": Preset("vLLM V1 with its prefix caching on; other fields keep the kit's VllmSpec defaults", _vllm),
}


def preset_spec(name: str, **overrides: Any) -> dict[str, Any]:
    """The engine-spec dict of preset `name` from the CSV's current rows, labelled with the preset's
    name, with `overrides` on top. ValueError for an unknown preset (naming the allowed ones) or
    an override of `kind` that is not the preset's."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    rows = load_engine_defaults()

    def get(engine: str, setting: str, version: str | None) -> Value:
        row = _row(rows, engine, setting, version)
        return None if row is None else row.typed

    spec = PRESETS[name].build(get)
    kind = overrides.get("kind", spec["kind"])
    if kind != spec["kind"]:
        raise ValueError(f"preset {name!r} builds kind {spec['kind']!r}, not {kind!r}")
    return {**spec, "label": name, **overrides, "preset": name}

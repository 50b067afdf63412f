"""What two stored studies share, for `cliffbench compare`: which engines are the same engine, which
level sets the same workload, and every difference of hardware, model, precision, workload, load
and versions, each named by its field.

Engines are matched by configuration, never by label: the spec as run (the manifest's `study`)
without `label` and `preset`, so a renamed engine is still itself and a changed one (fewer slots,
another dtype) is not. With `allow_different`, engines left over are paired by label and the
configuration fields that differ go on every line. Level sets pair by name, else by an identical
workload. Hardware, model, precision and workload differences block a comparison (`blocking`);
load, versions and the code's revision are notes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cliffbench.bench.spec.study import LevelSetSpec
from cliffbench.bench.store.levels import Results
from cliffbench.config import InputError
from cliffbench.engines.specs import EngineSpec

__all__ = [
    "Difference",
    "EnginePair",
    "SetPair",
    "config_differences",
    "match_engines",
    "match_level_sets",
    "study_differences",
]

# load fields that change the levels' statistics, not what a level is (the levels pair by load)
_LOAD_NOTES = ("arrival", "requests_per_level", "requests_per_user", "duration_s", "warmup_requests", "think_time_s")
_CPU_FIELDS = ("model", "machine", "usable_cpus", "flags")


class Difference(BaseModel):
    """One field that differs between A and B; `blocking` ones make the studies not comparable
    unless the user allows it."""

    field: str
    a: str
    b: str
    blocking: bool

    def text(self) -> str:
        return f"{self.field}: {self.a} -> {self.b}"


@dataclass(frozen=True)
class EnginePair:
    """Engine `a` of A and engine `b` of B; `differs`: their configuration differences (empty when
    matched by configuration)."""

    a: str
    b: str
    differs: tuple[Difference, ...] = ()


@dataclass(frozen=True)
class SetPair:
    """Level set `a` of A and `b` of B, with their workload and load differences."""

    a: str
    b: str
    differs: tuple[Difference, ...] = ()


def _show(v: Any) -> str:
    if v is None:
        return "not recorded"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def _diff(a: Any, b: Any, prefix: str, blocking: bool) -> list[Difference]:
    fa, fb = _flat(a, prefix), _flat(b, prefix)
    return [
        Difference(field=k, a=_show(fa.get(k)), b=_show(fb.get(k)), blocking=blocking)
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k)
    ]


def _config(spec: EngineSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude={"label", "preset"})


def config_differences(a: EngineSpec, b: EngineSpec) -> list[Difference]:
    """The configuration fields of two engine specs that differ (label and preset aside)."""
    return _diff(_config(a), _config(b), "", blocking=False)


def match_engines(a: Results, b: Results, allow_different: bool) -> tuple[list[EnginePair], list[str], list[str]]:
    """(pairs, engines only in A, engines only in B). By configuration first (a same-label partner
    preferred among equals); with `allow_different`, the rest by label."""
    sa, sb = a.engine_specs, b.engine_specs
    left = list(sb)
    pairs: list[EnginePair] = []
    unpaired = []
    for name, spec in sa.items():
        same = [o for o in left if _config(sb[o]) == _config(spec)]
        if same:
            partner = name if name in same else same[0]
            pairs.append(EnginePair(name, partner))
            left.remove(partner)
        else:
            unpaired.append(name)
    only_a = []
    for name in unpaired:
        if allow_different and name in left:
            pairs.append(EnginePair(name, name, tuple(config_differences(sa[name], sb[name]))))
            left.remove(name)
        else:
            only_a.append(name)
    if not pairs:
        hint = "; --allow-different pairs them by label" if not allow_different else ""
        raise InputError(
            f"engines: no engine of A has the configuration of one of B (A: {', '.join(sa)}; B: {', '.join(sb)}){hint}"
        )
    return pairs, only_a, left


def _set_differences(a: LevelSetSpec, b: LevelSetSpec) -> list[Difference]:
    out = _diff(a.workload.model_dump(mode="json"), b.workload.model_dump(mode="json"), f"workload.{a.name}", True)
    la, lb = a.load.model_dump(mode="json"), b.load.model_dump(mode="json")
    notes = {k: la.get(k) for k in _LOAD_NOTES}, {k: lb.get(k) for k in _LOAD_NOTES}
    out += _diff(*notes, f"load.{a.name}", blocking=False)
    if a.load.repeats != b.load.repeats:
        out.append(
            Difference(field=f"load.{a.name}.repeats", a=str(a.load.repeats), b=str(b.load.repeats), blocking=False)
        )
    return out


def match_level_sets(a: Results, b: Results) -> list[SetPair]:
    """Level sets of A paired with B's: by name, else by an identical workload."""
    sets_b = {s.name: s for s in b.study.level_sets}
    pairs = []
    for s in a.study.level_sets:
        partner = sets_b.get(s.name) or next((o for o in sets_b.values() if o.workload == s.workload), None)
        if partner is not None:
            pairs.append(SetPair(s.name, partner.name, tuple(_set_differences(s, partner))))
    if not pairs:
        raise InputError(
            "workload: no level set of A has the name or the workload of one of B "
            f"(A: {', '.join(s.name for s in a.study.level_sets)}; B: {', '.join(sets_b)})"
        )
    return pairs


def _cpu(manifest: Mapping[str, Any]) -> dict[str, Any]:
    cpu = manifest.get("cpu")
    return {k: (cpu or {}).get(k) for k in _CPU_FIELDS}


def _gpus(manifest: Mapping[str, Any]) -> list[str]:
    return sorted(str(g.get("name")) for g in manifest.get("gpu") or [])


def _precision(spec: EngineSpec, manifest: Mapping[str, Any]) -> str:
    try:
        return spec.precision((manifest.get("cpu") or {}).get("flags"), gpu=bool(manifest.get("gpu")))
    except (NotImplementedError, KeyError):
        return "unknown"


def _busy_text(res: Results) -> str:
    lv = res.levels
    foreign = lv["foreign_cores"].median() if "foreign_cores" in lv else float("nan")
    busy = int(lv["busy_flagged"].fillna(False).astype(bool).sum()) if "busy_flagged" in lv else 0
    return f"{foreign:.2f} cores used by other processes (median), {busy} of {len(lv)} levels flagged busy"


def _busy(a: Results, b: Results) -> list[Difference]:
    """A note when either study was measured beside other work: the ratios then carry the
    machine's load as much as the engines' (both measured quiet, nothing is said)."""
    ta, tb = _busy_text(a), _busy_text(b)
    if " 0 of " in ta and " 0 of " in tb:
        return []
    return [Difference(field="machine load", a=ta, b=tb, blocking=False)]


def study_differences(a: Results, b: Results, engines: list[EnginePair]) -> list[Difference]:
    """Hardware, tokenizer, each engine pair's model files and precision (blocking), then the
    versions and git revision (notes)."""
    ma, mb = a.manifest, b.manifest
    if ma.get("cpu") and mb.get("cpu"):
        out = _diff(_cpu(ma), _cpu(mb), "hardware.cpu", blocking=True)
    else:  # nothing to show the hardware is the same
        said = ["recorded" if m.get("cpu") else "not recorded in the manifest" for m in (ma, mb)]
        out = [Difference(field="hardware.cpu", a=said[0], b=said[1], blocking=True)]
    out += _diff({"gpus": _gpus(ma)}, {"gpus": _gpus(mb)}, "hardware", blocking=True)
    out += _diff({"tokenizer": a.study.tokenizer}, {"tokenizer": b.study.tokenizer}, "workload", blocking=True)
    sa, sb = a.engine_specs, b.engine_specs
    for p in engines:
        files_a = (ma.get("model_files") or {}).get(p.a)
        files_b = (mb.get("model_files") or {}).get(p.b)
        if files_a != files_b:
            out += _diff(files_a or {}, files_b or {}, f"model.{p.a}", blocking=True)
        pa, pb = _precision(sa[p.a], ma), _precision(sb[p.b], mb)
        if pa != pb:
            out.append(Difference(field=f"precision.{p.a}", a=pa, b=pb, blocking=True))
    out += _busy(a, b)
    out += _diff(ma.get("versions") or {}, mb.get("versions") or {}, "versions", blocking=False)
    if ma.get("git_sha") != mb.get("git_sha"):
        out.append(Difference(field="git_sha", a=_show(ma.get("git_sha")), b=_show(mb.get("git_sha")), blocking=False))
    return out

"""What every stored benchmark result (benchmarks/results/*.json) records, so two of them can be
compared (`cliffbench compare-bench`): when (date), from which code (git sha, versions), where (CPU,
load average before and after) and its headline numbers with every repeat's value, not one run.

A benchmark builds its own payload as before and writes it through `write_result`, which adds the
envelope under the key `record` (the payload's own keys stay where the report's readers look for
them). Files stored before the envelope existed are not rewritten with guessed values:
`audit_results` says what each one lacks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cliffbench.bench.store.provenance import collect_provenance
from cliffbench.config import InputError
from cliffbench.files import atomic_file

__all__ = [
    "REQUIRED",
    "BenchmarkRecord",
    "RepeatedNumber",
    "audit_results",
    "loadavg",
    "new_record",
    "read_record",
    "write_result",
]

REQUIRED = ("date", "git_sha", "versions", "cpu", "loadavg", "repeats")
# where files stored before the envelope keep the same facts (top level, or under `machine` or
# `provenance`)
_LEGACY = {
    "date": ("created_at", "date"),
    "git_sha": ("git_sha",),
    "versions": ("versions",),
    "cpu": ("cpu", "machine"),
    "loadavg": ("loadavg", "loadavg_1m_before", "loadavg_before", "load_average_1m"),
    "repeats": ("repeats", "reps"),
}


class RepeatedNumber(BaseModel):
    """One headline number, every repeat's value (its median and range are derived, never stored
    alone)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    unit: str = ""
    higher_is_better: bool = True
    values: list[float] = Field(min_length=1)

    @property
    def median(self) -> float:
        return float(np.median(self.values))

    def text(self) -> str:
        """'178 tok/s (173-179, 3 repeats)'."""
        rng = f"{min(self.values):.3g}-{max(self.values):.3g}, " if len(self.values) > 1 else ""
        return (
            f"{self.median:.3g} {self.unit}".rstrip()
            + f" ({rng}{len(self.values)} repeat{'s' * (len(self.values) > 1)})"
        )


class BenchmarkRecord(BaseModel):
    """The envelope of a stored benchmark result."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    date: str
    git_sha: str
    versions: dict[str, str]
    cpu: dict[str, Any]
    loadavg_before: list[float] = Field(description="1, 5 and 15 min load average when the benchmark started")
    loadavg_after: list[float]
    repeats: int = Field(ge=1, description="repeats of each measured number (interleaved where the benchmark pairs)")
    numbers: list[RepeatedNumber] = Field(default_factory=list)


def loadavg() -> list[float]:
    """1, 5 and 15 min load average of this machine."""
    return [round(x, 2) for x in os.getloadavg()]


def new_record(
    benchmark: str, repeats: int, numbers: Sequence[RepeatedNumber], loadavg_before: Sequence[float]
) -> BenchmarkRecord:
    """The envelope for a benchmark that just finished (date, code, machine and load now)."""
    prov = collect_provenance()
    return BenchmarkRecord(
        benchmark=benchmark,
        date=prov["created_at"],
        git_sha=prov["git_sha"],
        versions=prov["versions"],
        cpu=prov["cpu"],
        loadavg_before=list(loadavg_before),
        loadavg_after=loadavg(),
        repeats=repeats,
        numbers=list(numbers),
    )


def write_result(path: Path, payload: Mapping[str, Any], record: BenchmarkRecord) -> Path:
    """Write `payload` with `record` under `record`, atomically (a killed benchmark leaves the
    previous file whole)."""
    doc = {"record": record.model_dump(mode="json"), **{k: v for k, v in payload.items() if k != "record"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def read_record(path: Path, side: str = "A") -> BenchmarkRecord:
    """The envelope of a stored result; InputError naming what it lacks when it has none."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{side}: cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or "record" not in doc:
        lacks = ", ".join(_lacks(doc if isinstance(doc, dict) else {}))
        raise InputError(f"{side}: {path} has no `record` (stored before it existed; lacks {lacks or 'nothing else'})")
    try:
        return BenchmarkRecord.model_validate(doc["record"])
    except ValidationError as exc:
        where = ".".join(str(x) for x in exc.errors()[0]["loc"])
        raise InputError(f"{side}: {path} record.{where}: {exc.errors()[0]['msg']}") from None


def _lacks(doc: Mapping[str, Any]) -> list[str]:
    if isinstance(doc.get("record"), Mapping):
        return [f for f in REQUIRED if f != "loadavg" and f not in doc["record"]] + (
            [] if "loadavg_before" in doc["record"] else ["loadavg"]
        )
    nested = [doc] + [doc[k] for k in ("machine", "provenance") if isinstance(doc.get(k), Mapping)]
    lacks = [f for f, keys in _LEGACY.items() if not any(k in d for k in keys for d in nested)]
    return [*lacks, "numbers with every repeat (no `record`)"]


def audit_results(folder: Path) -> dict[str, list[str]]:
    """File name -> what it lacks of `REQUIRED` (empty: complete), for every JSON in `folder`."""
    if not folder.is_dir():
        raise InputError(f"--audit: {folder} is not a folder")
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            out[path.name] = ["readable JSON"]
            continue
        out[path.name] = _lacks(doc if isinstance(doc, dict) else {})
    return out

"""Versions of what the store writes (`level.json`, `manifest.json`), and the one place older ones
are upgraded to today's shape before they are validated.

Version 1 (no `schema_version` field; everything stored before the records were typed): a level's
summary (and its transient's, once phases existed) is a flat dict of the `levels` table's columns
(`ttft_s_p90`, `ttft_s_p90_lo`...), `{}` where there is none; a manifest holds today's fields as plain
JSON. Version 2: the summaries are `LevelSummary` records (None where there is none); the manifest
a `StudyManifest`. A file of a later version than this code knows is refused, not guessed at.
"""

from __future__ import annotations

import json
from typing import cast

from cliffbench.bench.metrics.summary import LevelSummary
from cliffbench.config import InputError

__all__ = ["SCHEMA_VERSION", "JsonObject", "upgrade_level", "upgrade_manifest"]

SCHEMA_VERSION = 2

JsonObject = dict[str, object]


def _version(data: JsonObject, what: str) -> int:
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise InputError(f"{what}: schema_version {version!r} is not a version")
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{what}: stored by a newer cliffbench (schema_version {version}); this one reads up to {SCHEMA_VERSION}"
        )
    return version


def _object(text: str, what: str) -> JsonObject:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise InputError(f"{what}: not a JSON object")
    return cast(JsonObject, data)


def upgrade_level(text: str) -> JsonObject:
    """A stored `level.json`, as today's `LevelInfo` reads it."""
    data = _object(text, "level.json")
    if _version(data, "level.json") < 2:
        data = {
            **data,
            "summary": _summary(data, "summary"),
            "transient": _summary(data, "transient"),
            "schema_version": 2,
        }
    return data


def _summary(data: JsonObject, key: str) -> LevelSummary | None:
    """A version 1 summary (flat columns; empty: none) as a record."""
    flat = data.get(key) or {}
    if not isinstance(flat, dict):
        raise InputError(f"level.json: {key} is not an object")
    return LevelSummary.from_columns(flat) if flat else None


def upgrade_manifest(text: str) -> JsonObject:
    """A stored `manifest.json`, as today's `StudyManifest` reads it (version 1 held the same
    fields, untyped: only the version is added)."""
    data = _object(text, "manifest.json")
    if _version(data, "manifest.json") < 2:
        data = {**data, "schema_version": 2}
    return data

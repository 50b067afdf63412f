"""Fixtures of the report tests."""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def no_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every way a section could read the repository raises (and is recorded)."""
    reads: list[str] = []

    def refuse(what: str) -> Callable[..., Any]:
        def raiser(*args: Any, **kwargs: Any) -> Any:
            reads.append(f"{what}{args[:1]}")
            raise AssertionError(f"a section read a file: {what}{args[:1]}")

        return raiser

    monkeypatch.setattr(builtins, "open", refuse("open"))
    monkeypatch.setattr(io, "open", refuse("io.open"))
    for name in ("open", "read_text", "read_bytes", "is_file", "exists", "is_dir", "iterdir", "glob", "stat"):
        monkeypatch.setattr(Path, name, refuse(f"Path.{name}"))
    monkeypatch.setattr(os, "listdir", refuse("os.listdir"))
    monkeypatch.setattr(os, "scandir", refuse("os.scandir"))
    yield reads
    # undo before judging: pytest and its plugins read files while they report a failure
    monkeypatch.undo()
    assert not reads, reads

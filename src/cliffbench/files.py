"""Atomic writes: a file or a folder appears whole under its final name, or not at all.

Each is written under a temporary name in the same folder (so the rename stays on one file
system), flushed to disk, then renamed into place; the parent folder is synced after the rename
so the new name survives a power loss. A failure removes the temporary copy and leaves the old
one as it was. Temporary names carry the writer's pid, so leftovers of a dead writer can be told
from a live one's (`remove_stale`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_file", "remove_stale"]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without error it becomes `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        _fsync(tmp)
        tmp.replace(path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; when the block ends without error it
    replaces `final` (an existing one is moved aside first and deleted after)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync(f)
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        _fsync(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(root: Path, name: str) -> None:
    """Delete the temporary folders of `atomic_dir(root / name)` whose writer died."""
    for prefix in (f".tmp-{name}-", f".old-{name}-"):
        for path in root.glob(f"{prefix}*"):
            pid = path.name[len(prefix) :]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)

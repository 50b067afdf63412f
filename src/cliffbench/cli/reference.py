"""`cliffbench reference export STUDY`: a stored study copied compactly into data/reference/<name>/
(bench/store/reference.py), the reference that `cliffbench compare` and the whitepaper read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cliffbench.bench.progress.terminal import fail, out
from cliffbench.bench.store.reference import DEFAULT_MAX_MB, REFERENCE_DIR, export_reference
from cliffbench.config import InputError

__all__ = ["add_reference_command"]

reference_app = typer.Typer(no_args_is_help=True, help="A reference run shipped in the repository (data/reference/).")


@reference_app.command("export")
def export(
    study: Annotated[str, typer.Argument(help="a stored study name under data/results/")],
    to: Annotated[Path | None, typer.Option(help="the reference folder (default data/reference/STUDY)")] = None,
    max_mb: Annotated[float, typer.Option(help="refuse a copy larger than this (MiB): it goes into git")] = (
        DEFAULT_MAX_MB
    ),
) -> None:
    """Copy a stored study into data/reference/: manifest (machine, versions), every level.json and
    its requests (zstd Parquet), the cliff searches; not the per-token or memory tables. Replaces an
    older copy atomically. Compare with it: cliffbench compare data/reference/STUDY STUDY."""
    try:
        record = export_reference(study, to, max_mb=max_mb)
    except InputError as exc:
        fail(str(exc))
    where = to or REFERENCE_DIR / study
    out.print(
        f"{where}: {record.levels} levels, {record.request_rows} requests, "
        f"{record.size_bytes / 2**20:.2f} MiB (left out: {', '.join(record.left_out)})",
        highlight=False,
        soft_wrap=True,  # one line, whatever the terminal's width: a path must stay whole
    )


def add_reference_command(app: typer.Typer) -> None:
    """Register `reference export` on the `cliffbench` app."""
    app.add_typer(reference_app, name="reference")

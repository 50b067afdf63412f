"""The command line's terminal output (rich): its consoles, one-line errors, the live progress
of a run and the levels table of a stored study."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cliffbench.bench.progress import LiveStats

__all__ = ["ProgressReporter", "err", "fail", "levels_table", "out", "run_progress"]

# a pipe or a log file gets wide lines instead of rich's 80-column default
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
out = Console(width=None if sys.stdout.isatty() else 200)


def fail(msg: str) -> NoReturn:
    """Bad input: one line on stderr, exit code 2."""
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def run_progress(console: Console | None = None) -> Progress:
    """The live display of `cliffbench run` (a bar per level; rich redraws it from its own thread)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
    )
    return Progress(*columns, console=console or err, transient=True)


class ProgressReporter:
    """One rich progress bar per level, with live TTFT p50 and output tok/s."""

    def __init__(self, progress: Progress) -> None:
        self.p = progress
        self.task: Any = None
        self.live = LiveStats()

    def level_started(self, key: str, n_requests: int) -> None:
        self.task = self.p.add_task(key, total=n_requests, stats="")
        self.live = LiveStats()

    def request_done(self, rec: Any) -> None:
        self.live.add(rec)
        self.p.update(self.task, advance=1, stats=self.live.text())

    def level_finished(self, info: Any) -> None:
        if info.status != "ok":
            err.print(f"[yellow]level {info.level_key} failed:[/] {info.error.splitlines()[0][:300]}")
        if self.task is not None:
            self.p.update(self.task, visible=False)
            self.task = None
        s = info.summary
        if info.status == "ok":
            out.print(
                f"{info.level_key}: {s.get('output_tok_s', float('nan')):.1f} out tok/s, "
                f"TTFT p50 {s.get('ttft_s_p50', float('nan')):.3f}s p99 {s.get('ttft_s_p99', float('nan')):.3f}s, "
                f"ok {s.get('n_ok')}/{s.get('n_requests')}" + ("  [harness lag flagged]" if info.lag_flagged else ""),
                soft_wrap=True,
            )

    def level_skipped(self, key: str) -> None:
        out.print(f"[dim]{key}: stored, skipped (use --force to redo)[/]")


def levels_table(study: str) -> Table:
    """The levels of a stored study, one row per engine x level set x users."""
    from cliffbench.bench.store import load_results

    lv = load_results(study).levels
    cols = [
        ("engine", "engine"),
        ("set", "level_set"),
        ("users", "concurrency"),
        ("status", "status"),
        ("ok", "n_ok"),
        ("failed", "n_failed"),
        ("out tok/s", "output_tok_s"),
        ("TTFT p50 s", "ttft_s_p50"),
        ("TTFT p99 s", "ttft_s_p99"),
        ("TPOT p50 s", "tpot_s_p50"),
        ("achieved conc.", "achieved_concurrency"),
        ("lag p99 ms", "lag_p99_s"),
        ("GIL wait p99 ms", "thread_wait_p99_s"),
    ]
    table = Table(title=f"study {study}")
    for title, _ in cols:
        table.add_column(title, justify="right")
    lv = lv.sort_values(["engine", "level_set", "concurrency"], na_position="last")
    for _, row in lv.iterrows():
        cells = []
        for _, c in cols:
            v = row.get(c)
            if c in ("lag_p99_s", "thread_wait_p99_s") and v is not None:
                v = v * 1e3
            cells.append(f"{v:.3g}" if isinstance(v, float) else "" if v is None else str(v))
        table.add_row(*cells)
    return table

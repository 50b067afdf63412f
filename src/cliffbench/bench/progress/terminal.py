"""The command line's terminal output (rich): its consoles, one-line errors, the live progress
of a run (in this process: `ProgressReporter`; in notebook 10's kernel, read from its progress
file: `StudyWatcher`) and the levels table of a stored study."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cliffbench.bench.progress.reporter import LevelTask, LiveStats, StudyTracker

__all__ = [
    "ProgressReporter",
    "StudyWatcher",
    "clock_text",
    "displayed_eta_s",
    "err",
    "fail",
    "levels_table",
    "out",
    "progress_description",
    "read_progress",
    "run_progress",
]

logger = logging.getLogger(__name__)

# a pipe or a log file gets wide lines instead of rich's 80-column default
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
out = Console(width=None if sys.stdout.isatty() else 200)


def fail(msg: str) -> NoReturn:
    """Bad input: one line on stderr, exit code 2."""
    err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)  # `.[cluster]` is no markup
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


def clock_text(seconds: float) -> str:
    """`12:34`, or `1:02:03` from an hour on."""
    m, sec = divmod(max(0, round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def eta_text(eta_s: float | None) -> str:
    return "ETA ?" if eta_s is None else f"ETA {clock_text(eta_s)}"


def _users(users: int | None, rate_rps: float | None) -> str:
    if users is not None:
        return f"{users} user" + ("" if users == 1 else "s")
    return f"{rate_rps:g} req/s" if rate_rps is not None else ""


class ProgressReporter:
    """One rich progress bar per level (`level i/N <key>`), with live TTFT p50, output tok/s and
    the study's ETA (`bench.progress.reporter.Eta`, once the sweep has planned the study)."""

    def __init__(self, progress: Progress, clock: Callable[[], float] = time.monotonic) -> None:
        self.p = progress
        self.task: Any = None
        self.live = LiveStats()
        self.clock = clock
        self.tracker = StudyTracker()

    def _eta(self) -> str:
        return eta_text(self.tracker.eta_s(self.clock())) if self.tracker.tasks else ""

    def study_planned(self, tasks: list[LevelTask]) -> None:
        self.tracker.planned(tasks, self.clock())

    def level_started(self, key: str, n_requests: int) -> None:
        self.tracker.started(key, self.clock())
        if self.task is not None:  # a busy level measured again: a fresh bar
            self.p.update(self.task, visible=False)
        i = self.tracker.index(key)
        desc = f"level {i}/{self.tracker.n} {key}" if i is not None else key
        self.task = self.p.add_task(desc, total=n_requests, stats=self._eta())
        self.live = LiveStats()

    def request_done(self, rec: Any) -> None:
        self.live.add(rec)
        self.p.update(self.task, advance=1, stats="  ".join(x for x in (self.live.text(), self._eta()) if x))

    def level_finished(self, info: Any) -> None:
        self.tracker.finished(info.level_key, self.clock())
        if info.status != "ok":
            err.print(f"[yellow]level {info.level_key} failed:[/] {info.error.splitlines()[0][:300]}")
        if self.task is not None:
            self.p.update(self.task, visible=False)
            self.task = None
        s = info.summary
        i = self.tracker.index(info.level_key)
        where = f"  [level {i}/{self.tracker.n}, {self._eta()}]" if i is not None else ""
        if info.status == "ok":
            out.print(
                f"{info.level_key}: {s.get('output_tok_s', float('nan')):.1f} out tok/s, "
                f"TTFT p50 {s.get('ttft_s_p50', float('nan')):.3f}s p90 {s.get('ttft_s_p90', float('nan')):.3f}s, "
                f"ok {s.get('n_ok')}/{s.get('n_requests')}"
                + ("  [harness lag flagged]" if info.lag_flagged else "")
                + where,
                soft_wrap=True,
                markup=False,
            )

    def level_skipped(self, key: str) -> None:
        self.tracker.skipped(key, self.clock())
        out.print(f"[dim]{key}: stored, skipped (use --force to redo)[/]")

    def search_finished(self, engine: str, level_set: str) -> None:
        self.tracker.search_finished(engine, level_set, self.clock())  # its probes' stand-ins left go


# -- a study run by another process (notebook 10 under papermill), from its progress file ---------


def read_progress(path: Path, since_unix: float = 0.0) -> dict[str, Any] | None:
    """The progress file `path` (bench.progress.reporter.ProgressFile), or None while it is missing,
    unreadable, or older than `since_unix` (left by an earlier run)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or caught half-written (JSONDecodeError, UnicodeDecodeError)
        return None
    if not isinstance(state, dict) or not isinstance(state.get("updated_at"), int | float):
        return None
    return state if state["updated_at"] >= since_unix else None


def progress_description(state: Mapping[str, Any]) -> str:
    """The bar's text for a progress file's contents, e.g.
    `level 7/96  vllm  chat  16 users  repeat 2/3  412 tok/s`."""
    n, done = state.get("n_levels") or 0, state.get("done") or 0
    if n and done >= n:
        return f"study done: {n} levels"
    index = state.get("index")
    parts = [f"level {index if index is not None else done + 1}/{n}"]
    parts += [str(state[k]) for k in ("engine", "level_set") if state.get(k)]
    parts.append(_users(state.get("users"), state.get("rate_rps")))
    if state.get("repeat") is not None:
        parts.append(f"repeat {state['repeat']}/{state.get('repeats') or '?'}")
    if not state.get("running"):
        parts.append("starting")
    elif state.get("tok_s") is not None:
        parts.append(f"{state['tok_s']:.0f} tok/s")
    return "  ".join(p for p in parts if p)


def displayed_eta_s(state: Mapping[str, Any], now_unix: float) -> float | None:
    """The file's ETA, counted down since it was written by as much as the running level has left
    (a file is rewritten only on events, and between them the level in progress goes on)."""
    eta = state.get("eta_s")
    if eta is None:
        return None
    if state.get("running"):
        age = max(0.0, now_unix - state.get("updated_at", now_unix))
        eta -= min(age, state.get("level_left_s") or 0.0)
    return float(max(0.0, eta))


def _times(state: Mapping[str, Any], now_unix: float) -> str:
    elapsed = state.get("elapsed_s") or 0.0
    n, done = state.get("n_levels") or 0, state.get("done") or 0
    if not (n and done >= n):
        elapsed += max(0.0, now_unix - state.get("updated_at", now_unix))
    return f"{clock_text(elapsed)} elapsed  {eta_text(displayed_eta_s(state, now_unix))}"


class StudyWatcher:
    """While another process runs a study, show its progress file `path` on `console` (stderr by
    default): a daemon thread reads it every `interval_s`. On a terminal, one live bar (done/N,
    `progress_description`, elapsed and ETA); elsewhere (a pipe, a log file), a plain line per
    finished level. A missing, stale or half-read file is skipped quietly. A context manager: on
    exit (normal, error or Ctrl-C) the thread is stopped and joined, and once every level ended,
    one line says how far off the ETA was after a quarter of the study."""

    def __init__(
        self,
        path: Path,
        console: Console | None = None,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.console = console or err
        self.interval_s = interval_s
        self.clock = clock
        self.since = 0.0
        self.state: dict[str, Any] | None = None
        self.printed = 0  # history entries printed as plain lines
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> StudyWatcher:
        self.since = self.clock()
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[times]}"),
                console=self.console,
                transient=True,
            )
            self.task = self.progress.add_task("waiting for the study to start", total=None, times="")
            self.progress.start()
        self.thread = threading.Thread(target=self._loop, name="study-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop.set()
        try:
            if self.thread is not None:
                self.thread.join(timeout=5)
            self.poll()
        finally:
            if self.progress is not None:
                self.progress.stop()
        if exc_type is None:
            self._summary()

    def _loop(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # a file of an unexpected shape: the display must never stop the study
                logger.debug("progress display failed", exc_info=True)

    def poll(self) -> None:
        """Read the file once and update the bar (or print the levels finished since the last poll)."""
        state = read_progress(self.path, self.since)
        if state is None:
            return
        self.state = state
        now = self.clock()
        n, done = state.get("n_levels") or 0, state.get("done") or 0
        if self.progress is not None and self.task is not None:
            self.progress.update(
                self.task,
                description=progress_description(state),
                total=n or None,
                completed=done,
                times=_times(state, now),
            )
            return
        history = state.get("history") or []
        for entry in history[self.printed :]:
            elapsed, eta = entry.get("elapsed_s") or 0.0, entry.get("eta_s_before_next")
            self.console.print(
                f"level {entry.get('index') or entry.get('done')}/{n} done: {entry.get('key')}  "
                f"{clock_text(elapsed)} elapsed  {eta_text(eta)}  ({entry.get('done')}/{n} ended)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        self.printed = len(history)

    def _summary(self) -> None:
        e = (self.state or {}).get("eta_error")
        if not e:
            return
        self.console.print(
            f"study took {clock_text(e['actual_total_s'])}; the ETA at {clock_text(e['at_elapsed_s'])} "
            f"said {clock_text(e['predicted_total_s'])} ({e['error_pct']:+.1f}%)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def levels_table(study: str) -> Table:
    """The levels of a stored study, one row per engine x level set x users."""
    from cliffbench.bench.store.levels import load_results

    res = load_results(study)
    lv = res.levels
    cols = [
        ("engine", "engine"),
        ("set", "level_set"),
        ("users", "concurrency"),
        ("rep", "repeat"),
        ("status", "status"),
        ("ok", "n_ok"),
        ("failed", "n_failed"),
        ("out tok/s", "output_tok_s"),
        ("TTFT p50 s", "ttft_s_p50"),
        ("TTFT p90 s", "ttft_s_p90"),
        ("TPOT p50 s", "tpot_s_p50"),
        ("achieved conc.", "achieved_concurrency"),
        ("lag p99 ms", "lag_p99_s"),
        ("GIL wait p99 ms", "thread_wait_p99_s"),
        ("foreign cores", "foreign_cores"),
        ("busy", "busy_flagged"),
    ]
    damaged = "; ".join(f"{k}: {why}" for k, why in res.damaged.items())
    bad = lv[lv["status"] != "ok"]
    failed = "\n".join(
        f"failed {k}: {(str(e).splitlines() or [''])[0][:200]}"
        for k, e in zip(bad["level_key"], bad["error"], strict=True)
    )
    caption = "\n".join(x for x in (failed, f"left out, damaged on disk: {damaged}" if damaged else "") if x)
    table = Table(title=f"study {study}", caption=caption or None)
    for title, _ in cols:
        table.add_column(title, justify="right")
    if "repeat" in lv:
        lv = lv.assign(repeat=lv["repeat"] + 1)  # 1-based, as the progress line counts them
    lv = lv.sort_values(["engine", "level_set", "concurrency", "repeat"], na_position="last")
    for _, row in lv.iterrows():
        cells = []
        for _, c in cols:
            v = row.get(c)
            if c in ("lag_p99_s", "thread_wait_p99_s") and v is not None:
                v = v * 1e3
            cells.append(f"{v:.3g}" if isinstance(v, float) else "" if v is None else str(v))
        table.add_row(*cells)
    return table

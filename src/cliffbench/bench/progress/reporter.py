"""Progress of a running study: the reporter interface the sweep calls, the notebook's bars, the
ETA (`Eta`, `StudyTracker`) and the progress file another process (`cliffbench report`) shows."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cliffbench.bench.load.driver import RequestRecord
from cliffbench.bench.progress.eta import Eta, LevelTask, StudyTracker, eta_error
from cliffbench.bench.store.levels import LevelInfo
from cliffbench.config import RESULTS_DIR
from cliffbench.files import atomic_file

__all__ = [
    "Eta",
    "LevelTask",
    "LiveStats",
    "ProgressFile",
    "Reporter",
    "StudyTracker",
    "TeeReporter",
    "TqdmReporter",
    "eta_error",
    "progress_path",
    "search_finished",
]

logger = logging.getLogger(__name__)


class Reporter(Protocol):
    def study_planned(self, tasks: list[LevelTask]) -> None: ...
    def level_started(self, key: str, n_requests: int) -> None: ...
    def request_done(self, record: RequestRecord) -> None: ...
    def level_finished(self, info: LevelInfo) -> None: ...
    def level_skipped(self, key: str) -> None: ...


class LiveStats:
    """Running TTFT p50 and output tok/s of one level's measured requests, for progress bars.
    (Display only: the stored summaries come from `metrics.summarize_level`.)"""

    def __init__(self) -> None:
        self.ttfts_s: list[float] = []
        self.tokens = 0
        self.t0_s: float | None = None
        self.t1_s = 0.0

    def add(self, record: RequestRecord) -> None:
        if record.warmup or record.status != "ok":
            return
        self.ttfts_s.append(record.token_times_s[0] - record.t_submit_s)
        self.tokens += record.output_tokens
        self.t0_s = record.t_submit_s if self.t0_s is None else min(self.t0_s, record.t_submit_s)
        self.t1_s = max(self.t1_s, record.token_times_s[-1])

    def tok_s(self) -> float | None:
        """Output tokens per second of the measured requests so far (None before two timestamps)."""
        if not self.ttfts_s or self.t0_s is None or self.t1_s <= self.t0_s:
            return None
        return self.tokens / (self.t1_s - self.t0_s)

    def text(self) -> str:
        tok_s = self.tok_s()
        if tok_s is None:
            return ""
        return f"TTFT p50 {np.median(self.ttfts_s):.3f}s  {tok_s:.1f} tok/s"


class TqdmReporter:
    """Progress for notebooks: a tqdm bar per level with live TTFT p50 and output tok/s."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.live = LiveStats()

    def study_planned(self, tasks: list[LevelTask]) -> None:
        pass

    def level_started(self, key: str, n_requests: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=n_requests, desc=key, leave=False)
        self.live = LiveStats()

    def request_done(self, record: RequestRecord) -> None:
        self.live.add(record)
        if self.bar is not None:
            self.bar.set_postfix_str(self.live.text())
            self.bar.update(1)

    def level_finished(self, info: LevelInfo) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        from tqdm.auto import tqdm

        s = info.summary
        state = "ok" if info.status == "ok" else f"FAILED: {info.error.splitlines()[0][:200]}"
        tqdm.write(
            f"{info.level_key}: {state} {s.get('output_tok_s', float('nan')):.1f} tok/s, "
            f"TTFT p50 {s.get('ttft_s_p50', float('nan')):.3f}s"
        )

    def level_skipped(self, key: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(f"{key}: stored, skipped")


class TeeReporter:
    """A reporter that forwards every call to each of `reporters`, in order."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def study_planned(self, tasks: list[LevelTask]) -> None:
        for r in self.reporters:
            r.study_planned(tasks)

    def level_started(self, key: str, n_requests: int) -> None:
        for r in self.reporters:
            r.level_started(key, n_requests)

    def request_done(self, record: RequestRecord) -> None:
        for r in self.reporters:
            r.request_done(record)

    def level_finished(self, info: LevelInfo) -> None:
        for r in self.reporters:
            r.level_finished(info)

    def level_skipped(self, key: str) -> None:
        for r in self.reporters:
            r.level_skipped(key)

    def search_finished(self, engine: str, level_set: str) -> None:
        for r in self.reporters:
            search_finished(r, engine, level_set)


def search_finished(reporter: object, engine: str, level_set: str) -> None:
    """Tell `reporter` that `engine`'s search of `level_set` ended (its probes' stand-ins left in
    the plan are dropped), where it has the optional `search_finished` method."""
    hook = getattr(reporter, "search_finished", None)
    if callable(hook):
        hook(engine, level_set)


# -- the progress file ---------------------------------------------------------------------------


def progress_path(study: str) -> Path:
    """Where notebook 10 keeps the progress of study `study` (for `cliffbench report` to show)."""
    return RESULTS_DIR / study / "progress.json"


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


class ProgressFile:
    """A reporter that keeps `path` describing where the study stands, for another process to show
    (`cliffbench report` draws its terminal bar from it). The file is JSON, replaced atomically:

    started_at    ISO time (UTC) the study was planned
    updated_at    unix time of this write
    n_levels      levels in the plan (stored ones too); done: how many ended (finished or skipped)
    running       a level is in progress; if false the level fields describe the next to run
    index         1-based place of that level in the plan; key, engine, level_set, users
                  (concurrency), rate_rps, repeat (1-based) of repeats
    tok_s         live output tok/s of the level in progress (null before it is known)
    elapsed_s     seconds since the study was planned
    eta_s         seconds left (`Eta`; null: unknown); level_left_s: the running level's share
    history       one entry per finished level: key, index, elapsed_s, eta_s_before_next (the
                  ETA right after it finished), done
    eta_error     once every level ended: `eta_error(history, elapsed_s)` (null if not computable)

    Written on every level event, and after a request at most once per `min_interval_s`, by a
    writer thread (`background`; else in the caller). A failed write is logged once and the study
    goes on (the file is display only)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        min_interval_s: float = 1.0,
        background: bool = True,
    ) -> None:
        self.path = path
        self.writer = _LatestWriter(self._store) if background else None
        self.clock = clock
        self.wall_clock = wall_clock
        self.min_interval_s = min_interval_s
        self.tracker = StudyTracker()
        self.live = LiveStats()
        self.started_at: str | None = None
        self.history: list[dict[str, Any]] = []
        self.last_write: float | None = None
        self.warned = False

    def _begin(self) -> float:
        now = self.clock()
        if self.started_at is None:
            self.started_at = dt.datetime.fromtimestamp(self.wall_clock(), dt.UTC).isoformat(timespec="seconds")
        return now

    def study_planned(self, tasks: list[LevelTask]) -> None:
        now = self._begin()
        self.tracker.planned(tasks, now)
        self.write(now)

    def level_started(self, key: str, n_requests: int) -> None:
        now = self._begin()
        self.tracker.started(key, now)
        self.live = LiveStats()
        self.write(now)

    def request_done(self, record: RequestRecord) -> None:
        self.live.add(record)
        now = self.clock()
        if self.last_write is None or now - self.last_write >= self.min_interval_s:
            self.write(now)

    def level_finished(self, info: LevelInfo) -> None:
        now = self._begin()
        tr = self.tracker
        tr.finished(info.level_key, now)
        self.history.append(
            {
                "key": info.level_key,
                "index": tr.index(info.level_key),
                "elapsed_s": _r(tr.elapsed_s(now)),
                "eta_s_before_next": _r(tr.eta_s(now)),
                "done": tr.done,
            }
        )
        self.write(now)
        if tr.done >= tr.n:
            self.close()  # the last state must be on disk before the notebook ends

    def level_skipped(self, key: str) -> None:
        now = self._begin()
        self.tracker.skipped(key, now)
        self.write(now)

    def search_finished(self, engine: str, level_set: str) -> None:
        now = self._begin()
        self.tracker.search_finished(engine, level_set, now)
        self.write(now)

    def state(self, now: float) -> dict[str, Any]:
        """What the file holds at `now` (the clock's seconds)."""
        tr = self.tracker
        task = tr.task()
        running = tr.current is not None
        state: dict[str, Any] = {
            "started_at": self.started_at,
            "updated_at": round(self.wall_clock(), 3),
            "n_levels": tr.n,
            "done": tr.done,
            "running": running,
            "index": tr.index(task.key) if task else None,
            "key": task.key if task else tr.current,
            "engine": task.engine if task else None,
            "level_set": task.level_set if task else None,
            "users": task.concurrency if task else None,
            "rate_rps": task.rate_rps if task else None,
            "repeat": task.repeat + 1 if task else None,
            "repeats": tr.repeats,
            "tok_s": _r(self.live.tok_s(), 1) if running else None,
            "elapsed_s": _r(tr.elapsed_s(now)),
            "eta_s": _r(tr.eta_s(now)),
            "level_left_s": _r(tr.level_left_s(now)),
            "history": self.history,
            "eta_error": None,
        }
        if tr.done >= tr.n and self.history:
            with contextlib.suppress(ValueError):  # no entry with an ETA past a quarter
                state["eta_error"] = eta_error(self.history, self.history[-1]["elapsed_s"])
        return state

    def write(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.last_write = now
        try:
            text = json.dumps(self.state(now), allow_nan=False)
        except ValueError as exc:
            self._warn(exc)
            return
        if self.writer is None:
            self._store(text)
            return
        # off the event loop: a write with its fsyncs took 2-6 ms here, 20 ms beside a busy vLLM,
        # and once a second that was the harness lag p99 of short levels (benchmarks/progress_lag.py)
        self.writer.put(text)

    def _store(self, text: str) -> None:
        try:
            with atomic_file(self.path) as tmp:
                tmp.write_text(text)
        except OSError as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self.warned:
            self.warned = True
            logger.warning("progress file %s not written: %s", self.path, exc)

    def flush(self) -> None:
        """Wait until the last state handed to the writer thread is on disk."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Write what is pending and end the writer thread (later writes go straight to disk)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _LatestWriter:
    """A daemon thread that stores the latest text it was given; older pending ones are dropped
    (the file only ever needs the newest state)."""

    def __init__(self, store: Callable[[str], None]) -> None:
        self.store = store
        self.cond = threading.Condition()
        self.pending: str | None = None
        self.busy = False
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="cliffbench-progress-file", daemon=True)
        self.thread.start()

    def put(self, text: str) -> None:
        with self.cond:
            self.pending = text
            self.cond.notify_all()

    def flush(self) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.pending is None and not self.busy, timeout=10)

    def close(self) -> None:
        self.flush()
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.pending is not None or self.stopping)
                if self.pending is None:
                    return
                text, self.pending, self.busy = self.pending, None, True
            try:
                if text is not None:
                    self.store(text)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

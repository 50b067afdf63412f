"""Where a running study stands and when it will end: the plan of levels, and an ETA model that
learns from the levels already measured (no clock inside: callers pass the times)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["STAND_IN", "Eta", "LevelTask", "StudyTracker", "eta_error"]

STAND_IN = "__search~"  # in the key of a search probe's stand-in: <engine>__<set>__search~<n>


@dataclass(frozen=True)
class LevelTask:
    """One level of one repeat of one engine, in the order the sweep will run it."""

    key: str  # the stored level key (unique per engine, level, repeat)
    engine: str
    level_set: str
    concurrency: int | None
    rate_rps: float | None
    repeat: int  # 0-based
    n_requests: int  # measured + warm-up requests
    planned_tokens: int  # prompt + output tokens the level asks for (its share of the work)
    stored: bool  # already stored: will be skipped


# -- the ETA -------------------------------------------------------------------------------------

_LevelId = tuple[str, str, int | None, float | None]


def _level_id(task: LevelTask) -> _LevelId:
    return (task.engine, task.level_set, task.concurrency, task.rate_rps)


class Eta:
    """The seconds a study has left, predicted from the walls of the levels that finished.

    Pure: the caller says which levels ended and how long each took, and how long the level in
    progress has run; nothing here reads a clock. Each level still to run (planned, not stored,
    not finished or skipped) is predicted by the first rule that applies:

    1. the same level (engine, level set, users, rate) finished in another (earlier) repeat: the
       mean of those walls;
    2. its engine finished levels: planned_tokens / the engine's rate, i.e. the planned tokens of
       the engine's finished levels over the sum of their walls;
    3. any level finished: planned_tokens / the rate over all finished levels;
    4. nothing finished (with a positive wall): unknown, and so is the whole ETA (None).

    The level in progress adds its predicted wall minus the seconds spent in it, floored at 0 (a
    level running past its prediction adds nothing). The walls are whatever the caller measures:
    `StudyTracker` gives each level's own time, so time between levels (an engine starting) is
    not predicted and the ETA runs low while engines are still to start.
    """

    def __init__(self, tasks: Sequence[LevelTask]) -> None:
        self.tasks = {t.key: t for t in tasks}
        self.todo = [t for t in tasks if not t.stored]  # in plan order
        self.walls: dict[str, float] = {}  # key -> measured wall of a finished level
        self.ended: set[str] = set()  # finished or skipped
        self._predicted: dict[str, float | None] = {}  # caches, cleared whenever a level ends
        self._rest: dict[str | None, float | None] = {}

    def finished(self, key: str, wall_s: float) -> None:
        """Level `key` finished after `wall_s` seconds (ignored for the predictions if not planned)."""
        self.ended.add(key)
        if key in self.tasks:
            self.walls[key] = max(0.0, wall_s)
        self._predicted.clear()
        self._rest.clear()

    def skipped(self, key: str) -> None:
        """Level `key` will not run (stored): it adds nothing and measures nothing."""
        self.ended.add(key)
        self._rest.clear()

    def _rate(self, engine: str | None) -> float | None:
        """Planned tokens per wall second over the finished levels (of `engine`, or of all)."""
        tokens, wall = 0, 0.0
        for key, w in self.walls.items():
            task = self.tasks[key]
            if engine is None or task.engine == engine:
                tokens += task.planned_tokens
                wall += w
        return tokens / wall if wall > 0 and tokens > 0 else None

    def predict(self, task: LevelTask) -> float | None:
        """The predicted wall of `task` in seconds (None: nothing to go by yet)."""
        if task.key in self._predicted:
            return self._predicted[task.key]
        level = _level_id(task)
        same = [w for key, w in self.walls.items() if _level_id(self.tasks[key]) == level]
        predicted: float | None = None
        if same:
            predicted = sum(same) / len(same)
        else:
            for engine in (task.engine, None):
                rate = self._rate(engine)
                if rate is not None:
                    predicted = task.planned_tokens / rate
                    break
        self._predicted[task.key] = predicted
        return predicted

    def level_left_s(self, current: str, elapsed_s: float) -> float | None:
        """What is left of the level in progress: its predicted wall minus `elapsed_s`, floored at 0."""
        task = self.tasks.get(current)
        if task is None or current in self.ended:
            return 0.0
        predicted = self.predict(task)
        return None if predicted is None else max(0.0, predicted - elapsed_s)

    def remaining_s(self, current: str | None = None, elapsed_s: float = 0.0) -> float | None:
        """Seconds left: every level still to run, plus what is left of `current` (in progress for
        `elapsed_s` seconds). None while any of them cannot be predicted."""
        if current not in self._rest:
            rest = [self.predict(t) for t in self.todo if t.key not in self.ended and t.key != current]
            self._rest[current] = None if None in rest else sum((x for x in rest if x is not None), 0.0)
        total = self._rest[current]
        if total is None or current is None:
            return total
        left = self.level_left_s(current, elapsed_s)
        return None if left is None else total + left


class StudyTracker:
    """Where a study stands, from the reporter calls plus the times its owner passes (seconds on
    any monotonic clock): the plan, the level in progress, the levels that ended, elapsed time and
    the ETA (`Eta`). A level's wall runs from its first `level_started` (a busy level measured again
    keeps counting) to its `level_finished`; a level finished without starting (its engine did not
    start) counts the time since the previous level ended."""

    def __init__(self) -> None:
        self.tasks: list[LevelTask] = []
        self.position: dict[str, int] = {}  # key -> 0-based place in the plan
        self.eta = Eta([])
        self.t0: float | None = None  # the study started (planned, or its first event)
        self.mark = 0.0  # the last level ended (or the study started)
        self.current: str | None = None
        self.level_t0 = 0.0
        self.ended: set[str] = set()

    def _begin(self, now: float) -> None:
        if self.t0 is None:
            self.t0 = self.mark = now

    def planned(self, tasks: Sequence[LevelTask], now: float) -> None:
        self._begin(now)
        self.tasks = list(tasks)
        self.position = {t.key: i for i, t in enumerate(self.tasks)}
        self.eta = Eta(self.tasks)

    def started(self, key: str, now: float) -> None:
        self._begin(now)
        if key != self.current:
            self.current, self.level_t0 = key, now

    def finished(self, key: str, now: float) -> None:
        self._begin(now)
        t0 = self.level_t0 if key == self.current else self.mark
        key = self._stand_in(key)
        self.eta.finished(key, now - t0)
        self.ended.add(key)
        self.current, self.mark = None, now

    def _stand_in(self, key: str) -> str:
        """A search's probe (not in the plan) ends the next stand-in of its engine and level set
        (`bench.search.plan`); any other key is itself."""
        if key in self.position:
            return key
        prefix = key.rsplit("__", 1)[0] + STAND_IN
        return next((t.key for t in self.tasks if t.key.startswith(prefix) and t.key not in self.ended), key)

    def search_finished(self, engine: str, level_set: str, now: float) -> None:
        """`engine`'s search of `level_set` ended: its stand-ins left are dropped from the plan."""
        prefix = f"{engine}__{level_set}{STAND_IN}"
        for t in self.tasks:
            if t.key.startswith(prefix) and t.key not in self.ended:
                self.skipped(t.key, now)

    def skipped(self, key: str, now: float) -> None:
        self._begin(now)
        self.eta.skipped(key)
        self.ended.add(key)
        self.mark = now

    @property
    def n(self) -> int:
        """Levels in the study (those planned; counted as they come if nothing was planned)."""
        return max(len(self.tasks), len(self.ended) + (self.current is not None))

    @property
    def done(self) -> int:
        return len(self.ended)

    @property
    def repeats(self) -> int:
        return max((t.repeat for t in self.tasks), default=0) + 1

    def elapsed_s(self, now: float) -> float:
        return 0.0 if self.t0 is None else now - self.t0

    def in_level_s(self, now: float) -> float:
        return now - self.level_t0 if self.current is not None else 0.0

    def eta_s(self, now: float) -> float | None:
        return self.eta.remaining_s(self.current, self.in_level_s(now))

    def level_left_s(self, now: float) -> float | None:
        return 0.0 if self.current is None else self.eta.level_left_s(self.current, self.in_level_s(now))

    def task(self) -> LevelTask | None:
        """The level in progress, or between levels the next one to run (None: not in the plan)."""
        if self.current is not None:
            i = self.position.get(self.current)
            return None if i is None else self.tasks[i]
        return next((t for t in self.tasks if not t.stored and t.key not in self.ended), None)

    def index(self, key: str) -> int | None:
        """1-based place of level `key` in the plan."""
        i = self.position.get(key)
        return None if i is None else i + 1


def eta_error(history: Sequence[Mapping[str, Any]], total_s: float, at_fraction: float = 0.25) -> dict[str, float]:
    """How far off the ETA was: the prediction made at the first `history` entry (of a progress
    file) whose elapsed_s >= at_fraction * total_s and that has an ETA, against the study's actual
    `total_s`. error_s > 0: the ETA said the study would take longer than it did. ValueError if
    no entry qualifies."""
    if total_s <= 0:
        raise ValueError(f"total_s must be positive, got {total_s}")
    for entry in history:
        eta = entry.get("eta_s_before_next")
        if entry["elapsed_s"] >= at_fraction * total_s and eta is not None:
            predicted = entry["elapsed_s"] + eta
            error = predicted - total_s
            return {
                "at_elapsed_s": entry["elapsed_s"],
                "predicted_total_s": round(predicted, 3),
                "actual_total_s": total_s,
                "error_s": round(error, 3),
                "error_pct": round(100.0 * error / total_s, 2),
            }
    raise ValueError(f"no history entry at or past {at_fraction:.0%} of {total_s:g} s has an ETA")

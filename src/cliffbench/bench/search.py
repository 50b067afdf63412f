"""The cliff search: the highest load at which an engine still meets the SLO, as an interval.

A grid reads the cliff off between two of its points ("between 4 and 8 users"). The search
narrows that down the way MLPerf's server scenario finds its highest rate: bracket by doubling
from `low` until a level misses (or `high` is reached), then bisect between the last level that
meets and the first that does not, until the bracket is `resolution` wide. It assumes that the
verdict is monotone in the load (meeting at 12 users implies meeting at 11); a level that breaks
this is kept in the path and named in the result, never hidden.

Each probe is judged like any level (`repeats.SloJudge`): by the interval of the SLO percentile
over every submitted request of all its repeats. A probe whose interval straddles the budget is
measured again, one repeat at a time, up to `max_repeats`; one still straddling it is
*undecided*: its percentile is within noise of the budget, so the cliff is at that load, and the
search treats it as not meeting (the bracket's upper end) and names it in the result.

Levels measured already (the grid of the same level set, or the stored probes of an earlier
run) are probes the search does not pay for: doubling from 1 user visits 1, 2, 4, 8, ... which is
the default grid. The state machine here measures nothing; `bench.sweep` drives it.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cliffbench.bench.search_spec import SearchSpec
from cliffbench.files import atomic_file

__all__ = ["CliffFound", "CliffSearch", "SearchStep", "read_searches", "search_path", "write_search"]


class SearchStep(BaseModel):
    """One visit of the search to a load: its pooled verdict after `repeats` repeats."""

    x: float
    verdict: str
    repeats: int
    source: str = Field(description="'grid': measured by the level set's grid; 'probe': by the search")


class CliffFound(BaseModel):
    """What a search found for one engine and level set (stored as `searches/<engine>__<set>.json`)."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    study: str
    engine: str
    level_set: str
    over: str
    low: float
    high: float
    resolution: float
    slo: str = Field(description="the SLO it judged, e.g. 'TTFT p90 <= 2 s and TPOT p50 <= 0.25 s'")
    confidence: float = Field(description="confidence of each verdict's percentile interval")
    meets_up_to: float | None = Field(description="highest load that met the SLO (None: not even `low`)")
    first_miss: float | None = Field(description="lowest load above it that missed (None: none up to `high`)")
    undecided: list[float] = Field(default_factory=list)
    not_monotone: list[float] = Field(default_factory=list, description="loads that met above one that missed")
    path: list[SearchStep] = Field(default_factory=list)
    probes_measured: int = Field(0, description="level runs the search itself measured (repeats included)")
    wall_s: float = math.nan

    def unit(self) -> str:
        return "users" if self.over == "users" else "req/s"

    def _x(self, x: float) -> str:
        return f"{x:g}" if self.over == "users" else f"{x:.3g}"

    def text(self) -> str:
        """'meets the SLO up to 11 users, is undecided at 12 and fails at 13 (95% intervals)'."""
        u, conf = self.unit(), f"{self.confidence:.0%} intervals"
        if self.meets_up_to is None:
            if self.first_miss is None:
                return f"is undecided already at {self._x(self.low)} {u}, the search's lowest load ({conf})"
            return f"fails already at {self._x(self.first_miss)} {u}, the search's lowest load ({conf})"
        if self.first_miss is None:
            if self.undecided:
                cut = ", ".join(self._x(x) for x in self.undecided)
                return (
                    f"meets the SLO up to {self._x(self.meets_up_to)} {u} and is undecided at {cut}, up to the "
                    f"search's ceiling ({conf})"
                )
            top = self._x(self.meets_up_to)
            return f"meets the SLO up to {top} {u}, the search's ceiling: the cliff is higher ({conf})"
        between = [x for x in self.undecided if x < self.first_miss]
        undecided = f", is undecided at {', '.join(self._x(x) for x in between)}" if between else ""
        return (
            f"meets the SLO up to {self._x(self.meets_up_to)} {u}{undecided} and fails at "
            f"{self._x(self.first_miss)} ({conf})"
        )

    def path_text(self) -> str:
        """'1 meets, 2 meets, 4 misses, 3 meets' (grid levels marked g)."""
        return ", ".join(
            f"{self._x(s.x)}{'g' if s.source == 'grid' else ''} {s.verdict}"
            + (f" ({s.repeats} rep)" if s.source == "probe" else "")
            for s in self.path
        )


class CliffSearch:
    """Bracket, then bisect. `record` what a load gave; `next_x` says where to look next (None:
    done). A load recorded 'uncertain' with fewer than `max_repeats` repeats is asked again."""

    def __init__(self, spec: SearchSpec) -> None:
        self.spec = spec
        self.verdicts: dict[float, str] = {}
        self.repeats: dict[float, int] = {}
        self.path: list[SearchStep] = []

    def record(self, x: float, verdict: str, repeats: int, source: str = "probe") -> None:
        if verdict == "uncertain" and repeats >= self.spec.max_repeats:
            verdict = "undecided"
        self.verdicts[x], self.repeats[x] = verdict, repeats
        self.path.append(SearchStep(x=x, verdict=verdict, repeats=repeats, source=source))

    def _in_range(self) -> dict[float, str]:
        return {x: v for x, v in self.verdicts.items() if self.spec.low <= x <= self.spec.high}

    def bracket(self) -> tuple[float | None, float | None]:
        """(highest load that meets below the lowest that misses, lowest that misses); undecided
        loads lie between them: the cliff is at one of them."""
        seen = self._in_range()
        down = [x for x, v in seen.items() if v == "misses"]
        hi = min(down) if down else None
        up = [x for x, v in seen.items() if v == "meets" and (hi is None or x < hi)]
        return (max(up) if up else None), hi

    def _round(self, x: float) -> float:
        return float(math.floor(x)) if self.spec.over == "users" else x

    def next_x(self) -> float | None:
        lo, hi = self.bracket()
        seen = self._in_range()
        inside = sorted(x for x in seen if (lo is None or x > lo) and (hi is None or x < hi))
        pending = [x for x in inside if seen[x] == "uncertain"]
        if pending:  # a load in the bracket whose verdict is still open is decided first
            return pending[0]
        if lo is None:
            return None if self.spec.low in seen else self.spec.low
        if hi is None:  # no load missed yet: double from the highest load seen
            top = max(seen)
            return None if top >= self.spec.high else min(self._round(2 * top), self.spec.high)
        # bisect the widest gap left between the loads seen from `lo` to `hi` (undecided ones between)
        points = [lo, *inside, hi]
        gaps = [(b - a, a, b) for a, b in itertools.pairwise(points) if b - a > self.spec.step(a) + 1e-9]
        if not gaps:
            return None
        _, a, b = max(gaps)
        mid = self._round((a + b) / 2)
        return None if mid in (a, b) else mid

    def result(self, *, study: str, engine: str, level_set: str, slo: str, confidence: float) -> CliffFound:
        lo, hi = self.bracket()
        seen = self._in_range()
        first_bad = min((x for x, v in seen.items() if v != "meets"), default=None)
        not_monotone = sorted(x for x, v in seen.items() if v == "meets" and first_bad is not None and x > first_bad)
        return CliffFound(
            study=study,
            engine=engine,
            level_set=level_set,
            over=self.spec.over,
            low=self.spec.low,
            high=self.spec.high,
            resolution=self.spec.step(lo or self.spec.low),
            slo=slo,
            confidence=confidence,
            meets_up_to=lo,
            first_miss=hi,
            undecided=sorted(x for x, v in seen.items() if v == "undecided" and (lo is None or x > lo)),
            not_monotone=not_monotone,
            path=list(self.path),
            probes_measured=0,
        )


def search_path(study_folder: Path, engine: str, level_set: str) -> Path:
    return study_folder / "searches" / f"{engine}__{level_set}.json"


def write_search(study_folder: Path, found: CliffFound) -> Path:
    path = search_path(study_folder, found.engine, found.level_set)
    with atomic_file(path) as tmp:
        tmp.write_text(found.model_dump_json(indent=2))
    return path


def read_searches(study_folder: Path) -> list[CliffFound]:
    """Every stored search of a study (an unreadable file is skipped: the levels hold the data)."""
    out = []
    for p in sorted((study_folder / "searches").glob("*.json")):
        try:
            out.append(CliffFound.model_validate(json.loads(p.read_text())))
        except ValueError:
            continue
    return out

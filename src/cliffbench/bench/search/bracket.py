"""The cliff search: the highest load at which an engine still meets the SLO, as an interval.

A grid reads the cliff off between two of its points ("between 4 and 8 users"). The search
narrows that down the way MLPerf's server scenario finds its highest rate: bracket by doubling
from `low` until a level misses (or `high` is reached), then bisect between the last level that
meets and the first that does not, until the bracket is `resolution` wide. It assumes that the
verdict is monotone in the load (meeting at 12 users implies meeting at 11); a level that breaks
this is kept in the path and named in the result, never hidden.

Each probe is judged like any level (`repeats.SloJudge`): by the interval of the SLO percentile
over every submitted request of all its repeats. A probe whose interval straddles the budget is
*uncertain*. Repeats are spent only where they move the answer: while bracketing and bisecting, an
uncertain load is provisionally taken as not meeting (the bracket's upper end moves down to it),
and only the final bracket's upper edge is measured again, one repeat at a time, up to
`max_repeats` and within the search's `extra_repeats` budget. An edge that then meets moves the
bracket up (the search goes on above it); one that misses ends it; one still uncertain is
*undecided*: its percentile is within noise of the budget, so the cliff is at that load or just
below ("meets up to 5 users, is undecided at 6 and fails at 8"). Uncertain loads met on the way
that never became the edge are listed as undecided too, never hidden. On a plateau near the
budget (a TTFT p90 within noise of 2 s over several loads) this measures one edge again instead
of every load on the plateau.

Levels measured already (the grid of the same level set, or the stored probes of an earlier
run) are probes the search does not pay for: doubling from 1 user visits 1, 2, 4, 8, ... which is
the default grid. The state machine here measures nothing; `bench.sweep` drives it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cliffbench.bench.spec.search import SearchSpec
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
    extra_repeats: int = Field(0, description="repeats taken beyond each load's first visit (to settle an edge)")
    budget_spent: bool = Field(False, description="the search's extra_repeats budget ran out on an uncertain edge")
    wall_s: float = math.nan

    def unit(self) -> str:
        return "users" if self.over == "users" else "req/s"

    def _x(self, x: float) -> str:
        return f"{x:g}" if self.over == "users" else f"{x:.3g}"

    def text(self) -> str:
        """'meets the SLO up to 11 users, is undecided at 12 and fails at 13 (95% intervals)'."""
        u, conf = self.unit(), f"{self.confidence:.0%} intervals"
        if self.budget_spent:
            conf += f"; the search's {self.extra_repeats} extra repeats were spent"
        cut = ", ".join(self._x(x) for x in self.undecided)
        fails = f" and fails at {self._x(self.first_miss)}" if self.first_miss is not None else ""
        if self.meets_up_to is None:
            if self.undecided:
                return f"is undecided already at {cut} {u}{fails}, from the search's lowest load ({conf})"
            return f"fails already at {self._x(self.first_miss or self.low)} {u}, the search's lowest load ({conf})"
        up = f"meets the SLO up to {self._x(self.meets_up_to)} {u}"
        if self.first_miss is None:
            if self.undecided:
                return f"{up} and is undecided at {cut}, no load above it measured ({conf})"
            return f"{up}, the search's ceiling: the cliff is higher ({conf})"
        undecided = f", is undecided at {cut}" if self.undecided else ""
        return f"{up}{undecided}{fails} ({conf})"

    def path_text(self) -> str:
        """'1 meets, 2 meets, 4 misses, 3 meets' (grid levels marked g)."""
        return ", ".join(
            f"{self._x(s.x)}{'g' if s.source == 'grid' else ''} {s.verdict}"
            + (f" ({s.repeats} rep)" if s.source == "probe" else "")
            for s in self.path
        )


class CliffSearch:
    """Bracket, then bisect. `record` what a load gave; `next_x` says where to look next (None:
    done). Only the final bracket's upper edge, when uncertain, is asked again (see the module)."""

    def __init__(self, spec: SearchSpec) -> None:
        self.spec = spec
        self.verdicts: dict[float, str] = {}
        self.repeats: dict[float, int] = {}
        self.first_repeats: dict[float, int] = {}
        self.path: list[SearchStep] = []
        self.budget_spent = False

    def record(self, x: float, verdict: str, repeats: int, source: str = "probe") -> None:
        if verdict == "uncertain" and repeats >= self.spec.max_repeats:
            verdict = "undecided"
        self.first_repeats.setdefault(x, repeats)
        self.verdicts[x], self.repeats[x] = verdict, repeats
        self.path.append(SearchStep(x=x, verdict=verdict, repeats=repeats, source=source))

    def extra_repeats(self) -> int:
        """Repeats taken beyond each load's first visit: what the `extra_repeats` budget counts."""
        return sum(self.repeats[x] - self.first_repeats[x] for x in self.repeats)

    def _in_range(self) -> dict[float, str]:
        return {x: v for x, v in self.verdicts.items() if self.spec.low <= x <= self.spec.high}

    def bracket(self) -> tuple[float | None, float | None]:
        """(highest load that meets below the lowest that does not, the lowest that does not: a
        load that misses, or one still uncertain or undecided)."""
        seen = self._in_range()
        down = [x for x, v in seen.items() if v != "meets"]
        hi = min(down) if down else None
        up = [x for x, v in seen.items() if v == "meets" and (hi is None or x < hi)]
        return (max(up) if up else None), hi

    def _round(self, x: float) -> float:
        return float(math.floor(x)) if self.spec.over == "users" else x

    def next_x(self) -> float | None:
        lo, hi = self.bracket()
        seen = self._in_range()
        if lo is None:
            if self.spec.low not in seen:
                return self.spec.low
            return self._settle(self.spec.low)  # the lowest load is the edge
        if hi is None:  # no load missed yet: double from the highest load seen
            top = max(seen)
            return None if top >= self.spec.high else min(self._round(2 * top), self.spec.high)
        if hi - lo > self.spec.step(lo) + 1e-9:
            mid = self._round((lo + hi) / 2)
            if mid not in (lo, hi) and mid not in seen:
                return mid
        return self._settle(hi)

    def _settle(self, edge: float) -> float | None:
        """The final bracket's upper edge: measured again while uncertain, within `max_repeats`
        (`record` turns it undecided there) and the search's `extra_repeats` budget."""
        if self.verdicts[edge] != "uncertain":
            return None
        budget = self.spec.extra_repeats
        if budget is not None and self.extra_repeats() >= budget:
            self.verdicts[edge], self.budget_spent = "undecided", True
            return None
        return edge

    def result(self, *, study: str, engine: str, level_set: str, slo: str, confidence: float) -> CliffFound:
        lo, _ = self.bracket()
        seen = self._in_range()
        above = {x: v for x, v in seen.items() if lo is None or x > lo}
        first_miss = min((x for x, v in above.items() if v == "misses"), default=None)

        def not_above(x: float) -> bool:
            return first_miss is None or x < first_miss

        # meeting above a load that missed breaks the monotone assumption; above an uncertain one it is noise
        not_monotone = sorted(x for x, v in seen.items() if v == "meets" and first_miss is not None and x > first_miss)
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
            first_miss=first_miss,
            undecided=sorted(x for x, v in above.items() if v != "meets" and x != first_miss and not_above(x)),
            not_monotone=not_monotone,
            path=list(self.path),
            probes_measured=0,
            extra_repeats=self.extra_repeats(),
            budget_spent=self.budget_spent,
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

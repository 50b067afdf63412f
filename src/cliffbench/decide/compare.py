"""Did the cliff move? Two stored studies (or a study and a reference copy) compared engine by
engine and level by level: `cliffbench compare A B`, ratios B/A.

- Engines pair by configuration, level sets by workload, levels by load (`compare_match`); a
  difference of hardware, model, precision or workload refuses the comparison (InputError naming
  the field) unless allowed, and then every line names it.
- Each engine's cliff in A and in B is judged by A's SLO (the same budget for both, so a moved
  bracket is the engine's doing, not the SLO's) as `decide.tree` judges it. A bracket is the cliff's
  possible range: above the highest level that meets the SLO, up to the first level shown to miss
  it (an uncertain level does not close it). "Moved" only when the two brackets do not overlap.
- Per level and metric (output tok/s, the SLO percentiles), the ratio B/A with the exact
  distribution-free interval of `decide.shift` from the repeats (stored as level folders `c0004`,
  `c0004-rep2`, ...), at its own coverage (at most 90 % for 3 against 3 repeats), and a verdict.
- Per engine, the same pooled over every level it ran in both: the verdict that counts, at the
  confidence asked for (default 0.99: a CI gate must not cry wolf) over all its metrics together
  (Bonferroni: each of m metrics at 1 - (1 - confidence) / m), so two runs of the same engine read
  "same within noise" at least that often. A single level's verdict is only at its own coverage:
  of two identical runs, about one level in ten reads faster or slower at 3 repeats; it says
  where, not whether.
- Verdicts: faster / slower when the interval excludes 1, same within noise when it holds 1 (its
  width says how large a change it leaves room for), undecided when the repeats are too few for
  an interval. A regression (exit 1) is an engine metric shown slower with its point estimate
  beyond the tolerance, or a cliff that moved down.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.bench.store.levels import Results, load_results
from cliffbench.config import DATA_DIR, RESULTS_DIR, InputError
from cliffbench.decide.compare_cliff import CliffShift, cliff_shifts
from cliffbench.decide.compare_match import (
    Difference,
    match_engines,
    match_level_sets,
    study_differences,
)
from cliffbench.decide.shift import ShiftInterval, shift_interval, shift_verdict

__all__ = [
    "CliffShift",
    "EngineShift",
    "LevelShift",
    "Metric",
    "MetricShift",
    "StudyComparison",
    "StudyRef",
    "compare_engine_levels",
    "compare_studies",
    "metrics_of",
    "open_study",
]

Metric = tuple[str, str, bool]  # (levels column, label, higher is better)
THROUGHPUT: Metric = ("output_tok_s", "output tok/s", True)


class MetricShift(BaseModel):
    """One metric, B/A: medians over repeats, the Hodges-Lehmann ratio and its exact interval."""

    metric: str
    label: str
    higher_is_better: bool
    a: float
    b: float
    ratio: float
    lo: float
    hi: float
    level: float
    repeats_a: int
    repeats_b: int
    verdict: str

    def interval_text(self) -> str:
        return ShiftInterval(self.ratio, self.lo, self.hi, self.level, self.repeats_a, self.repeats_b, 1).text()


class LevelShift(BaseModel):
    level_set: str
    load: str  # '4 users', '2 req/s'
    concurrency: float | None
    rate_rps: float | None
    metrics: list[MetricShift]
    differs: list[str] = []


class EngineShift(BaseModel):
    engine_a: str
    engine_b: str
    differs: list[str]
    cliffs: list[CliffShift]
    metrics: list[MetricShift]  # pooled over every matched level, at the engine's confidence
    verdict: str
    regressions: list[str]
    levels: list[LevelShift]
    level_notes: list[str] = []  # levels that read faster or slower at their own coverage


class StudyRef(BaseModel):
    side: str
    name: str
    path: str
    created_at: str
    git_sha: str
    cpu: str


class StudyComparison(BaseModel):
    a: StudyRef
    b: StudyRef
    slo: str
    tolerance: float
    confidence: float
    differences: list[Difference]
    engines: list[EngineShift]
    only_in_a: list[str]
    only_in_b: list[str]
    regressions: list[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def open_study(ref: str, side: str = "A", root: Path | None = None) -> Results:
    """A stored study by name (under `root`, data/results by default), by folder (a study folder
    anywhere, e.g. data/reference/default) or as `reference/<name>` (a shipped reference run,
    bench/store/reference.py): its levels and requests, not its per-token tables."""
    path = Path(ref)
    if (path / "levels").is_dir():
        folder = path.resolve()
        return load_results(folder.name, folder.parent, tables=("requests",))
    if (((root or RESULTS_DIR) / ref) / "levels").is_dir() and "/" not in ref:
        return load_results(ref, root, tables=("requests",))
    shipped = DATA_DIR / ref  # 'reference/default' from any folder: a shipped reference run
    if ref.startswith("reference/") and (shipped / "levels").is_dir():
        return load_results(shipped.name, shipped.parent, tables=("requests",))
    raise InputError(
        f"{side}: no stored study {ref!r}: give a study name under {root or RESULTS_DIR} or a study folder"
    )


def metrics_of(judge: SloJudge) -> list[Metric]:
    """Output tok/s, then each SLO metric at its SLO percentile (`ttft_s_p90`: 'TTFT p90')."""
    return [THROUGHPUT, *((f"{m}_p{judge.percentile(m):g}", judge.label(m), False) for m in judge.thresholds)]


Load = tuple[float | None, float | None]  # (users, None) or (None, req/s)


def _load_text(load: Load) -> str:
    users, rate = load
    if users is not None:
        return f"{users:g} user" + ("" if users == 1 else "s")
    return f"{rate:g} req/s"


def _by_load(
    levels: pd.DataFrame, engine: str, level_set: str, columns: list[str]
) -> dict[Load, dict[str, np.ndarray]]:
    """Each load's repeats that ran ('ok'), as one array per metric column (NaN where absent)."""
    rows = levels[(levels["engine"] == engine) & (levels["level_set"] == level_set) & (levels["status"] == "ok")]
    nan = np.full(len(rows), np.nan)
    conc = pd.to_numeric(rows["concurrency"], errors="coerce").to_numpy(np.float64) if "concurrency" in rows else nan
    rate = pd.to_numeric(rows["rate_rps"], errors="coerce").to_numpy(np.float64) if "rate_rps" in rows else nan
    cols = {c: pd.to_numeric(rows[c], errors="coerce").to_numpy(np.float64) if c in rows else nan for c in columns}
    where: dict[Load, list[int]] = {}
    for i, (c, r) in enumerate(zip(conc, rate, strict=True)):
        where.setdefault((float(c), None) if not math.isnan(c) else (None, float(r)), []).append(i)
    return {k: {c: v[idx] for c, v in cols.items()} for k, idx in where.items()}


def _median(x: np.ndarray) -> float:
    return float(np.nanmedian(x)) if x.size and np.isfinite(x).any() else math.nan


def _shift(metric: Metric, strata: list[tuple[np.ndarray, np.ndarray]], iv: ShiftInterval) -> MetricShift:
    col, label, higher = metric
    a = np.concatenate([s[0] for s in strata]) if strata else np.array([])
    b = np.concatenate([s[1] for s in strata]) if strata else np.array([])
    return MetricShift(
        metric=col,
        label=label,
        higher_is_better=higher,
        a=_median(a),
        b=_median(b),
        ratio=iv.ratio,
        lo=iv.lo,
        hi=iv.hi,
        level=iv.level,
        repeats_a=iv.n_a,
        repeats_b=iv.n_b,
        verdict=shift_verdict(iv, higher),
    )


def combined_verdict(metrics: list[MetricShift]) -> str:
    """'slower' when any metric is; 'faster' when one is and none slower; 'same within noise' when
    every metric is; else 'undecided'."""
    v = [m.verdict for m in metrics]
    if "slower" in v:
        return "slower"
    if "faster" in v:
        return "faster"
    return "same within noise" if v and all(x == "same within noise" for x in v) else "undecided"


def compare_engine_levels(
    levels_a: pd.DataFrame,
    levels_b: pd.DataFrame,
    engines: tuple[str, str],
    sets: list[tuple[str, str]],
    metrics: list[Metric],
    confidence: float = 0.99,
) -> tuple[list[LevelShift], list[MetricShift], str]:
    """One engine pair over its level sets from the per-repeat level tables (one row per level
    folder: `engine`, `level_set`, `concurrency`/`rate_rps`, `status` and the metric columns):
    (level lines, the pooled metrics at the engine's confidence, its verdict)."""
    lines: list[LevelShift] = []
    strata: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {m[0]: [] for m in metrics}
    columns = [m[0] for m in metrics]
    for set_a, set_b in sets:
        ra, rb = _by_load(levels_a, engines[0], set_a, columns), _by_load(levels_b, engines[1], set_b, columns)
        for load, va in ra.items():
            if load not in rb:
                continue
            shifts = []
            for m in metrics:
                pair = (va[m[0]], rb[load][m[0]])
                strata[m[0]].append(pair)
                shifts.append(_shift(m, [pair], shift_interval([pair], confidence, widest_if_short=True)))
            lines.append(
                LevelShift(
                    level_set=set_a, load=_load_text(load), concurrency=load[0], rate_rps=load[1], metrics=shifts
                )
            )
    lines.sort(key=lambda x: (x.level_set, x.concurrency or 0.0, x.rate_rps or 0.0))
    each = 1.0 - (1.0 - confidence) / max(1, len(metrics))
    pooled = [_shift(m, strata[m[0]], shift_interval(strata[m[0]], each)) for m in metrics]
    return lines, pooled, combined_verdict(pooled)


def _regressions(engine: str, metrics: list[MetricShift], cliffs: list[CliffShift], tol: float) -> list[str]:
    out = []
    for m in metrics:
        beyond = m.ratio < 1 - tol if m.higher_is_better else m.ratio > 1 / (1 - tol)
        if m.verdict == "slower" and beyond:
            shown = m.interval_text()
            out.append(f"{engine}: {m.label} {shown}, beyond the tolerance {tol:g}")
    out += [f"{engine}: cliff in {c.level_set} moved down, {c.a} -> {c.b}" for c in cliffs if c.moved == "moved down"]
    return out


def _level_notes(lines: list[LevelShift]) -> list[str]:
    """'slower at chat 4 users (output tok/s, TTFT p90)': where the pooled verdict hides a level
    that differs (the pooled interval assumes one factor for every level)."""
    out = []
    for lv in lines:
        for v in ("slower", "faster"):
            which = [m.label for m in lv.metrics if m.verdict == v]
            if which:
                cover = f"{100 * lv.metrics[0].level:.3g} % level interval"
                out.append(f"{v} at {lv.level_set} {lv.load} ({', '.join(which)}; {cover})")
    return out


def _ref(res: Results, side: str, path: str) -> StudyRef:
    m = res.manifest
    cpu = m.cpu
    return StudyRef(
        side=side,
        name=str(res.study.name),
        path=path,
        created_at=m.created_at or "not recorded",
        git_sha=m.git_sha,
        cpu=f"{cpu.model or 'not recorded'}, {cpu.usable_cpus or '?'} usable cores",
    )


def compare_studies(
    a: Results,
    b: Results,
    *,
    paths: tuple[str, str] = ("A", "B"),
    tolerance: float = 0.1,
    confidence: float = 0.99,
    allow_different: bool = False,
) -> StudyComparison:
    """B against A. InputError (one line, the field named) for a blocking difference unless
    `allow_different`; then each line of the result names it."""
    if not 0 < tolerance < 1:
        raise InputError(f"--tolerance: must be in (0, 1), got {tolerance}")
    if not 0 < confidence < 1:
        raise InputError(f"--confidence: must be in (0, 1), got {confidence}")
    pairs, only_a, only_b = match_engines(a, b, allow_different)
    sets = match_level_sets(a, b)
    diffs = study_differences(a, b, pairs) + [d for s in sets for d in s.differs]
    blocking = [d for d in diffs if d.blocking]
    if blocking and not allow_different:
        raise InputError(
            f"{blocking[0].text()}: not comparable (--allow-different compares anyway, naming it on every line)"
        )
    shared = [d.field for d in blocking]
    judge = SloJudge.of(a.study.slo)
    metrics = metrics_of(judge)
    pa, pb = pool_repeats(a.levels, a.requests, judge), pool_repeats(b.levels, b.requests, judge)
    engines = []
    for p in pairs:
        differs = shared + [d.text() for d in p.differs]
        lines, pooled, verdict = compare_engine_levels(
            a.levels, b.levels, (p.a, p.b), [(s.a, s.b) for s in sets], metrics, confidence
        )
        by_set = {s.a: [d.field for d in s.differs if d.blocking] for s in sets}
        for line in lines:
            line.differs = differs + by_set.get(line.level_set, [])
        cliffs = cliff_shifts(pa, pb, p, sets)
        engines.append(
            EngineShift(
                engine_a=p.a,
                engine_b=p.b,
                differs=differs,
                cliffs=cliffs,
                metrics=pooled,
                verdict=verdict,
                regressions=_regressions(p.a, pooled, cliffs, tolerance),
                levels=lines,
                level_notes=_level_notes(lines),
            )
        )
    return StudyComparison(
        a=_ref(a, "A", paths[0]),
        b=_ref(b, "B", paths[1]),
        slo=judge.text(),
        tolerance=tolerance,
        confidence=confidence,
        differences=diffs,
        engines=engines,
        only_in_a=only_a,
        only_in_b=only_b,
        regressions=[r for e in engines for r in e.regressions],
    )

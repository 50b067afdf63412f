"""Everything the whitepaper cites, read once: the study's tables and the repo files beside them.

`load_report_data(study)` is the one place the report reads the repository (the stored study, the
published claims, the benchmark results the text quotes, the GPU study file); the sections and
the figures are functions of the `ReportData` it returns, so the same code renders any study, and
a test renders it from a hand-built bundle. A missing optional file is a None field, and the
section that would cite it says so.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cliffbench.audit.claims import load_claims
from cliffbench.audit.estimate import EngineEstimate, estimate_study, target_hardware
from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.bench.search.bracket import CliffFound, read_searches
from cliffbench.bench.spec.study import StudySpec, load_study
from cliffbench.bench.store.levels import Results, load_results, study_dir
from cliffbench.bench.store.reference import find_reference, load_reference
from cliffbench.config import PROJECT_ROOT, InputError
from cliffbench.hardware import Hardware

__all__ = ["GPU_STUDY", "BenchmarkResult", "GpuStudy", "ReferenceRun", "ReportData", "load_report_data"]

GPU_STUDY = Path("studies") / "a100-published.yaml"  # the published setup as a runnable study
_BENCHMARKS = Path("benchmarks") / "results"


@dataclass(frozen=True)
class BenchmarkResult:
    """One stored benchmark (benchmarks/results/<name>): its file name, as the text cites it, and
    its JSON."""

    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class GpuStudy:
    """The published setup as a study file, with its dry-run estimate on the study's hardware."""

    path: str  # as the text cites it: relative to the project root when inside it
    spec: StudySpec
    hardware: Hardware
    estimate: list[EngineEstimate]


@dataclass(frozen=True, eq=False)
class ReferenceRun:
    """The project's run of the same study, shipped under data/reference/ (bench/store/reference.py)."""

    path: str  # as the text cites it: relative to the project root when inside it
    results: Results | None  # None: the copy could not be read (`problem` says why)
    problem: str = ""


@dataclass(frozen=True, eq=False)
class ReportData:
    """What the report's sections and figures read: one study and the files the text cites."""

    study: str  # the study's name (results folder)
    results: Results
    claims: pd.DataFrame  # data/published/claims.csv, as `load_claims` returns it
    tuning: BenchmarkResult | None = None  # engine_tuning.json
    fidelity: BenchmarkResult | None = None  # fidelity_quiet.json when stored, else fidelity.json
    fidelity_repeats: BenchmarkResult | None = None  # fidelity_repeats.json
    overhead: BenchmarkResult | None = None  # engine_overhead.json: kit vs each engine's raw loop
    working_set: BenchmarkResult | None = None  # working_set.json: reuse as the pool of documents grows
    gpu_study: GpuStudy | None = None
    levels: pd.DataFrame | None = None  # pooled over repeats and judged by the study's SLO (None: pool here)
    searches: tuple[CliffFound, ...] = ()  # the study's cliff searches (bench/search/bracket.py)
    reference: ReferenceRun | None = None  # data/reference/<study> (None: none shipped for this study)

    @functools.cached_property  # pooled once: every section reads it (a render pooled it 10 times)
    def pooled(self) -> pd.DataFrame:
        """One row per engine x level set x load: medians over repeats, ranges, SLO verdicts."""
        if self.levels is not None:
            return self.levels
        res = self.results
        return pool_repeats(res.levels, res.requests, SloJudge.of(res.study.slo))


def _benchmark(path: Path) -> BenchmarkResult | None:
    return BenchmarkResult(path.name, json.loads(path.read_text())) if path.is_file() else None


def _gpu_study(root: Path) -> GpuStudy | None:
    path = root / GPU_STUDY
    if not path.is_file():
        return None
    spec = load_study(path)
    hw = target_hardware(spec)
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    return GpuStudy(str(shown), spec, hw, estimate_study(spec, hw))


def _reference(study: str, root: Path) -> ReferenceRun | None:
    folder = find_reference(study, root / "data" / "reference")
    if folder is None:
        return None
    shown = folder.relative_to(root) if folder.is_relative_to(root) else folder
    try:
        return ReferenceRun(str(shown), load_reference(folder))
    except InputError as exc:  # a damaged copy must not stop the report: its section says what is wrong
        return ReferenceRun(str(shown), None, str(exc))


def load_report_data(study: str, root: Path = PROJECT_ROOT) -> ReportData:
    """Read study `study` (under `root`/data/results) and the files the whitepaper cites beside it,
    with the shipped reference run of the same study name when there is one."""
    results = root / _BENCHMARKS
    quiet = results / "fidelity_quiet.json"
    # the quiet run (nothing else on the cores, 2 threads) when stored, else the run on shared cores
    fidelity = quiet if quiet.is_file() else results / "fidelity.json"
    res = load_results(study, root / "data" / "results")
    return ReportData(
        study=study,
        results=res,
        levels=pool_repeats(res.levels, res.requests, SloJudge.of(res.study.slo)),
        claims=load_claims(root / "data" / "published" / "claims.csv"),
        tuning=_benchmark(results / "engine_tuning.json"),
        fidelity=_benchmark(fidelity),
        fidelity_repeats=_benchmark(results / "fidelity_repeats.json"),
        overhead=_benchmark(results / "engine_overhead.json"),
        working_set=_benchmark(results / "working_set.json"),
        gpu_study=_gpu_study(root),
        searches=tuple(read_searches(study_dir(study, root / "data" / "results"))),
        reference=_reference(res.study.name, root),
    )

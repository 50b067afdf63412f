"""`cliffbench compare A B`: did the cliff move between two stored studies (decide/compare.py), and
`cliffbench compare-bench A.json B.json`: two stored benchmark results (bench/store/bench_record.py).

Exit codes, so CI can gate on them: 0 no regression beyond the tolerance, 1 a regression (an engine
or number shown slower beyond `--tolerance`, or a cliff that moved down), 2 bad input or studies
that are not comparable (one line naming the field)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cliffbench.bench.progress.terminal import fail, out
from cliffbench.bench.store.bench_record import audit_results, read_record
from cliffbench.config import InputError
from cliffbench.decide.compare import compare_studies, open_study
from cliffbench.decide.compare_bench import compare_records
from cliffbench.report.compare_text import comparison_renderables

__all__ = ["add_compare_command"]

_TOLERANCE = "a regression is a slowdown beyond this fraction (0.1: 10 %), shown by the interval"
_CONFIDENCE = "confidence of each engine's verdict over all its metrics together (each number's, for compare-bench)"


def compare(
    a: Annotated[str, typer.Argument(help="baseline: a study name under data/results/ or a study folder")],
    b: Annotated[str, typer.Argument(help="the study compared with it (ratios are B/A)")],
    tolerance: Annotated[float, typer.Option(help=_TOLERANCE)] = 0.1,
    confidence: Annotated[float, typer.Option(help=_CONFIDENCE)] = 0.99,
    allow_different: Annotated[
        bool,
        typer.Option(help="compare across different hardware, model, precision or workload, naming it on every line"),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
) -> None:
    """Compare two stored studies: each engine's cliff (moved only when the brackets do not
    overlap) and, per level, throughput and the SLO percentiles as B/A with an exact interval from
    the repeats. Exit 0, 1 (a regression beyond --tolerance), 2 (bad input or not comparable)."""
    try:
        comparison = compare_studies(
            open_study(a, "A"),
            open_study(b, "B"),
            paths=(a, b),
            tolerance=tolerance,
            confidence=confidence,
            allow_different=allow_different,
        )
    except InputError as exc:
        fail(str(exc))
    if json_out:
        out.print_json(comparison.model_dump_json())
    else:
        for part in comparison_renderables(comparison):
            out.print(part, highlight=False)
    raise typer.Exit(comparison.exit_code)


def compare_bench(
    a: Annotated[Path | None, typer.Argument(help="baseline benchmark JSON (benchmarks/results/...)")] = None,
    b: Annotated[Path | None, typer.Argument(help="the benchmark JSON compared with it")] = None,
    tolerance: Annotated[float, typer.Option(help=_TOLERANCE)] = 0.1,
    confidence: Annotated[float, typer.Option(help=_CONFIDENCE)] = 0.95,
    audit: Annotated[
        Path | None, typer.Option(help="instead: list what each JSON in this folder lacks (date, git sha, ...)")
    ] = None,
) -> None:
    """Compare two stored benchmark results number by number (B/A, an exact interval from their
    repeats), or --audit a folder of them. Exit 0, 1 (a number slower beyond --tolerance), 2."""
    try:
        if audit is not None:
            for name, lacks in audit_results(audit).items():
                out.print(f"{name}: " + ("complete" if not lacks else "lacks " + ", ".join(lacks)), highlight=False)
            return
        if a is None or b is None:
            raise InputError("compare-bench: give two benchmark JSON files, or --audit FOLDER")
        rows, regressions = compare_records(read_record(a, "A"), read_record(b, "B"), tolerance, confidence)
    except InputError as exc:
        fail(str(exc))
    for line in rows:
        out.print(line, highlight=False)
    out.print("REGRESSION: " + "; ".join(regressions) if regressions else "no regression beyond the tolerance")
    raise typer.Exit(1 if regressions else 0)


def add_compare_command(app: typer.Typer) -> None:
    """Register `compare` and `compare-bench` on the `cliffbench` app."""
    app.command("compare")(compare)
    app.command("compare-bench")(compare_bench)

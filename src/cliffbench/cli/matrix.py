"""`cliffbench matrix`: the Architecture Decision Matrix for a profile, and `--check` of its freshness."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cliffbench.bench.progress.terminal import err, out
from cliffbench.bench.progress.terminal import fail as _fail
from cliffbench.config import InputError

__all__ = ["add_matrix_command"]


_MATRIX_FLAGS = {
    "users": "--users",
    "input_tokens": "--input-tokens",
    "output_tokens": "--output-tokens",
    "ttft_slo_s": "--ttft-slo",
    "hardware": "--hardware",
    "model": "--model",
    "gpu_prices": "--gpu-price",
    "pricing_model": "--pricing-model",
    "weights": "--weights",
    "efficiency": "--efficiency",
    "precision": "--precision",
    "study": "--study",
    "report_date": "--report-date",
    "stale_after_months": "--stale-after-months",
    "peak_hours": "--peak-hours",
    "offpeak_users": "--offpeak-users",
    "utilisation": "--utilisation",
    "autoscale": "--autoscale",
    "min_replicas": "--min-replicas",
    "engineer_usd_per_year": "--engineer-usd-per-year",
    "staff_fte": "--staff-fte",
    "horizon_months": "--horizon-months",
}


def matrix(
    users: Annotated[int, typer.Option(help="concurrent users at peak (closed loop)")] = 25,
    peak_hours: Annotated[float, typer.Option(help="hours a day at peak (24: busy around the clock)")] = 24.0,
    offpeak_users: Annotated[int, typer.Option(help="concurrent users the rest of the day (0: idle)")] = 0,
    utilisation: Annotated[
        float | None, typer.Option(help="instead of the two above: fraction of the day at peak, idle otherwise")
    ] = None,
    autoscale: Annotated[
        bool,
        typer.Option(help="replicas follow the load (options that scale out); else the peak fleet is paid all day"),
    ] = False,
    min_replicas: Annotated[
        int, typer.Option(help="with --autoscale: replicas kept while idle (0: scale to zero)")
    ] = 1,
    input_tokens: Annotated[int, typer.Option(help="prompt tokens per request")] = 512,
    output_tokens: Annotated[int, typer.Option(help="output tokens per request")] = 256,
    ttft_slo: Annotated[float, typer.Option(help="TTFT objective, seconds")] = 2.0,
    hardware: Annotated[str, typer.Option(help="GPU of the self-hosted options")] = "a100-40gb",
    gpu_price: Annotated[list[str] | None, typer.Option(help="USD per GPU-hour, e.g. a100-40gb=1.29")] = None,
    pricing_model: Annotated[
        str, typer.Option(help="how GPU-hours are bought: vm-on-demand, serverless or marketplace")
    ] = "vm-on-demand",
    weights: Annotated[str, typer.Option(help="criterion weights, e.g. cost=3,compliance=2")] = "",
    efficiency: Annotated[float, typer.Option(help="fraction of the roofline engines reach")] = 0.5,
    precision: Annotated[str, typer.Option(help="weights of every self-hosted engine, or 'native'")] = "bf16",
    study: Annotated[str, typer.Option(help="stored study with measured throughput on this GPU")] = "",
    report_date: Annotated[
        str, typer.Option(help="date the matrix is for, YYYY-MM-DD (freshness, shutdowns); default today")
    ] = "",
    stale_after_months: Annotated[int, typer.Option(help="cells and prices older than this are stale")] = 6,
    engineer_usd_per_year: Annotated[
        float | None,
        typer.Option(
            help="an engineer's yearly cost for staff and exit costs (default: data/matrix/costs.csv; 0: none)"
        ),
    ] = None,
    staff_fte: Annotated[
        str, typer.Option(help="ops fraction of an engineer per option, e.g. vllm=0.5,managed-vllm=0.6")
    ] = "",
    horizon_months: Annotated[
        float | None, typer.Option(help="months an exit cost is spread over (default: data/matrix/costs.csv)")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="list stale cells and prices and past shutdowns; exit 1 when a ranked option rests on a stale "
            "price or a model past its shutdown is still marked in service",
        ),
    ] = False,
    csv: Annotated[Path | None, typer.Option(help="also write the tidy matrix CSV here")] = None,
    pdf: Annotated[Path | None, typer.Option(help="also write the standalone matrix PDF here")] = None,
) -> None:
    """Rank the Architecture Decision Matrix for your profile, prices and weights."""
    from pydantic import ValidationError

    from cliffbench.config import one_line_error
    from cliffbench.decide import matrix as mx
    from cliffbench.report import matrix_pdf as mxr

    try:
        fields = dict(
            users=users,
            peak_hours=peak_hours,
            offpeak_users=offpeak_users,
            utilisation=utilisation,
            autoscale=autoscale,
            min_replicas=min_replicas,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            ttft_slo_s=ttft_slo,
            hardware=hardware,
            pricing_model=pricing_model,
            efficiency=efficiency,
            precision=precision,
            study=study,
            report_date=report_date,
            stale_after_months=stale_after_months,
            gpu_prices=mx.parse_assignments(gpu_price or [], "--gpu-price"),
            weights=mx.parse_assignments(weights, "--weights"),
            engineer_usd_per_year=engineer_usd_per_year,
            staff_fte=mx.parse_assignments(staff_fte, "--staff-fte"),
            horizon_months=horizon_months,
        )
        try:
            params = mx.MatrixParams(**fields)
        except ValidationError as exc:
            field = str(exc.errors()[0]["loc"][0])
            _fail(one_line_error(exc, "--").replace(f"--{field}", _MATRIX_FLAGS.get(field, field), 1))
        mx.check_params(params, names=_MATRIX_FLAGS)
        r = mx.evaluate(params)
    except InputError as exc:
        _fail(str(exc))
    if check:
        _matrix_check(r)
    table = Table(title=f"Architecture Decision Matrix: {users} users on {hardware}")
    for col in ("rank", "option", "score", "cost / 1M out", "TTFT", "throughput source", "unknown"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for o in r.scores.total.sort_values(ascending=False).index:
        rank = r.scores.rank.loc[o]
        table.add_row(
            "-" if rank != rank else str(int(rank)),
            r.data.options[o].name + ("" if r.data.options[o].status == "active" else f" ({r.data.options[o].status})"),
            f"{r.scores.total.loc[o]:.2f}",
            str(r.text.loc[o, "cost"]),
            str(r.text.loc[o, "ttft"]),
            r.throughput_source.get(o, mxr.managed_source(r.data.options[o])),
            ", ".join(r.scores.flagged.get(o, [])),
        )
    out.print(table)
    out.print(mxr.sensitivity_markdown(r).split("\n\n")[0].replace("**", ""), highlight=False, soft_wrap=True)
    flips = mxr.utilisation_markdown(r).split("\n\n")[-1]
    out.print(f"Load profile: {mxr.load_text(r)}. {flips}".replace("\n", " "), highlight=False, soft_wrap=True)
    if csv is not None:
        out.print(f"wrote {mxr.write_matrix_csv(r, csv)}")
    if pdf is not None:
        out.print(f"wrote {mxr.write_matrix_pdf(r, pdf)}")


def _matrix_check(r: Any) -> None:
    """`matrix --check`: every stale price, past shutdown and stale cell, one per line; exit 1 when
    the ranking itself rests on stale data, else 0."""
    from cliffbench.report.matrix_cto import verified_markdown

    f = r.freshness
    out.print(verified_markdown(r.data).replace("**", ""), highlight=False, soft_wrap=True)
    out.print(f.summary(), highlight=False)
    for p in f.prices:
        tag = "STALE PRICE, ranked" if p.ranked else "stale price"
        out.print(f"  {tag}: {p.option} {p.what}, as of {p.as_of} ({p.source})", highlight=False, soft_wrap=True)
    for sd in f.shutdowns:
        tag = "PAST SHUTDOWN, still marked in service" if sd.ranked else "past shutdown, not ranked"
        out.print(f"  {tag}: {sd.option}, shutdown {sd.as_of} ({sd.source})", highlight=False, soft_wrap=True)
    for c in f.cells:
        out.print(f"  stale cell: {c.option}/{c.what}, as of {c.as_of} ({c.source})", highlight=False, soft_wrap=True)
    if f.failing:
        err.print(
            f"matrix check failed: {len(f.failing)} ranked value(s) rest on stale data: "
            + ", ".join(f"{p.option} {p.what}" for p in f.failing),
            highlight=False,
        )
        raise typer.Exit(1)
    out.print("matrix check passed: no ranked option rests on a stale price", highlight=False)
    raise typer.Exit(0)


def add_matrix_command(app: typer.Typer) -> None:
    """Register `matrix` on the `cliffbench` app."""
    app.command()(matrix)

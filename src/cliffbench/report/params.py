"""The notebooks' parameters, declared once: each notebook's `parameters` cell
(tools/make_notebooks.py), the `-p NAME VALUE` names of `cliffbench report` and its --help are
derived from the pydantic models below. Validating them is the first thing each notebook does;
errors name the parameter (`parameter url: ...`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator

from cliffbench.bench.spec.study import RunFlags, StudySpec, flag_study, load_study
from cliffbench.config import PROJECT_ROOT, InputError, Spec, field_default, parse_spec

if TYPE_CHECKING:
    from cliffbench.decide.constraints import ReaderConstraints
    from cliffbench.decide.matrix import MatrixParams

__all__ = [
    "NOTEBOOKS",
    "NOTEBOOKS_DIR",
    "NOTEBOOK_PARAMS",
    "AnalysisParams",
    "BenchmarkParams",
    "PrepareParams",
    "benchmark_spec",
    "check_parameter_names",
    "parameter_lines",
    "parameter_names",
    "validate_params",
]

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


class PrepareParams(Spec):
    """`00_prepare_model`."""

    model_name: str = Field("smollm2-135m", description="the bundled model to prepare under data/models/")
    force_prepare: bool = Field(False, description="redo the extraction and conversion")


class BenchmarkParams(RunFlags):
    """`10_benchmark`: a study file, or the flag form (engine + levels) of `cliffbench run`."""

    study_file: str = Field("studies/default.yaml", description="a study YAML, relative to the project root")
    study_name: str = Field("", description="overrides the study's name (results folder) when set")
    cluster: str = Field(
        "", description="run on a Ray cluster: ray://HOST:PORT, HOST:PORT, auto or local ('': this machine)"
    )

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, v: str) -> str:
        from cliffbench.bench.cluster.driver import parse_target

        try:
            return parse_target(v) if v else v
        except InputError as exc:
            raise ValueError(str(exc).removeprefix("--cluster: ")) from None


class AnalysisParams(Spec):
    """`20_analysis` and `30_whitepaper`: which stored study, and the user's profile for the tree."""

    study: str = Field("default", description="stored study under data/results/")
    level_set: str = Field("chat", description="level set for the concurrency curves")
    mixed_level_set: str = Field("mixed", description="level set with long documents (head-of-line blocking)")
    peak_users: int = Field(25, gt=0, description="your peak concurrent users (decision tree)")
    ttft_slo_s: float = Field(
        2.0, gt=0, description="your TTFT objective, seconds (on the study's SLO percentile: p90 by default)"
    )
    tpot_slo_s: float = Field(0.25, gt=0, description="your TPOT p50 objective, seconds")
    compare_to: str = Field(
        "", description="a stored study name or study folder (e.g. a reference run) to compare this one with"
    )
    # the tree from the reader's constraints (cliffbench.decide.constraints; peak_users is its traffic)
    reader_data: str = Field("any", description="constraint tree: where prompts may go: any, own-hardware, in-region")
    reader_gpu: str = Field("rent", description="constraint tree: none (a CPU box), rent, or the GPU you own")
    reader_ops_team: bool = Field(True, description="constraint tree: an ops team can run GPU servers")
    reader_traffic: str = Field("auto", description="constraint tree: one, team, service, or auto (from peak_users)")
    # the Architecture Decision Matrix (cliffbench.decide.matrix.MatrixParams without the prefix)
    matrix_users: int = Field(25, gt=0, description="decision matrix: concurrent users of your deployment at peak")
    matrix_peak_hours: float = Field(
        24.0, gt=0, le=24, description="decision matrix: hours a day at peak (24: the GPU busy around the clock)"
    )
    matrix_offpeak_users: int = Field(0, ge=0, description="decision matrix: concurrent users the rest of the day")
    matrix_utilisation: float | None = Field(
        None, gt=0, le=1, description="decision matrix: instead: the fraction of the day at peak, idle otherwise"
    )
    matrix_autoscale: bool = Field(
        False, description="decision matrix: replicas follow the load; else the peak fleet is paid all day"
    )
    matrix_min_replicas: int = Field(1, ge=0, description="decision matrix: with autoscale, replicas kept while idle")
    matrix_input_tokens: int = Field(512, gt=0, description="decision matrix: prompt tokens per request")
    matrix_output_tokens: int = Field(256, gt=0, description="decision matrix: output tokens per request")
    matrix_ttft_slo_s: float = Field(2.0, gt=0, description="decision matrix: TTFT objective, seconds")
    matrix_hardware: str = Field("a100-40gb", description="decision matrix: GPU of the self-hosted options")
    matrix_gpu_prices: dict[str, float] = Field(
        default_factory=dict, description='decision matrix: USD per GPU-hour overrides, e.g. {"a100-40gb": 1.29}'
    )
    matrix_pricing_model: str = Field(
        "vm-on-demand", description="decision matrix: how GPU-hours are bought: vm-on-demand, serverless, marketplace"
    )
    matrix_weights: dict[str, float] = Field(
        default_factory=dict, description='decision matrix: criterion weights, e.g. {"cost": 3, "compliance": 2}'
    )
    matrix_efficiency: float = Field(
        0.5, gt=0, le=1, description="decision matrix: fraction of the roofline the engines reach"
    )
    matrix_precision: str = Field(
        "bf16", description='decision matrix: weights of every self-hosted engine, or "native"'
    )
    matrix_study: str = Field(
        "", description="decision matrix: stored study its self-hosted rows come from (empty: the analysed study)"
    )
    matrix_report_date: str = Field(
        "", description="decision matrix: date it is for, YYYY-MM-DD (stale cells, shutdowns); empty = today"
    )
    matrix_stale_after_months: int = Field(
        6, gt=0, description="decision matrix: cells and prices older than this many months are flagged stale"
    )
    matrix_engineer_usd_per_year: float | None = Field(
        None, ge=0, description="decision matrix: an engineer's yearly cost (staff, exit); empty: data/matrix/costs.csv"
    )
    matrix_staff_fte: dict[str, float] = Field(
        default_factory=dict, description='decision matrix: ops fraction of an engineer per option, e.g. {"vllm": 0.5}'
    )
    matrix_horizon_months: float | None = Field(
        None, gt=0, description="decision matrix: months an exit cost is spread over; empty: data/matrix/costs.csv"
    )

    @field_validator(
        "matrix_hardware",
        "matrix_precision",
        "matrix_pricing_model",
        "matrix_report_date",
        "matrix_gpu_prices",
        "matrix_weights",
        "matrix_staff_fte",
    )
    @classmethod
    def _matrix_names(cls, v: Any, info: ValidationInfo) -> Any:
        # unknown criteria or hardware fail here, before any notebook runs, not mid-report
        from cliffbench.decide.matrix import param_problem

        if problem := param_problem(str(info.field_name).removeprefix("matrix_"), v):
            raise ValueError(problem)
        return v

    @field_validator("compare_to")
    @classmethod
    def _compare_to(cls, v: str) -> str:
        # a missing study fails here, before any notebook runs, not in the whitepaper's last cells
        from cliffbench.decide.compare import open_study

        if v:
            try:
                open_study(v, "compare_to")
            except InputError as exc:
                raise ValueError(str(exc).removeprefix("compare_to: ")) from None
        return v

    @field_validator("reader_data", "reader_gpu", "reader_traffic")
    @classmethod
    def _reader_choices(cls, v: Any, info: ValidationInfo) -> Any:
        from cliffbench.decide.constraints import constraint_problem

        if problem := constraint_problem(str(info.field_name).removeprefix("reader_"), v):
            raise ValueError(problem)
        return v

    def reader_constraints(self) -> ReaderConstraints:
        """The reader's answers to the constraint tree, with `peak_users` as the traffic."""
        from cliffbench.decide.constraints import ReaderConstraints

        return ReaderConstraints(
            data=self.reader_data,
            gpu=self.reader_gpu,
            ops_team=self.reader_ops_team,
            traffic=self.reader_traffic,
            users=self.peak_users,
        )

    def matrix_params(self) -> MatrixParams:
        """The matrix's MatrixParams from the `matrix_*` parameters, checked against data/matrix/."""
        from cliffbench.decide.matrix import MatrixParams, check_params

        fields = {k.removeprefix("matrix_"): v for k, v in self.model_dump().items() if k.startswith("matrix_")}
        params = MatrixParams(**(fields | {"study": fields["study"] or self.study}))
        check_params(params, names={k: f"parameter matrix_{k}" for k in fields})
        return params


# the notebooks in the order the report runs them, each with the model of its parameters
NOTEBOOK_PARAMS: dict[str, type[Spec]] = {
    "00_prepare_model": PrepareParams,
    "10_benchmark": BenchmarkParams,
    "20_analysis": AnalysisParams,
    "30_whitepaper": AnalysisParams,
}
NOTEBOOKS = tuple(NOTEBOOK_PARAMS)


def _literal(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def parameter_lines(cls: type[Spec], align: bool = True) -> list[str]:
    """`name = default  # description`, one line per field of `cls` (comments aligned if `align`):
    a notebook's parameters cell, and the parameter list of `cliffbench report --help`."""
    rows = [(f"{n} = {_literal(field_default(cls, n))}", f.description) for n, f in cls.model_fields.items()]
    width = max(len(a) for a, _ in rows) if align else 0
    return [f"{a:<{width}}  # {d}" if d else a for a, d in rows]


def parameter_names() -> list[str]:
    """Every notebook parameter's name (the allowed `-p` names), sorted."""
    return sorted({name for cls in NOTEBOOK_PARAMS.values() for name in cls.model_fields})


def check_parameter_names(names: Iterable[str]) -> None:
    """InputError naming the first of `names` that no notebook declares, and the allowed names."""
    allowed = parameter_names()
    if unknown := sorted(set(names) - set(allowed)):
        raise InputError(f"parameter {unknown[0]}: unknown; allowed: {', '.join(allowed)}")


def validate_params(cls: type[Spec], namespace: dict[str, Any]) -> Any:
    """Validate a notebook's parameters (its globals) into `cls`; InputError names the parameter."""
    data = {k: namespace[k] for k in cls.model_fields if k in namespace}
    return parse_spec(cls, data, prefix="parameter ")


def _parameter(name: str) -> str:
    return f"parameter {name}"


def benchmark_spec(p: BenchmarkParams) -> StudySpec:
    """The StudySpec a `10_benchmark` run executes: the study file, or the flag form when `engine`
    is set (what `cliffbench run --engine ...` builds, errors naming the parameters)."""
    if p.engine:
        concurrency = ",".join(map(str, p.concurrency))
        spec = flag_study(
            p.engine,
            p.slots,
            concurrency,
            p.requests_per_level,
            p.workload,
            p.study_name or None,
            p.url,
            label=_parameter,
        )
    else:
        for name in ("slots", "url"):
            if getattr(p, name) is not None:
                raise InputError(f"parameter {name}: only for the flag form (set parameter engine)")
        path = Path(p.study_file)
        spec = load_study(path if path.is_absolute() else PROJECT_ROOT / path)
        if p.study_name:
            spec = spec.model_copy(update={"name": p.study_name})
    return spec.model_copy(update={"seed": p.seed}) if p.seed else spec

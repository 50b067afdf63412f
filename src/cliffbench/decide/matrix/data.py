"""The matrix data on disk: data/matrix/*.csv, validated row by row (schema in data/matrix/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from cliffbench.config import DATA_DIR, InputError, Spec, read_csv_specs
from cliffbench.hardware import HARDWARE

__all__ = [
    "CERTIFICATIONS",
    "COST_PARAMETERS",
    "GROUPS",
    "HARDWARE_REACH",
    "MATRIX_DIR",
    "NOT_APPLICABLE",
    "PRICING_MODELS",
    "RANKED_STATUSES",
    "Cell",
    "Certification",
    "CostDefault",
    "Criterion",
    "GpuPrice",
    "MatrixData",
    "Option",
    "Verified",
    "load_matrix",
    "reach",
]


MATRIX_DIR = DATA_DIR / "matrix"
_DATE = r"^\d{4}-\d{2}(-\d{2})?$"
_URL = r"^https?://"
Verified = Literal["primary", "secondary", "no"]
Status = Literal["active", "maintenance", "retiring", "retired", "discontinued"]
RANKED_STATUSES = ("active", "maintenance")
# how a GPU-hour is sold: only rows of one pricing model are compared with each other
PricingModel = Literal["vm-on-demand", "serverless", "marketplace"]
PRICING_MODELS: tuple[str, ...] = ("vm-on-demand", "serverless", "marketplace")
NOT_APPLICABLE = "n/a"
# the platforms a `hardware_reach` cell lists (comma-separated); its score is how many it reaches
HARDWARE_REACH: tuple[str, ...] = ("cuda", "rocm", "cpu", "apple-silicon", "windows")


# the seed's four groups of criteria (deployment, compliance, cost, lock-in): one page each in the CTO document
GROUPS: tuple[str, ...] = ("deployment", "compliance", "cost", "lock-in")


class Criterion(Spec):
    criterion_id: str = Field(pattern=r"^[a-z_]+$")
    name: str = Field(min_length=1)
    group: Literal["deployment", "compliance", "cost", "lock-in"]
    direction: Literal["higher", "lower"]
    kind: Literal["score", "computed"]
    default_weight: float = Field(ge=0)
    unit: str
    description: str


class Option(Spec):
    option_id: str = Field(pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=1)
    kind: Literal["self-hosted", "managed"]
    status: Status
    engine: Literal["llamacpp-slots", "vllm", "none"]
    slots: int | None = Field(None, gt=0, description="fixed slots; empty = tuned to the users")
    precision: str = ""
    max_replicas: int | None = Field(None, gt=0, description="empty = scale out until the TTFT SLO holds")
    model: str = Field(min_length=1)
    input_usd_per_1m: float | None = Field(None, ge=0)
    output_usd_per_1m: float | None = Field(None, ge=0)
    currency: str = ""
    price_as_of: str = Field("", pattern=r"^(\d{4}-\d{2}(-\d{2})?)?$")
    price_source: str = Field("", pattern=r"^(https?://.*)?$")
    price_verified: Verified | Literal[""] = ""
    shutdown_date: str = Field("", pattern=r"^(\d{4}-\d{2}-\d{2})?$", description="announced shutdown/retirement")
    shutdown_source: str = Field("", pattern=r"^(https?://.*)?$")
    ops_fte: float = Field(ge=0, description="engineer time to run it, a fraction of one full-time engineer")
    exit_api: Literal["openai-compatible", "own"] = Field(description="the API a client is written against")
    exit_weights: Literal["open", "closed"] = Field(description="whether the model's weights can go elsewhere")
    exit_data: Literal["yours", "vendor"] = Field(description="where logs, files and fine-tunes live")
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Option:
        if self.kind == "self-hosted" and (self.engine == "none" or not self.precision):
            raise ValueError("a self-hosted option needs an engine and a precision")
        if (self.input_usd_per_1m is None) != (self.output_usd_per_1m is None):
            raise ValueError("a token price needs both input and output prices")
        if self.input_usd_per_1m is not None and not (
            self.currency and self.price_as_of and self.price_source and self.price_verified
        ):
            raise ValueError("a price needs its currency, as-of date, source and verified status")
        if self.status in ("retiring", "retired") and not (self.shutdown_date and self.shutdown_source):
            raise ValueError(f"a {self.status} option needs its shutdown_date and shutdown_source")
        return self

    @property
    def priced(self) -> bool:
        return self.input_usd_per_1m is not None and self.output_usd_per_1m is not None


class Cell(Spec):
    option_id: str
    criterion_id: str
    value: str = Field(min_length=1)
    score: float | None = Field(None, ge=1, le=5)
    unknown_reason: str = ""
    rationale: str = ""
    source_url: str = Field(pattern=_URL)
    as_of: str = Field(pattern=_DATE)
    verified: Verified

    @model_validator(mode="after")
    def _known_or_not(self) -> Cell:
        if self.value in ("unknown", NOT_APPLICABLE):
            if self.score is not None or not self.unknown_reason:
                raise ValueError(f"an {self.value!r} cell has no score and needs an unknown_reason")
        elif self.score is None or not self.rationale:
            raise ValueError("a known cell needs a score and a rationale")
        return self

    @property
    def known(self) -> bool:
        return self.value not in ("unknown", NOT_APPLICABLE)

    @property
    def applicable(self) -> bool:
        """False for 'n/a' (the criterion does not apply: left out like an unknown, but not flagged)."""
        return self.value != NOT_APPLICABLE


class GpuPrice(Spec):
    hardware: str
    usd_per_hour: float = Field(gt=0)
    currency: Literal["USD"]
    provider: str = Field(min_length=1)
    pricing_model: PricingModel
    as_of: str = Field(pattern=_DATE)
    source_url: str = Field(pattern=_URL)
    verified: Verified
    note: str = ""


CostParameter = Literal[
    "engineer_usd_per_year",
    "horizon_months",
    "exit_base_weeks",
    "exit_own_api_weeks",
    "exit_closed_weights_weeks",
    "exit_vendor_data_weeks",
]
COST_PARAMETERS: tuple[str, ...] = get_args(CostParameter)


class CostDefault(Spec):
    """A sourced default of the total-cost model (costs.csv): a price, or a judgement labelled as one."""

    parameter: CostParameter
    value: float = Field(ge=0)
    unit: str = Field(min_length=1)
    source_url: str = Field("", pattern=r"^(https?://.*)?$")
    as_of: str = Field(pattern=_DATE)
    verified: Verified | Literal["judgement"]
    note: str = Field(min_length=1)


CertStatus = Literal["yes", "no", "unknown", "n/a"]
CERTIFICATIONS = {
    "soc2_type2": "SOC 2 Type II",
    "iso27001": "ISO 27001",
    "hipaa_baa": "HIPAA BAA",
    "gdpr_dpa": "GDPR DPA",
}


class Certification(Spec):
    """One option's named certifications and residency by region (certifications.csv); an option without
    a row runs on your hosts: your own controls, no vendor certificate applies."""

    option_id: str
    soc2_type2: CertStatus
    iso27001: CertStatus
    hipaa_baa: CertStatus
    gdpr_dpa: CertStatus
    regions: str = Field(min_length=1)
    source_url: str = Field(pattern=_URL)
    as_of: str = Field(pattern=_DATE)
    verified: Verified
    note: str = Field(min_length=1)


@dataclass(frozen=True)
class MatrixData:
    criteria: dict[str, Criterion]
    options: dict[str, Option]
    cells: dict[tuple[str, str], Cell]
    gpu_prices: tuple[GpuPrice, ...]
    costs: dict[str, CostDefault]
    certifications: dict[str, Certification]

    def verified_counts(self) -> dict[str, int]:
        """Cells per `verified` status (primary, secondary, no): the share `matrix --check` reports."""
        out = dict.fromkeys(("primary", "secondary", "no"), 0)
        for c in self.cells.values():
            out[c.verified] += 1
        return out

    def prices_for(self, hardware: str, pricing_model: str | None = None) -> list[GpuPrice]:
        """The stored prices of `hardware` (of one pricing model when given), cheapest first."""
        rows = [p for p in self.gpu_prices if p.hardware == hardware]
        if pricing_model is not None:
            rows = [p for p in rows if p.pricing_model == pricing_model]
        return sorted(rows, key=lambda p: p.usd_per_hour)


def _check_reach(c: Cell) -> None:
    """A hardware_reach value lists platforms of HARDWARE_REACH, and its score is their number."""
    platforms = [p.strip() for p in c.value.split(",")]
    if bad := [p for p in platforms if p not in HARDWARE_REACH]:
        allowed = ", ".join(HARDWARE_REACH)
        raise InputError(f"cells.csv: ({c.option_id}, hardware_reach): unknown platform {bad[0]!r}; allowed: {allowed}")
    if c.score != len(set(platforms)):
        raise InputError(
            f"cells.csv: ({c.option_id}, hardware_reach): score {c.score:g} must be the number of platforms listed"
        )


def reach(cell: Cell | None) -> set[str]:
    """The platforms a hardware_reach cell lists (empty when unknown or not applicable)."""
    return {p.strip() for p in cell.value.split(",")} if cell is not None and cell.known else set()


def load_matrix(root: Path | None = None) -> MatrixData:
    """data/matrix/*.csv validated, with every scored cell present and every reference known."""
    d = root or MATRIX_DIR
    criteria = {c.criterion_id: c for c in read_csv_specs(d / "criteria.csv", Criterion, empty_is_default=True)}
    options = {o.option_id: o for o in read_csv_specs(d / "options.csv", Option, empty_is_default=True)}
    cells: dict[tuple[str, str], Cell] = {}
    for c in read_csv_specs(d / "cells.csv", Cell, empty_is_default=True):
        if c.option_id not in options or c.criterion_id not in criteria:
            raise InputError(f"cells.csv: ({c.option_id}, {c.criterion_id}) names an unknown option or criterion")
        if criteria[c.criterion_id].kind == "computed" and c.known:
            raise InputError(f"cells.csv: ({c.option_id}, {c.criterion_id}) is computed; only 'unknown' may be stored")
        if (c.option_id, c.criterion_id) in cells:
            raise InputError(f"cells.csv: ({c.option_id}, {c.criterion_id}) repeats")
        if c.criterion_id == "hardware_reach" and c.known:
            _check_reach(c)
        cells[(c.option_id, c.criterion_id)] = c
    missing = [(o, c) for o in options for c, cr in criteria.items() if cr.kind == "score" and (o, c) not in cells]
    if missing:
        raise InputError(f"cells.csv: missing cell(s) {', '.join(f'{o}/{c}' for o, c in missing)}")
    for o, opt in options.items():
        # a managed option is either priced or says why not: never a silent gap in the ranking
        if opt.kind == "managed" and opt.status in RANKED_STATUSES and not opt.priced and (o, "cost") not in cells:
            raise InputError(f"options.csv ({o}): no token prices and no 'unknown' cost cell in cells.csv")
    prices = tuple(read_csv_specs(d / "gpu_prices.csv", GpuPrice, empty_is_default=True))
    if unknown := [p.hardware for p in prices if p.hardware not in HARDWARE]:
        raise InputError(f"gpu_prices.csv: unknown hardware {unknown[0]!r}; allowed: {', '.join(HARDWARE)}")
    keys = [(p.hardware, p.provider, p.pricing_model) for p in prices]
    if dup := next((k for k in keys if keys.count(k) > 1), None):
        raise InputError(f"gpu_prices.csv: {dup[0]} from {dup[1]} ({dup[2]}) repeats")
    costs: dict[str, CostDefault] = {
        c.parameter: c for c in read_csv_specs(d / "costs.csv", CostDefault, empty_is_default=True)
    }
    if missing_costs := [p for p in COST_PARAMETERS if p not in costs]:
        raise InputError(f"costs.csv: missing parameter(s) {', '.join(missing_costs)}")
    certs = {c.option_id: c for c in read_csv_specs(d / "certifications.csv", Certification, empty_is_default=True)}
    if unknown_opt := [o for o in certs if o not in options]:
        raise InputError(f"certifications.csv: unknown option {unknown_opt[0]!r}")
    return MatrixData(criteria, options, cells, prices, costs, certs)

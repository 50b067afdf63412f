"""How old each number of the matrix is, on the report's date: stale cells and prices, and shutdowns.

A cell, token price or GPU price is stale when its as-of date lies more than `stale_after_months`
calendar months before the report date. A month-only date (2026-09) counts from the month's first
day, so it turns stale no later than the value could have. A managed model whose announced
shutdown date lies before the report date is flagged whatever its row's status says, and never
ranked. `cliffbench matrix --check` fails (exit 1) when a ranked option rests on a stale price
(its token price, or for self-hosted options the GPU-hour price they are costed at) or when a model
past its shutdown is still marked active: the two ways the ranking itself could be wrong today.
The report date is a parameter (default today), so that tests and old reports use a fixed clock.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

from cliffbench.decide.matrix.data import RANKED_STATUSES, MatrixData, Option

__all__ = [
    "Freshness",
    "StaleItem",
    "add_months",
    "as_of_date",
    "freshness",
    "is_stale",
    "past_shutdown",
]


def as_of_date(text: str) -> dt.date:
    """YYYY-MM-DD, or YYYY-MM as the month's first day."""
    return dt.date.fromisoformat(text if len(text) == 10 else f"{text}-01")


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` plus whole calendar months, clamped to the month's last day (Aug 31 + 6 -> Feb 28)."""
    m = day.month - 1 + months
    year, month = day.year + m // 12, m % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def is_stale(as_of: str, report_date: dt.date, stale_after_months: int) -> bool:
    return add_months(as_of_date(as_of), stale_after_months) < report_date


def past_shutdown(option: Option, report_date: dt.date) -> bool:
    """The option's announced shutdown date lies before the report date."""
    return bool(option.shutdown_date) and dt.date.fromisoformat(option.shutdown_date) < report_date


@dataclass(frozen=True)
class StaleItem:
    """One dated value older than the limit (or a shutdown that has passed)."""

    option: str  # option id, or the hardware key of a GPU price
    what: str  # criterion id, "token price", "GPU price (provider, pricing model)" or "shutdown"
    as_of: str
    source: str
    # a ranked option rests on this price; for a shutdown: the option's row still marks it in service
    ranked: bool = False


@dataclass(frozen=True)
class Freshness:
    report_date: dt.date
    stale_after_months: int
    cells: list[StaleItem] = field(default_factory=list)
    prices: list[StaleItem] = field(default_factory=list)
    shutdowns: list[StaleItem] = field(default_factory=list)
    n_cells: int = 0
    gpu_price_stale: bool = False  # the GPU-hour price the self-hosted options are costed at

    def stale(self, option: str, criterion: str, kind: str = "self-hosted") -> bool:
        """Is the (option, criterion) value stale: its cell, or for `cost` the price it is computed from."""
        if criterion == "cost" and (option, criterion) not in self.stale_cell_keys():
            if kind == "self-hosted":
                return self.gpu_price_stale
            return any(p.option == option and p.what == "token price" for p in self.prices)
        return (option, criterion) in self.stale_cell_keys()

    @property
    def failing(self) -> list[StaleItem]:
        """What makes `--check` fail: stale prices under ranked options, and models past their shutdown
        whose row still says they are in service."""
        return [p for p in self.prices if p.ranked] + [s for s in self.shutdowns if s.ranked]

    def stale_cell_keys(self) -> set[tuple[str, str]]:
        return {(c.option, c.what) for c in self.cells}

    def summary(self) -> str:
        limit = f"older than {self.stale_after_months} months on {self.report_date.isoformat()}"
        parts = [f"{len(self.cells)} of {self.n_cells} cells {limit}"]
        parts.append(f"{len(self.prices)} stale price(s), {sum(p.ranked for p in self.prices)} under ranked options")
        parts.append(f"{len(self.shutdowns)} model(s) past an announced shutdown")
        return "; ".join(parts)


def freshness(
    data: MatrixData,
    report_date: dt.date,
    stale_after_months: int,
    ranked: list[str],
    gpu: tuple[str, str, str, str, str] | None = None,
) -> Freshness:
    """The stale cells and prices of `data` on `report_date`. `ranked`: the options in the ranking;
    `gpu`: (hardware, provider, pricing model, as-of, source) of the GPU price the self-hosted options
    are costed at, or None for the user's own price (never stale)."""
    stale = [
        StaleItem(o, c, cell.as_of, cell.source_url, o in ranked)
        for (o, c), cell in data.cells.items()
        if is_stale(cell.as_of, report_date, stale_after_months)
    ]
    prices = [
        StaleItem(o, "token price", opt.price_as_of, opt.price_source, o in ranked)
        for o, opt in data.options.items()
        if opt.priced and is_stale(opt.price_as_of, report_date, stale_after_months)
    ]
    self_hosted_ranked = any(data.options[o].kind == "self-hosted" for o in ranked)
    gpu_stale = False
    for p in data.gpu_prices:
        if is_stale(p.as_of, report_date, stale_after_months):
            used = gpu is not None and (p.hardware, p.provider, p.pricing_model) == gpu[:3]
            gpu_stale |= used
            what = f"GPU price ({p.provider}, {p.pricing_model})"
            prices.append(StaleItem(p.hardware, what, p.as_of, p.source_url, used and self_hosted_ranked))
    shutdowns = [
        StaleItem(o, "shutdown", opt.shutdown_date, opt.shutdown_source, opt.status in RANKED_STATUSES)
        for o, opt in data.options.items()
        if past_shutdown(opt, report_date)
    ]
    return Freshness(report_date, stale_after_months, stale, prices, shutdowns, len(data.cells), gpu_stale)

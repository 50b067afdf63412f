"""Paths, the one-line input error and the base of every spec: the layer under everything else.

Every spec forbids unknown keys, so a typo in a study file is an error, not a silent default.
`InputError` carries a one-line message naming the parameter; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cliffbench.trace import Source, record

__all__ = [
    "DATA_DIR",
    "FIGURES_DIR",
    "MODELS_DIR",
    "PROJECT_ROOT",
    "REPORT_DIR",
    "RESULTS_DIR",
    "InputError",
    "Spec",
    "fmt_number",
    "one_line_error",
    "parse_spec",
    "read_csv_specs",
]


def _find_root() -> Path:
    env = os.environ.get("CLIFFBENCH_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "src" / "cliffbench").exists():
            return parent
    return Path.cwd()


PROJECT_ROOT = _find_root()
DATA_DIR = PROJECT_ROOT / "data"
MODELS_DIR = DATA_DIR / "models"
RESULTS_DIR = DATA_DIR / "results"
FIGURES_DIR = PROJECT_ROOT / "figures"
REPORT_DIR = PROJECT_ROOT / "report"


class InputError(ValueError):
    """Bad user input: the message is one line naming the parameter and what is allowed."""


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def field_default(cls: type[BaseModel], name: str) -> Any:
    """The default of field `name` of `cls` (a default_factory called)."""
    return cls.model_fields[name].get_default(call_default_factory=True)


def one_line_error(exc: ValidationError, prefix: str = "") -> str:
    """Reduce a pydantic error to one line: `field.path: message`."""
    err = exc.errors()[0]
    # discriminated unions add the tag to the path (engines.0.vllm.dtype): keep it, it names the kind
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).replace("Value error, ", "")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "input"
    return f"{where}: {msg}{more}".replace("\n", " ")


def parse_spec(cls: type[Spec], data: Any, prefix: str = "") -> Any:
    """Validate `data` into `cls`, raising InputError with a one-line message."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise InputError(one_line_error(exc, prefix)) from None


_Row = TypeVar("_Row", bound=Spec)


def read_csv_specs(
    path: Path, cls: type[_Row], *, empty_is_default: bool = False, unique_key: bool = False
) -> list[_Row]:
    """A sourced data file: one `cls` per row, columns exactly `cls`'s fields. InputError names the
    file, the line (and the row's key: its first column) and the field. `empty_is_default`: an
    empty field takes the field's default; `unique_key`: the first column may not repeat."""
    if not path.is_file():
        raise InputError(f"{path.name}: file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, want = list(reader.fieldnames or []), list(cls.model_fields)
        if missing := [c for c in want if c not in header]:
            raise InputError(f"{path.name}: missing column(s) {', '.join(missing)}")
        if extra := [c for c in header if c not in want]:
            raise InputError(f"{path.name}: unknown column(s) {', '.join(extra)}")
        rows: list[_Row] = []
        seen: dict[str, int] = {}
        for raw in reader:
            key = raw.get(want[0]) or "?"
            where = f"{path.name} line {reader.line_num} ({want[0]} {key})"
            if None in raw or None in raw.values():
                raise InputError(f"{where}: row: wrong number of fields for the header")
            data = {k: v for k, v in raw.items() if v != ""} if empty_is_default else raw
            try:
                row = cls.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"][:1]) or "row"
                msg = str(err["msg"]).replace("Value error, ", "")
                # a `X | Literal["unknown"]` field reports its first branch only: name the other
                if any(e["loc"][:1] == (field,) and "unknown" in str(e["loc"][1:]) for e in exc.errors()):
                    msg += ", or 'unknown'"
                raise InputError(f"{where}: {field}: {msg}") from None
            if unique_key:
                if key in seen:
                    raise InputError(f"{where}: {want[0]}: repeats line {seen[key]}")
                seen[key] = reader.line_num
            rows.append(row)
    return rows


def fmt_number(x: Any, digits: int = 3, *, sci_below: float = 0.0, src: Source | None = None) -> str:
    """A number as the kit prints it: `digits` significant digits, a grouped whole number from
    1,000 up ('1,450'), 'n/a' for None or NaN; a Python int prints as it is. With `sci_below` > 0
    a nonzero magnitude below it prints in scientific notation ('8.32e-04'), as the whitepaper's
    tables do, so a sub-millisecond time keeps its digits. The text is logged with `src` (where
    the number was read) while `cliffbench.trace.recording()` is on."""
    return record(_fmt(x, digits, sci_below), src)


def _fmt(x: Any, digits: int, sci_below: float) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int | bool):
        return str(x)
    v = float(x)
    if math.isnan(v):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if v != 0 and abs(v) < sci_below:
        return f"{v:.2e}"
    text = f"{v:.{digits}g}"
    # fewer digits than the integer part has ('5.6e+02' at 2 digits): the rounded value, written out
    return f"{float(text):,.0f}" if "e+" in text else text

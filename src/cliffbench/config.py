"""Paths, the one-line input error and the base of every spec: the layer under everything else.

Every spec forbids unknown keys, so a typo in a study file is an error, not a silent default.
`InputError` carries a one-line message naming the parameter; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "DATA_DIR",
    "FIGURES_DIR",
    "MODELS_DIR",
    "PROJECT_ROOT",
    "REPORT_DIR",
    "RESULTS_DIR",
    "InputError",
    "Spec",
    "one_line_error",
    "parse_spec",
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

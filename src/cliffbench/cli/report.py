"""`cliffbench report` (also `python -m cliffbench report`): notebooks 00 -> 10 -> 20 -> 30 under
papermill, then report/whitepaper.pdf. A typer command whose `-p` names and parameter list in
--help come from the models of report/params.py."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from typer.core import TyperCommand

from cliffbench.bench.progress.terminal import err, fail
from cliffbench.config import InputError
from cliffbench.report.params import NOTEBOOK_PARAMS, check_parameter_names, parameter_lines
from cliffbench.report.pipeline import build_report

__all__ = ["ReportCommand", "add_report_command", "parameters_help", "report"]

_PAIR = "\0"  # joins NAME and VALUE of one -p into one word; no command-line word can hold it
_P_FLAGS = ("-p", "--parameter")


class ReportCommand(TyperCommand):
    """Reads `-p NAME VALUE` as papermill does: the two words after -p, whatever they look like
    (a VALUE may start with '-'). typer options take one word each, so each pair is joined first."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        joined: list[str] = []
        i = 0
        while i < len(args):
            if args[i] == "--":
                joined += args[i:]
                break
            if args[i] in _P_FLAGS:
                if i + 2 >= len(args):
                    fail(f"{args[i]}: expected NAME VALUE, got {' '.join(args[i + 1 :]) or 'nothing'}")
                joined += [args[i], args[i + 1] + _PAIR + args[i + 2]]
                i += 3
            else:
                joined.append(args[i])
                i += 1
        return list(super().parse_args(ctx, joined))


def parameters_help() -> str:
    """The notebook parameters with their defaults and descriptions, for --help."""
    notebooks: dict[type, list[str]] = {}
    for name, cls in NOTEBOOK_PARAMS.items():
        notebooks.setdefault(cls, []).append(name)
    lines = ["Notebook parameters (-p NAME VALUE, VALUE in YAML; or in a -f file), as the notebooks declare them:"]
    for cls, names in notebooks.items():
        lines += ["", f"{', '.join(names)}:"] + [f"  {line}" for line in parameter_lines(cls, align=False)]
    return escape("\n".join(lines))


def _pair(word: str) -> tuple[str, str]:
    name, sep, text = word.partition(_PAIR)
    if not sep:  # e.g. --parameter=NAME, which parse_args leaves as one word
        raise InputError(f"-p: expected NAME VALUE, got {word!r}")
    return name, text


def _yaml_value(name: str, text: str) -> Any:
    if text == "":
        return ""  # `-p study_name ""`: the empty string, not YAML's null
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"parameter {name}: not a YAML value: {str(exc).splitlines()[0]}") from None


def _parameters_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError as exc:
        raise InputError(f"-f: {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"-f: {path} is not a YAML mapping of parameters")
    return data


@contextlib.contextmanager
def _progress_to_stderr() -> Iterator[None]:
    """The pipeline's log lines (which notebook runs, where the PDF went) on the terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[cliffbench report] %(message)s"))
    log = logging.getLogger("cliffbench.report")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def report(
    study_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="study YAML notebook 10 runs (the parameter study_file)")
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option(*_P_FLAGS, metavar="NAME VALUE", help="a notebook parameter (listed below), as papermill's -p"),
    ] = None,
    parameters_file: Annotated[
        list[Path] | None,
        typer.Option("-f", "--parameters-file", metavar="FILE", help="YAML mapping of parameters (repeatable)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="PDF path (default report/whitepaper.pdf)")] = None,
    compare_to: Annotated[
        str | None,
        typer.Option(
            metavar="STUDY", help="add a comparison with this stored study or folder (the parameter compare_to)"
        ),
    ] = None,
) -> None:
    """Run notebooks 00 -> 10 -> 20 -> 30 under papermill (executed copies in report/executed/) and
    render the whitepaper PDF. Parameters: -f files, then -p, then --study-file; a bad one runs nothing."""
    try:
        params: dict[str, Any] = {}
        for path in parameters_file or []:
            params.update(_parameters_file(path))
        pairs = [_pair(word) for word in parameter or []]
        check_parameter_names([*params, *(name for name, _ in pairs)])
        params.update({name: _yaml_value(name, text) for name, text in pairs})
        if study_file is not None:
            params["study_file"] = str(study_file)
        if compare_to is not None:
            params["compare_to"] = compare_to
        # SIGTERM (a kill, a stopped job) unwinds like Ctrl-C: the running kernel is interrupted
        # and its engines stop before this process exits
        signal.signal(signal.SIGTERM, _interrupt)
        with _progress_to_stderr():
            build_report(params, out)
    except InputError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: the kernel was stopped with its engines; finished levels are stored")
        raise typer.Exit(130) from None


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def add_report_command(app: typer.Typer) -> None:
    """Register `report` on `app` (the `cliffbench` app, or `python -m cliffbench report`'s)."""
    app.command("report", cls=ReportCommand, epilog=parameters_help())(report)

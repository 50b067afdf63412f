"""`python -m cliffbench.report ...`: the command `cliffbench report ...`."""

from __future__ import annotations

import typer

from cliffbench.report.command import add_report_command

app = typer.Typer(add_completion=False)
add_report_command(app)

if __name__ == "__main__":
    app(prog_name="python -m cliffbench.report")

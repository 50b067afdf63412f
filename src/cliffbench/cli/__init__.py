"""The `cliffbench` command line: typer commands over the package's functions."""

from cliffbench.cli.commands import app, main

__all__ = ["app", "main"]

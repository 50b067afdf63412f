"""The notebooks are generated: each committed notebooks/*.ipynb is what tools/make_notebooks.py
writes, and its `parameters` cell declares exactly the fields (and defaults) of its params model."""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cliffbench.config import PROJECT_ROOT, field_default
from cliffbench.report.params import NOTEBOOK_PARAMS, NOTEBOOKS, NOTEBOOKS_DIR

REGENERATE = "run .venv/bin/python tools/make_notebooks.py"


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("make_notebooks", PROJECT_ROOT / "tools" / "make_notebooks.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    notebooks: dict[str, dict[str, Any]] = generator.build_notebooks()
    return notebooks


def _committed(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
    return data


def test_generator_writes_every_notebook(built: dict[str, dict[str, Any]]) -> None:
    assert list(built) == list(NOTEBOOKS)
    assert sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_what_the_generator_writes(name: str, built: dict[str, dict[str, Any]]) -> None:
    assert _committed(name) == built[name], f"notebooks/{name}.ipynb is out of date: {REGENERATE}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_declares_its_model(name: str) -> None:
    cells = [c for c in _committed(name)["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters'"
    declared: dict[str, Any] = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        assert isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name), ast.unparse(node)
        declared[node.targets[0].id] = ast.literal_eval(node.value)
    cls = NOTEBOOK_PARAMS[name]
    unknown = set(declared) - set(cls.model_fields)
    assert not unknown, f"{name} declares parameters {cls.__name__} lacks: {sorted(unknown)}"
    assert declared == {n: field_default(cls, n) for n in cls.model_fields}, REGENERATE


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_reads_every_parameter_without_a_warning(name: str, caplog: pytest.LogCaptureFixture) -> None:
    # imported here, not at the top: nbformat pulls in jsonschema (seconds), which every other test
    # module of a session would otherwise wait for at collection
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    with caplog.at_level(logging.WARNING, logger="papermill"):
        found = PythonTranslator.inspect(cell)
    assert [r.getMessage() for r in caplog.records] == []
    assert [p.name for p in found] == list(NOTEBOOK_PARAMS[name].model_fields)


@pytest.mark.slow
def test_a_papermill_run_prints_neither_warning(tmp_path: Path) -> None:
    # notebook 30 on a study that does not exist: papermill parses the parameters and starts a
    # kernel (what prints the two warnings), then the notebook stops at its data; no engine runs
    script = (
        "from papermill.exceptions import PapermillExecutionError\n"
        "from cliffbench.report.pipeline import execute_notebook\n"
        "try:\n"
        f"    execute_notebook('30_whitepaper', {{'study': 'no-such-study'}}, out_dir=Path({str(tmp_path)!r}))\n"
        "except PapermillExecutionError as exc:\n"
        "    print('stopped:', exc.ename)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path\n" + script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "default"},
        check=False,
    )
    assert done.returncode == 0 and "stopped:" in done.stdout, done.stderr
    assert "Unable to parse" not in done.stderr
    assert "without encryption" not in done.stderr and "over TCP" not in done.stderr

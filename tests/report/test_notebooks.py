"""The notebooks are generated: each committed notebooks/*.ipynb is what tools/make_notebooks.py
writes, and its `parameters` cell declares exactly the fields (and defaults) of its params model."""

from __future__ import annotations

import ast
import importlib.util
import json
from typing import Any

import pytest

from cliffbench.config import PROJECT_ROOT
from cliffbench.report.params import NOTEBOOK_PARAMS, NOTEBOOKS, NOTEBOOKS_DIR, field_default

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

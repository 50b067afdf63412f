"""The package's shape: the declared layering holds (and would catch a back-import), no import
cycle, no private name used outside its module, no module over 400 lines."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cliffbench"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 400


def _lint_imports(src_root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_layering_and_acyclic_contracts_hold() -> None:
    done = _lint_imports(ROOT / "src")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_a_planted_back_import_breaks_the_contract(tmp_path: Path) -> None:
    # a function-local import counts as much as a top-level one
    copy = tmp_path / "src" / "cliffbench"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = copy / "config.py"
    config.write_text(
        config.read_text() + "\n\ndef _planted() -> None:\n    from cliffbench import cli  # noqa: F401\n"
    )
    done = _lint_imports(tmp_path / "src")
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "cliffbench.config -> cliffbench.cli" in done.stdout


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_name_is_imported_from_another_module(path: Path) -> None:
    tree = ast.parse(path.read_text())
    here = _module_name(path)
    for node in ast.walk(tree):
        ours = isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("cliffbench"))
        if isinstance(node, ast.ImportFrom) and ours:
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{here} imports private {private} from {node.module}"
        if isinstance(node, ast.Import):
            for a in node.names:
                assert not any(part.startswith("_") for part in a.name.split(".")), f"{here} imports {a.name}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_over_the_line_limit(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.relative_to(SRC)} has {n} lines"


def test_no_test_hook_in_the_package() -> None:
    # fault injection comes from the tests through an injected `on_phase` (bench/progress/run_phases.py), never
    # from the package importing the tests or reading a fault test's environment variable
    imports_tests = re.compile(r"^\s*(from|import)\s+tests(\.|\s)", re.MULTILINE)
    for path in _modules():
        text = path.read_text()
        assert not imports_tests.search(text), f"{_module_name(path)} imports the tests"
        assert "CLIFFBENCH_FAULT" not in text, f"{_module_name(path)} reads a fault test's variable"

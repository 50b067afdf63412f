"""The whitepaper's comparison section (`cliffbench report --compare-to`): two studies of a `fake`
engine through the real sweep, the second with 1 slot instead of 8; the section names the baseline,
the configuration difference on every line, the moved cliff, and draws one overlay per engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliffbench.config import InputError
from cliffbench.report.compare_report import comparison_section
from cliffbench.report.params import AnalysisParams, validate_params
from tests.conftest import run_studies_at_once
from tests.decide.test_compare import WIDE, _spec


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    run_studies_at_once([_spec("base", WIDE), _spec("new", {**WIDE, "max_batch": 1})], root)
    return root


@pytest.mark.slow  # two studies through the real sweep (about 4 s), then the figures: about 5 s
def test_the_section_compares_and_draws_an_overlay_per_engine(root: Path, tmp_path: Path) -> None:
    text = comparison_section(str(root / "new"), str(root / "base"), out_dir=tmp_path)
    assert text.startswith(f"## Compared with {root / 'base'}")
    assert "**A**, base (baseline)" in text and "**B**, new (this run)" in text
    assert "cliff in chat: A above 4 users (no level shown to miss), B 1-4 users: moved down" in text
    table = [line for line in text.splitlines() if line.startswith("| chat |")]
    assert len(table) == 2 and "slower" in table[1]
    assert "differs: max_batch: 8 -> 1" in text and "REGRESSION" in text
    assert (tmp_path / "compare_wide.svg").is_file() and (tmp_path / "compare_wide.png").is_file()
    assert "compare_wide.svg" in text


def test_compare_to_must_name_a_stored_study() -> None:
    with pytest.raises(InputError, match="parameter compare_to: no stored study 'nowhere-xyz'"):
        validate_params(AnalysisParams, {"compare_to": "nowhere-xyz"})
    assert validate_params(AnalysisParams, {}).compare_to == ""

"""`cliffbench compare` on studies of `fake` engines run through the real sweep into tmp folders:
engines pair by configuration (not label), a hardware or workload difference exits 2 naming the
field, --allow-different names it on every line, a changed configuration pairs only when allowed,
and a cliff that moved down is a regression (exit 1). The fakes' timings are the harness's own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cliffbench.bench.spec.study import StudySpec
from cliffbench.cli import app
from cliffbench.config import InputError
from cliffbench.decide.compare import compare_studies, open_study
from tests.conftest import run_studies_at_once

# every test reads the four studies `root` runs through the real sweep: about 10 s of timed levels
pytestmark = pytest.mark.slow
runner = CliRunner()
# 1 slot: at 4 users each request waits for ~3 others (TTFT ~0.07 s); 8 slots: no wait (~0.005 s).
# 24 requests a level: the SLO is judged on the steady ones (the ramp and the drain left out)
WIDE = {"kind": "fake", "label": "wide", "ttft_s": 0.005, "itl_s": 0.002, "max_batch": 8}
NARROW = {"kind": "fake", "label": "narrow", "ttft_s": 0.005, "itl_s": 0.002, "max_batch": 1}
SLO = {"thresholds": {"ttft_s": 0.03, "tpot_s": 1.0}, "percentiles": {"ttft_s": 50, "tpot_s": 50}}


def _spec(name: str, *engines: dict[str, Any], prompt: int = 16) -> StudySpec:
    chat = {
        "name": "chat",
        "workload": {"kind": "fixed", "prompt": {"mean": prompt}, "output": {"mean": 10}},
        "load": {"concurrency": [1, 4], "requests_per_level": 24, "warmup_requests": 1, "repeats": 3},
    }
    # no reruns of busy-flagged levels: the fixtures run their studies side by side, each the others'
    # "foreign" load (a flag is a note in the comparison; a rerun would only double the wait)
    busy = {"reruns": 0}
    return StudySpec.model_validate(
        {"name": name, "tokenizer": "fake", "engines": list(engines), "level_sets": [chat], "slo": SLO, "busy": busy}
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four studies: `a`; `b` the same engines renamed; `c` whose `wide` has 1 slot; `d` a longer prompt."""
    root = tmp_path_factory.mktemp("results")
    renamed = {**WIDE, "label": "wide-renamed"}
    studies = [
        _spec("a", WIDE, NARROW),
        _spec("b", renamed, NARROW),
        _spec("c", {**WIDE, "max_batch": 1}, NARROW),
        _spec("d", WIDE, NARROW, prompt=24),
    ]
    run_studies_at_once(studies, root)
    return root


def _copy_with_cpu(root: Path, study: str, model: str, tmp: Path) -> Path:
    folder = tmp / f"{study}-other-cpu"
    shutil.copytree(root / study, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["cpu"]["model"] = model
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_the_same_engines_renamed_pair_by_configuration(root: Path) -> None:
    a, b = open_study("a", "A", root), open_study("b", "B", root)
    # 2 levels x 3 x 3 repeats reach 99.5 % at most: too few for the default 99 % over 3 metrics
    assert all(e.verdict == "undecided" for e in compare_studies(a, b).engines)
    c = compare_studies(a, b, confidence=0.95)
    assert [(e.engine_a, e.engine_b) for e in c.engines] == [("wide", "wide-renamed"), ("narrow", "narrow")]
    assert not c.only_in_a and not c.only_in_b and not [d for d in c.differences if d.blocking]
    wide = c.engines[0]
    assert [lv.load for lv in wide.levels] == ["1 user", "4 users"]
    assert [m.label for m in wide.metrics] == ["output tok/s", "TTFT p50", "TPOT p50"]
    assert all(m.repeats_a == 6 and m.repeats_b == 6 and m.level >= 1 - 0.05 / 3 for m in wide.metrics)
    assert all(m.level == pytest.approx(0.9) for lv in wide.levels for m in lv.metrics)  # 3 vs 3 repeats
    narrow_cliff = c.engines[1].cliffs[0]
    assert narrow_cliff.a_bracket == (1.0, 4.0) and narrow_cliff.moved == "not moved (brackets overlap)"


def test_a_hardware_difference_exits_2_naming_the_field(root: Path, tmp_path: Path) -> None:
    other = _copy_with_cpu(root, "b", "Some Other CPU", tmp_path)
    with pytest.raises(InputError, match=r"^hardware\.cpu\.model: .* -> Some Other CPU: not comparable"):
        compare_studies(open_study("a", "A", root), open_study(str(other), "B"))
    result = runner.invoke(app, ["compare", str(root / "a"), str(other)])
    assert result.exit_code == 2, result.output
    assert "hardware.cpu.model" in result.output and len(result.output.strip().splitlines()) == 1
    allowed = runner.invoke(app, ["compare", str(root / "a"), str(other), "--allow-different", "--json"])
    assert allowed.exit_code in (0, 1), allowed.output
    doc = json.loads(allowed.output)
    lines = [lv for e in doc["engines"] for lv in e["levels"]]
    assert lines and all("hardware.cpu.model" in lv["differs"] for lv in lines)


def test_a_workload_difference_exits_2(root: Path) -> None:
    with pytest.raises(InputError, match=r"^workload\.chat\.prompt\.mean: 16 -> 24: not comparable"):
        compare_studies(open_study("a", "A", root), open_study("d", "B", root))


def test_a_changed_configuration_pairs_only_when_allowed(root: Path) -> None:
    a, c = open_study("a", "A", root), open_study("c", "B", root)
    strict = compare_studies(a, c)
    assert [e.engine_a for e in strict.engines] == ["narrow"]
    assert strict.only_in_a == ["wide"] and strict.only_in_b == ["wide"]
    loose = compare_studies(a, c, allow_different=True)
    wide = next(e for e in loose.engines if e.engine_a == "wide")
    assert wide.differs == ["max_batch: 8 -> 1"]
    assert all(lv.differs == ["max_batch: 8 -> 1"] for lv in wide.levels)
    # 8 slots met the TTFT budget at 4 users, 1 slot does not: the cliff moved down, a regression
    cliff = wide.cliffs[0]
    assert cliff.a_bracket[0] == 4.0 and cliff.b_bracket == (1.0, 4.0) and cliff.moved == "moved down"
    assert any("cliff in chat moved down" in r for r in loose.regressions) and loose.exit_code == 1
    result = runner.invoke(app, ["compare", str(root / "a"), str(root / "c"), "--allow-different"])
    assert result.exit_code == 1, result.output
    assert "REGRESSION" in result.output and "max_batch: 8 -> 1" in result.output


def test_bad_input_exits_2(root: Path) -> None:
    result = runner.invoke(app, ["compare", str(root / "a"), str(root / "no-such-study")])
    assert result.exit_code == 2 and "B: no stored study" in result.output
    result = runner.invoke(app, ["compare", str(root / "a"), str(root / "b"), "--tolerance", "1.5"])
    assert result.exit_code == 2 and "--tolerance" in result.output

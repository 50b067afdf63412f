"""A reference run (bench/store/reference.py, `cliffbench reference export`): a study of `fake`
engines run through the real sweep, exported, read back as a stored study, and compared with its
original: the same within noise everywhere, exit 0. The copy holds no per-token table, is a few kB
a level, and a damaged level or a copy over its size cap writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store import levels as store
from cliffbench.bench.store.reference import (
    EXPORT_FILE,
    export_reference,
    find_reference,
    load_reference,
    read_export,
)
from cliffbench.cli import app
from cliffbench.config import InputError
from cliffbench.decide.compare import compare_studies, open_study

runner = CliRunner()
WIDE = {"kind": "fake", "label": "wide", "ttft_s": 0.005, "itl_s": 0.002, "max_batch": 8}
NARROW = {"kind": "fake", "label": "narrow", "ttft_s": 0.005, "itl_s": 0.002, "max_batch": 1}
SLO = {"thresholds": {"ttft_s": 0.03, "tpot_s": 1.0}, "percentiles": {"ttft_s": 50, "tpot_s": 50}}
# a compacted level folder: level.json ~5 kB, the requests 4-6 kB for a few dozen requests; the
# default study's 108 levels then stay near 1 MB, well under the 5 MiB cap
MAX_LEVEL_BYTES = 16_000


def study_spec(name: str) -> StudySpec:
    chat = {
        "name": "chat",
        "workload": {"kind": "fixed", "prompt": {"mean": 16}, "output": {"mean": 10}},
        "load": {"concurrency": [1, 4], "requests_per_level": 24, "warmup_requests": 1, "repeats": 3},
    }
    data: dict[str, Any] = {"name": name, "tokenizer": "fake", "engines": [WIDE, NARROW], "level_sets": [chat]}
    # no reruns of busy-flagged levels (as tests/decide/test_compare.py): beside the fast tier's other
    # test worker every level is flagged, and a rerun would only double the wait
    return StudySpec.model_validate({**data, "slo": SLO, "busy": {"reruns": 0}})


@pytest.fixture(scope="module")
def root(reference_study_root: Path) -> Path:
    """Study `a` (study_spec) run through the real sweep, once a session (tests/conftest.py)."""
    return reference_study_root


@pytest.fixture(scope="module")
def exported(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    to = tmp_path_factory.mktemp("reference") / "a"
    export_reference("a", to, root=root)
    return to


def test_the_copy_holds_levels_and_requests_not_tokens(root: Path, exported: Path) -> None:
    stored = sorted(p.name for p in (root / "a" / "levels").iterdir())
    copied = sorted(p.name for p in (exported / "levels").iterdir())
    assert copied == stored and len(copied) == 12  # 2 engines x 2 loads x 3 repeats
    files = {f.name for f in exported.rglob("*") if f.is_file()}
    assert files == {"manifest.json", EXPORT_FILE, "level.json", "requests.parquet"}
    record = read_export(exported)
    assert record is not None and record.study == "a" and record.levels == 12 and record.tables == ["requests"]
    assert (
        json.loads((exported / "manifest.json").read_text())["cpu"]
        == json.loads((root / "a" / "manifest.json").read_text())["cpu"]
    )


def test_it_reads_back_as_the_stored_study(root: Path, exported: Path) -> None:
    original = store.load_results("a", root, tables=("requests",))
    copy = load_reference(exported)
    assert not copy.damaged and copy.tokens.empty and copy.memory.empty
    assert copy.manifest == original.manifest
    key = ["level_key", "request_id"]
    a, b = (r.requests.sort_values(key).reset_index(drop=True) for r in (original, copy))
    assert a.equals(b)
    cols = [c for c in original.levels.columns if c != "files"]
    assert (
        original.levels[cols]
        .sort_values("level_key")
        .reset_index(drop=True)
        .equals(copy.levels[cols].sort_values("level_key").reset_index(drop=True))
    )
    # a damaged copy is caught as a stored study's would be: the level is left out
    victim = next((exported / "levels").iterdir()) / "requests.parquet"
    saved = victim.read_bytes()
    try:
        victim.write_bytes(saved[:-10])
        assert victim.parent.name in load_reference(exported).damaged
    finally:
        victim.write_bytes(saved)


def test_compared_with_its_original_it_is_the_same_within_noise(root: Path, exported: Path) -> None:
    # 2 levels x 3 repeats reach 99.5 % at most: the engine verdicts at 95 % (as tests/decide do)
    c = compare_studies(open_study("a", "A", root), open_study(str(exported), "B"), confidence=0.95)
    assert [e.engine_a for e in c.engines] == ["wide", "narrow"] and not c.only_in_a and not c.only_in_b
    assert not [d for d in c.differences if d.blocking]
    for e in c.engines:
        assert e.verdict == "same within noise", e
        assert all(m.verdict == "same within noise" and m.ratio == pytest.approx(1) for m in e.metrics)
        assert all(m.verdict == "same within noise" for lv in e.levels for m in lv.metrics)
        assert all(x.a_bracket == x.b_bracket and x.moved.startswith("not moved") for x in e.cliffs)
    assert c.exit_code == 0
    result = runner.invoke(app, ["compare", str(root / "a"), str(exported), "--confidence", "0.95"])
    assert result.exit_code == 0, result.output
    assert "no regression" in result.output and "same within noise" in result.output


def test_the_copy_is_bounded(exported: Path, root: Path, tmp_path: Path) -> None:
    record = read_export(exported)
    assert record is not None
    on_disk = sum(f.stat().st_size for f in exported.rglob("*") if f.is_file() and f.name != EXPORT_FILE)
    assert record.size_bytes == on_disk
    for level in (exported / "levels").iterdir():
        assert sum(f.stat().st_size for f in level.iterdir()) < MAX_LEVEL_BYTES, level.name
    stored = sum(f.stat().st_size for f in (root / "a" / "levels").rglob("*") if f.is_file())
    assert on_disk < stored / 2, (on_disk, stored)
    with pytest.raises(InputError, match=r"^--max-mb: the copy of 'a' is .* MiB, over 0.01 MiB; nothing written"):
        export_reference("a", tmp_path / "too-big", root=root, max_mb=0.01)
    assert not (tmp_path / "too-big").exists()


def test_a_damaged_level_is_not_exported(root: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(root / "a", tmp_path / "results" / "a")
    victim = next((tmp_path / "results" / "a" / "levels").iterdir()) / "requests.parquet"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(InputError, match=r"does not match its checksum"):
        export_reference("a", tmp_path / "ref", root=tmp_path / "results")
    assert not (tmp_path / "ref").exists()
    with pytest.raises(InputError, match=r"no stored levels for 'nope'"):
        export_reference("nope", tmp_path / "ref", root=tmp_path / "results")


def test_the_cli_exports_and_compare_reads_it_by_name(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "RESULTS_DIR", root)
    to = tmp_path / "reference" / "a"
    result = runner.invoke(app, ["reference", "export", "a", "--to", str(to)])
    assert result.exit_code == 0, result.output
    assert "12 levels" in result.output and "MiB" in result.output
    assert find_reference("a", tmp_path / "reference") == to and find_reference("b", tmp_path / "reference") is None
    # exported under another name: found by the study its record names
    (tmp_path / "reference" / "a").rename(tmp_path / "reference" / "build-box")
    assert find_reference("a", tmp_path / "reference") == tmp_path / "reference" / "build-box"
    bad = runner.invoke(app, ["reference", "export", "no-such-study", "--to", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no stored levels" in bad.output

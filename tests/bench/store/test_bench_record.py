"""Stored benchmark results that can be compared (bench/store/bench_record.py): the envelope written by
every benchmark, what files stored before it lack, and `cliffbench compare-bench` on two of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cliffbench.bench.store.bench_record import (
    RepeatedNumber,
    audit_results,
    loadavg,
    new_record,
    read_record,
    write_result,
)
from cliffbench.cli import app
from cliffbench.config import InputError

runner = CliRunner()


def _write(path: Path, tok_s: list[float], name: str = "engine_tuning") -> Path:
    numbers = [RepeatedNumber(name="vllm 32 users", unit="tok/s", values=tok_s)]
    record = new_record(name, len(tok_s), numbers, loadavg())
    return write_result(path, {"runs": [{"config": "x"}], "record": "replaced"}, record)


def test_the_envelope_records_when_where_and_every_repeat(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.json", [178.0, 173.0, 179.0])
    doc = json.loads(path.read_text())
    assert doc["runs"] == [{"config": "x"}]  # the payload stays where its readers look
    rec = read_record(path)
    assert rec.date and rec.git_sha and rec.versions["python"] and rec.cpu["model"]
    assert len(rec.loadavg_before) == 3 and rec.repeats == 3
    assert rec.numbers[0].text() == "178 tok/s (173-179, 3 repeats)"
    assert audit_results(tmp_path) == {"a.json": []}


def test_files_stored_before_it_are_reported_not_filled_in(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text(json.dumps({"machine": {"created_at": "2026-01-01", "cpu": {}}, "rows": []}))
    lacks = audit_results(tmp_path)["old.json"]
    assert "date" not in lacks and "cpu" not in lacks
    assert {"git_sha", "versions", "loadavg", "repeats"} <= set(lacks)
    with pytest.raises(InputError, match="has no `record`"):
        read_record(tmp_path / "old.json")
    audited = runner.invoke(app, ["compare-bench", "--audit", str(tmp_path)])
    assert audited.exit_code == 0 and "old.json: lacks git_sha" in audited.output


def test_compare_bench_gates_on_a_slowdown(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", [178.0, 173.0, 179.0, 176.0])
    same = _write(tmp_path / "same.json", [177.0, 175.0, 180.0, 174.0])
    slow = _write(tmp_path / "slow.json", [140.0, 143.0, 139.0, 141.0])
    ok = runner.invoke(app, ["compare-bench", str(a), str(same)])
    assert ok.exit_code == 0 and "same within noise" in ok.output, ok.output
    bad = runner.invoke(app, ["compare-bench", str(a), str(slow)])
    assert bad.exit_code == 1 and "REGRESSION: vllm 32 users x0.79" in bad.output, bad.output
    other = _write(tmp_path / "other.json", [1.0], name="fidelity")
    wrong = runner.invoke(app, ["compare-bench", str(a), str(other)])
    assert wrong.exit_code == 2 and "not the same benchmark" in wrong.output

"""Freshness guard of the decision matrix, on a fixed report date (never the machine's clock)."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cliffbench.cli import app
from cliffbench.config import InputError
from cliffbench.decide import matrix as mx
from cliffbench.decide.matrix.freshness import add_months, as_of_date, is_stale

runner = CliRunner()
AUDIT_DAY = "2026-12-02"  # the day data/matrix/ was last checked


@pytest.fixture(scope="module")
def data() -> mx.MatrixData:
    return mx.load_matrix()


def test_dates_and_months() -> None:
    assert as_of_date("2026-09") == dt.date(2026, 9, 1)  # a month counts from its first day
    assert add_months(dt.date(2026, 8, 31), 6) == dt.date(2027, 2, 28)
    assert add_months(dt.date(2026, 12, 2), 1) == dt.date(2027, 1, 2)
    assert not is_stale("2026-06-02", dt.date(2026, 12, 2), 6)  # exactly six months: not yet
    assert is_stale("2026-06-01", dt.date(2026, 12, 2), 6)
    assert is_stale("2026-05", dt.date(2026, 12, 2), 6)


def test_current_data_passes_on_the_audit_day(data: mx.MatrixData) -> None:
    r = mx.evaluate(mx.MatrixParams(report_date=AUDIT_DAY), data)
    f = r.freshness
    assert f.failing == [] and not f.gpu_price_stale
    # GPT-4o mini's May price is stale, but the model is retiring: not ranked, so the check passes
    assert any(p.option == "openai-gpt-4o-mini" and not p.ranked for p in f.prices)
    assert [s.option for s in f.shutdowns] == ["anthropic-haiku-3-5"]
    # every cell either dated within 12 months or counted stale (and so marked in the PDF)
    for (o, c), cell in data.cells.items():
        fresh12 = not is_stale(cell.as_of, dt.date(2026, 12, 2), 12)
        assert fresh12 or (o, c) in f.stale_cell_keys(), (o, c)


def test_stale_gpu_price_fails_the_ranked_self_hosted_options(data: mx.MatrixData) -> None:
    # Lambda's A100 price is of 2026-09: stale after 2027-03-01
    r = mx.evaluate(mx.MatrixParams(report_date="2027-04-15"), data)
    failing = {(p.option, p.what.split(" (")[0]) for p in r.freshness.failing}
    assert ("a100-40gb", "GPU price") in failing and r.freshness.gpu_price_stale
    assert r.freshness.stale("vllm", "cost")  # the cost cell computed from that price is marked
    assert r.freshness.stale("openai-gpt-6-luna", "cost", "managed")  # its price is of 2026-10-14
    # the user's own price is never stale
    own = mx.evaluate(mx.MatrixParams(report_date="2027-04-15", gpu_prices={"a100-40gb": 1.5}), data)
    assert not own.freshness.gpu_price_stale
    assert all(not p.what.startswith("GPU price") for p in own.freshness.failing)
    # the Modal A100 80GB serverless rate (2026-05-07) is already stale on the audit day
    serverless = mx.MatrixParams(report_date=AUDIT_DAY, hardware="a100-80gb", pricing_model="serverless")
    assert mx.evaluate(serverless, data).freshness.gpu_price_stale


def test_shutdown_before_the_report_date_is_flagged_and_unranked(data: mx.MatrixData) -> None:
    before = mx.evaluate(mx.MatrixParams(report_date="2027-01-13"), data)
    after = mx.evaluate(mx.MatrixParams(report_date="2027-01-15"), data)
    assert "openai-gpt-4o-mini" not in {s.option for s in before.freshness.shutdowns}
    assert "openai-gpt-4o-mini" in {s.option for s in after.freshness.shutdowns}
    assert "shut down 2027-01-14 as announced" in after.excluded["openai-gpt-4o-mini"]


def _copy_with(tmp_path: Path, option: str, **fields: str) -> Path:
    root = tmp_path / "m"
    shutil.copytree(mx.MATRIX_DIR, root)
    path = root / "options.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["option_id"] == option:
            row.update(fields)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return root


def test_active_model_past_its_shutdown_fails_the_check(tmp_path: Path) -> None:
    day = "2026-12-01"
    root = _copy_with(tmp_path, "anthropic-haiku-4-5", shutdown_date=day, shutdown_source="https://example.org/x")
    r = mx.evaluate(mx.MatrixParams(report_date=AUDIT_DAY), mx.load_matrix(root))
    assert "anthropic-haiku-4-5" in r.excluded and "anthropic-haiku-4-5" not in r.eligible
    assert [(s.option, s.ranked) for s in r.freshness.failing] == [("anthropic-haiku-4-5", True)]


def test_stale_managed_price_of_a_ranked_option_fails(tmp_path: Path) -> None:
    root = _copy_with(tmp_path, "together", price_as_of="2026-01")
    r = mx.evaluate(mx.MatrixParams(report_date=AUDIT_DAY), mx.load_matrix(root))
    assert [(p.option, p.what) for p in r.freshness.failing] == [("together", "token price")]


def test_bad_report_date() -> None:
    with pytest.raises(InputError, match=r"report_date: not a date: '2026-02-30'; expected YYYY-MM-DD"):
        mx.check_params(mx.MatrixParams(report_date="2026-02-30"))


# ---- cliffbench matrix --check -------------------------------------------------------------------


def test_check_passes_on_the_audit_day() -> None:
    result = runner.invoke(app, ["matrix", "--check", "--report-date", AUDIT_DAY])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "matrix check passed" in text
    n = mx.load_matrix().verified_counts()
    share = round(100 * n["primary"] / sum(n.values()))
    assert f"{n['primary']} of {sum(n.values())} cells ({share}%) verified against a primary source" in text
    assert "past shutdown, not ranked: anthropic-haiku-3-5, shutdown 2026-02-19" in text
    assert "stale cell: ollama/ops, as of 2025-06" in text


def test_check_fails_with_exit_1_on_a_stale_ranked_price() -> None:
    result = runner.invoke(app, ["matrix", "--check", "--report-date", "2027-04-15"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "STALE PRICE, ranked: a100-40gb GPU price (Lambda 1x A100 SXM 40GB, vm-on-demand), as of 2026-09" in text
    assert "matrix check failed" in text
    longer = runner.invoke(app, ["matrix", "--check", "--report-date", "2027-04-15", "--stale-after-months", "12"])
    assert longer.exit_code == 0, longer.output


def test_check_bad_input_is_exit_2() -> None:
    result = runner.invoke(app, ["matrix", "--check", "--report-date", "soon"])
    assert result.exit_code == 2 and "--report-date: String should match pattern" in " ".join(result.output.split())
    result = runner.invoke(app, ["matrix", "--check", "--stale-after-months", "0"])
    assert result.exit_code == 2 and "--stale-after-months" in result.output

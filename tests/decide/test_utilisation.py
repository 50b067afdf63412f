"""Utilisation in the matrix's cost model: GPU-hours paid a day / output tokens served a day (staff and
exit left out, engineer_usd_per_year=0, except where a test says), and staff as a fixed cost that
changes the ranking as utilisation falls."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cliffbench.cli import app
from cliffbench.config import InputError
from cliffbench.decide import matrix as mx
from cliffbench.decide.matrix.daily import self_hosted_daily

runner = CliRunner()
DAY = "2026-12-02"


@pytest.fixture(scope="module")
def data() -> mx.MatrixData:
    return mx.load_matrix()


def _cost(data: mx.MatrixData, option: str, **profile: object) -> float:
    r = mx.evaluate(
        mx.MatrixParams(report_date=DAY, gpu_prices={"a100-40gb": 2.0}, engineer_usd_per_year=0.0, **profile), data
    )
    return float(r.values.at[option, "cost"])  # type: ignore[arg-type]


def test_idle_hours_are_paid(data: mx.MatrixData) -> None:
    p = mx.MatrixParams(gpu_prices={"a100-40gb": 2.0})
    peak = mx.self_hosted_estimate(data.options["vllm"], p)
    assert peak is not None and peak.replicas == 1
    full = 2.0 / (peak.output_tok_s * 3600) * 1e6  # busy around the clock: the old model
    assert _cost(data, "vllm") == pytest.approx(full, rel=1e-9)
    # 8 h a day at peak, idle the rest: 24 GPU-hours paid for 8 hours of tokens
    eight = 24 * 2.0 / (peak.output_tok_s * 3600 * 8) * 1e6
    assert _cost(data, "vllm", peak_hours=8.0) == pytest.approx(eight, rel=1e-9) == pytest.approx(3 * full)
    assert _cost(data, "vllm", utilisation=1 / 3) == pytest.approx(eight, rel=1e-9)
    # managed APIs cost the same per token at any load
    assert _cost(data, "openai-gpt-6-luna", utilisation=0.1) == _cost(data, "openai-gpt-6-luna")


def test_offpeak_users_add_tokens(data: mx.MatrixData) -> None:
    p = mx.MatrixParams(gpu_prices={"a100-40gb": 2.0})
    peak = mx.self_hosted_estimate(data.options["vllm"], p)
    off = mx.self_hosted_estimate(data.options["vllm"], p, 2)
    assert peak is not None and off is not None
    tokens = 3600 * (peak.output_tok_s * 8 + off.output_tok_s * 16)
    assert _cost(data, "vllm", peak_hours=8.0, offpeak_users=2) == pytest.approx(24 * 2.0 / tokens * 1e6, rel=1e-9)
    # Ollama's one slot is full with 2 users as with 25: the same tokens all day, the same cost
    assert _cost(data, "ollama", peak_hours=8.0, offpeak_users=2) == pytest.approx(_cost(data, "ollama"), rel=1e-9)


def test_autoscaling_pays_the_replicas_each_period_needs(data: mx.MatrixData) -> None:
    p = mx.MatrixParams(users=400, ttft_slo_s=0.5, gpu_prices={"a100-40gb": 2.0}, utilisation=0.25, autoscale=True)
    routed, single = data.options["vllm-litellm"], data.options["vllm"]
    fixed = self_hosted_daily(routed, p.model_copy(update={"autoscale": False}), 2.0)
    scaled = self_hosted_daily(routed, p, 2.0)
    to_zero = self_hosted_daily(routed, p.model_copy(update={"min_replicas": 0}), 2.0)
    assert fixed is not None and scaled is not None and to_zero is not None
    n = fixed.peak.replicas
    assert n > 1 and scaled.autoscaled and not fixed.autoscaled
    assert fixed.gpu_hours == pytest.approx(24 * n)
    assert scaled.gpu_hours == pytest.approx(6 * n + 18 * 1)  # one replica kept through the idle hours
    assert to_zero.gpu_hours == pytest.approx(6 * n)  # scale to zero: idle hours cost nothing
    busy = self_hosted_daily(routed, p.model_copy(update={"utilisation": 1.0, "autoscale": False}), 2.0)
    assert busy is not None and to_zero.usd_per_1m == pytest.approx(busy.usd_per_1m, rel=1e-9)
    # one server cannot scale: autoscaling changes nothing for it
    a = self_hosted_daily(single, p, 2.0)
    b = self_hosted_daily(single, p.model_copy(update={"autoscale": False}), 2.0)
    assert a is not None and b is not None and a.usd_per_1m == b.usd_per_1m and not a.autoscaled


def test_sweep_finds_where_the_cheapest_option_flips(data: mx.MatrixData) -> None:
    # at $1/h the A100 undercuts Together's $0.18 / $0.18 at full load; it costs 1/u as much at utilisation u
    p = mx.MatrixParams(report_date=DAY, gpu_prices={"a100-40gb": 1.0}, engineer_usd_per_year=0.0)
    r = mx.evaluate(p, data)
    u = r.utilisation["utilisation"].tolist()
    self_hosted = dict(zip(u, r.utilisation["self_hosted_usd_per_1m"].tolist(), strict=True))
    sh, managed = self_hosted[1.0], float(r.utilisation["managed_usd_per_1m"].iloc[0])
    assert self_hosted[0.5] == pytest.approx(2 * sh, rel=1e-9)
    assert sh < managed == pytest.approx(0.54)  # Together: (512 x 0.18 + 256 x 0.18) / 256
    [flip] = [f for f in r.utilisation_flips if f.what == "cheapest"]
    assert flip.after == "together" and data.options[flip.before].kind == "self-hosted"
    assert flip.below == pytest.approx(sh / managed, rel=2e-3)  # the break-even utilisation
    # with cost the only weight, the top choice flips at the same utilisation
    only_cost = mx.evaluate(p.model_copy(update={"weights": dict.fromkeys(data.criteria, 0.0) | {"cost": 1.0}}), data)
    [top] = [f for f in only_cost.utilisation_flips if f.what == "top"]
    assert top.after == "together" and top.below == pytest.approx(sh / managed, rel=2e-3)


def test_utilisation_changes_the_ranking_where_cost_decides(data: mx.MatrixData) -> None:
    # cost decides (the only weight); staff and exit are fixed costs over the reader's demand, so as the
    # day's peak hours fall the self-hosted GPU-hours and the ops staff weigh more per token
    only_cost = dict.fromkeys(data.criteria, 0.0) | {"cost": 1.0}
    p = mx.MatrixParams(report_date=DAY, gpu_prices={"a100-40gb": 1.0}, weights=only_cost, users=200)
    busy = mx.evaluate(p.model_copy(update={"utilisation": 1.0}), data)
    idle = mx.evaluate(p.model_copy(update={"utilisation": 0.05}), data)
    assert data.options[busy.top].kind == "self-hosted"
    assert data.options[idle.top].kind == "managed"
    # the ranking is the reader's utilisation's: staff per token grows as the demand falls
    assert idle.costs[busy.top].staff == pytest.approx(busy.costs[busy.top].staff / 0.05, rel=1e-6)
    assert idle.demand_tokens_per_day == pytest.approx(0.05 * busy.demand_tokens_per_day, rel=1e-9)
    [flip] = [f for f in busy.utilisation_flips if f.what == "top"]
    assert flip.before == busy.top and data.options[flip.after].kind == "managed"


@pytest.mark.parametrize(
    ("profile", "needle"),
    [
        ({"offpeak_users": 30}, "offpeak_users: 30 exceeds the peak users 25"),
        ({"utilisation": 0.5, "peak_hours": 8.0}, "utilisation: give either a utilisation or a load profile"),
    ],
)
def test_bad_profile(data: mx.MatrixData, profile: dict[str, object], needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        mx.check_params(mx.MatrixParams(**profile), data)


def test_cli_profile_flags() -> None:
    args = ["matrix", "--report-date", DAY, "--gpu-price", "a100-40gb=1", "--peak-hours", "8", "--offpeak-users", "2"]
    args += ["--engineer-usd-per-year", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert (
        "Load profile: 25 users for 8 h a day, 2 users the rest; the fleet sized for the peak is paid all day" in text
    )
    assert "The cheapest option changes below u = " in text
    bad = runner.invoke(app, ["matrix", "--utilisation", "0.5", "--peak-hours", "8"])
    assert bad.exit_code == 2 and "--utilisation: give either a utilisation or a load profile" in bad.output
    bad = runner.invoke(app, ["matrix", "--utilisation", "1.5"])
    assert bad.exit_code == 2 and "--utilisation" in bad.output

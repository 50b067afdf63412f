"""The Architecture Decision Matrix: data schema, cost arithmetic, scoring, sensitivity, exports."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cliffbench.config import InputError
from cliffbench.decide import matrix as mx
from cliffbench.report import matrix_pdf as mxr

A100_40_GBS, A100_TFLOPS = 1555e9, 312e12
N_PARAMS_8B = 8_030_261_248
KV_BYTES_PER_TOKEN_8B = 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 KV heads, head_dim 128, bf16


@pytest.fixture(scope="module")
def data() -> mx.MatrixData:
    return mx.load_matrix()


@pytest.fixture(scope="module")
def result(data: mx.MatrixData) -> mx.MatrixResult:
    return mx.evaluate(mx.MatrixParams(), data)


# ---- data -----------------------------------------------------------------------------------------


def test_every_cell_sourced_and_dated(data: mx.MatrixData) -> None:
    scored = [c for c, cr in data.criteria.items() if cr.kind == "score"]
    for o in data.options:
        for c in scored:
            cell = data.cells[(o, c)]
            assert cell.source_url.startswith("http") and cell.as_of[:4].isdigit()
            assert cell.rationale if cell.known else cell.unknown_reason
    for opt in data.options.values():
        if opt.priced:
            assert opt.currency == "USD" and opt.price_as_of and opt.price_source.startswith("http")
        if opt.status in ("retiring", "retired"):
            assert opt.shutdown_date and opt.shutdown_source.startswith("http")
    for p in data.gpu_prices:
        assert p.currency == "USD" and p.source_url.startswith("http") and p.as_of and p.pricing_model


def test_every_hardware_priced_per_pricing_model(data: mx.MatrixData) -> None:
    from cliffbench.hardware import HARDWARE

    assert {p.hardware for p in data.gpu_prices} == set(HARDWARE)
    # the serverless per-second rate of the A100 80GB is never offered as an on-demand VM price
    assert {p.pricing_model for p in data.prices_for("a100-80gb")} == {"serverless"}
    a100 = mx.gpu_price(mx.MatrixParams(), data)
    assert (a100.usd_per_hour, a100.pricing_model, a100.as_of) == (1.99, "vm-on-demand", "2026-09")
    h100 = mx.gpu_price(mx.MatrixParams(hardware="h100-sxm"), data)
    assert h100.usd_per_hour == 3.99 and h100.provider.startswith("RunPod Secure")  # cheapest on-demand row
    market = mx.gpu_price(mx.MatrixParams(hardware="h100-sxm", pricing_model="marketplace"), data)
    assert market.usd_per_hour == 2.69


def test_retired_models_shown_not_ranked(data: mx.MatrixData, result: mx.MatrixResult) -> None:
    assert data.options["anthropic-haiku-3-5"].status == "retired"
    assert data.options["anthropic-haiku-3-5"].shutdown_date == "2026-02-19"
    assert data.options["openai-gpt-4o-mini"].shutdown_date == "2027-01-14"
    for o in ("anthropic-haiku-3-5", "openai-gpt-4o-mini", "anyscale"):
        assert math.isnan(result.scores.rank.loc[o]) and o not in result.eligible
    assert "retired 2026-02-19" in mx.exclusion_reason(data.options["anthropic-haiku-3-5"])
    assert {"anthropic-haiku-4-5", "anthropic-haiku-5-5", "openai-gpt-6-luna"} <= set(result.eligible)


def test_required_options_and_criteria(data: mx.MatrixData) -> None:
    assert {"ollama", "llamacpp", "vllm", "vllm-litellm", "sglang", "tgi", "together"} <= set(data.options)
    assert {"openai-gpt-4o-mini", "openai-gpt-6-luna", "anthropic-haiku-4-5", "anthropic-haiku-5-5"} <= set(
        data.options
    )
    assert data.options["anyscale"].status == "discontinued"
    assert {"tensorrt-llm", "lmdeploy", "gpt-oss", "aws-bedrock", "azure-openai", "groq", "together-dedicated"} <= set(
        data.options
    )
    # the seed's options: OpenAI's enterprise offering, a consultancy-run self-hosted option, Anyscale as it stands
    assert {"openai-enterprise", "managed-vllm", "anyscale-platform"} <= set(data.options)
    assert data.options["anyscale-platform"].status == "active" and data.options["managed-vllm"].kind == "self-hosted"
    # grouped as the seed groups them, every group with a criterion
    assert {cr.group for cr in data.criteria.values()} == {"deployment", "compliance", "cost", "lock-in"}
    # certifications named per managed option
    assert set(data.certifications) >= {"openai-enterprise", "anthropic-haiku-4-5", "aws-bedrock", "together"}
    assert set(data.criteria) == {
        "deployment",
        "compliance",
        "retention",
        "residency",
        "concurrency",
        "cost",
        "ttft",
        "lockin",
        "ops",
        "model_choice",
        "structured_output",
        "prefix_caching",
        "multi_gpu",
        "hardware_reach",
        "licence",
        "deprecation_risk",
        "saturation",
    }


def test_unknowns_stay_unknown_and_not_applicable_is_not_flagged(data: mx.MatrixData, result: mx.MatrixResult) -> None:
    # a new managed option with no sourced price: its cost is unknown, left out and listed, never guessed
    for o in ("aws-bedrock", "azure-openai", "groq", "together-dedicated"):
        assert data.cells[(o, "cost")].value == "unknown" and not data.options[o].priced
        assert result.values.isna().loc[o, "cost"] and result.scores.normalised.isna().loc[o, "cost"]
        assert "cost" in result.scores.flagged[o]
    # gpt-oss is self-hosted but not modelled (no roofline shape for a mixture of experts): not estimated
    assert result.values.isna().loc["gpt-oss", "cost"] and "cost" in result.scores.flagged["gpt-oss"]
    assert "gpt-oss" not in set(mx.cost_curve(mx.MatrixParams(), data, [1, 4])["option"])
    # multi-GPU does not apply to a managed API: left out of its mean, but not flagged as unknown
    assert data.cells[("openai-gpt-6-luna", "multi_gpu")].value == "n/a"
    assert result.scores.normalised.isna().loc["openai-gpt-6-luna", "multi_gpu"]
    assert "multi_gpu" not in result.scores.flagged.get("openai-gpt-6-luna", [])
    # every unknown cell says why
    for (o, c), cell in data.cells.items():
        if not cell.known:
            assert cell.unknown_reason, (o, c)


def test_hardware_reach_score_is_the_number_of_platforms(data: mx.MatrixData, tmp_path: Path) -> None:
    from cliffbench.decide.matrix.data import reach

    assert reach(data.cells[("llamacpp", "hardware_reach")]) == {"cuda", "rocm", "cpu", "apple-silicon", "windows"}
    assert reach(data.cells[("tensorrt-llm", "hardware_reach")]) == {"cuda"}
    shutil.copytree(mx.MATRIX_DIR, tmp_path / "m")
    cells = tmp_path / "m" / "cells.csv"
    text = cells.read_text().replace("tensorrt-llm,hardware_reach,cuda,1,", "tensorrt-llm,hardware_reach,cuda,3,")
    cells.write_text(text)
    with pytest.raises(InputError, match=r"\(tensorrt-llm, hardware_reach\): score 3 must be the number of platforms"):
        mx.load_matrix(tmp_path / "m")


def test_bad_cell_names_line(tmp_path: Path) -> None:
    shutil.copytree(mx.MATRIX_DIR, tmp_path / "m")
    cells = tmp_path / "m" / "cells.csv"
    with cells.open(newline="") as f:
        rows = list(csv.reader(f))
    rows[1][7] = "last spring"  # as_of
    with cells.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(InputError, match=r"cells.csv line 2 \(option_id \S+\): as_of"):
        mx.load_matrix(tmp_path / "m")


def test_missing_cell_is_an_error(tmp_path: Path) -> None:
    shutil.copytree(mx.MATRIX_DIR, tmp_path / "m")
    cells = tmp_path / "m" / "cells.csv"
    lines = cells.read_text().splitlines()
    cells.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    with pytest.raises(InputError, match="missing cell"):
        mx.load_matrix(tmp_path / "m")


# ---- cost model -----------------------------------------------------------------------------------


def test_managed_cost_by_hand(data: mx.MatrixData) -> None:
    # GPT-4o mini: 512 x $0.15 + 256 x $0.60 per 1M, over 256 output tokens = $0.90 per 1M output
    assert mx.managed_cost_usd_per_1m(data.options["openai-gpt-4o-mini"], 512, 256) == pytest.approx(0.90)
    assert mx.managed_cost_usd_per_1m(data.options["openai-gpt-4o-mini"], 0 + 1, 1) == pytest.approx(0.75)
    assert math.isnan(mx.managed_cost_usd_per_1m(data.options["anyscale"], 512, 256))


def test_self_hosted_cost_by_hand(data: mx.MatrixData) -> None:
    p = mx.MatrixParams(users=1, input_tokens=100, output_tokens=100, efficiency=0.5, gpu_prices={"a100-40gb": 2.0})
    prefill = A100_TFLOPS / (2 * N_PARAMS_8B) * 0.5
    step_bytes = N_PARAMS_8B * 2 + (100 + 50) * KV_BYTES_PER_TOKEN_8B
    decode = A100_40_GBS / step_bytes * 0.5
    service = 100 / prefill + 100 / decode
    tok_s = 100 / service
    est = mx.self_hosted_estimate(data.options["vllm"], p)
    assert est is not None and est.replicas == 1 and est.batch == 1
    assert est.output_tok_s == pytest.approx(tok_s, rel=1e-9)
    assert est.ttft_s == pytest.approx(100 / prefill + 1 / decode, rel=1e-9)
    r = mx.evaluate(p, data)
    assert r.costs["vllm"].compute == pytest.approx(2.0 / (tok_s * 3600) * 1e6, rel=1e-9)
    assert est.source == "roofline: a100-40gb, llama-3.1-8b bf16, batch 1, x0.5 efficiency"
    # without staff and exit the cost criterion is the GPU-hours alone
    bare = mx.evaluate(p.model_copy(update={"engineer_usd_per_year": 0.0}), data)
    assert bare.values.loc["vllm", "cost"] == pytest.approx(r.costs["vllm"].compute, rel=1e-12)


def test_total_cost_by_hand(data: mx.MatrixData) -> None:
    # staff: ops_fte x the engineer's year a day; exit: weeks x a week's cost over the horizon; both per
    # 1M of the demand, the most tokens a day a self-hosted option serves within the SLO
    p = mx.MatrixParams(engineer_usd_per_year=104_000.0, horizon_months=12.0, staff_fte={"vllm": 0.5})
    r = mx.evaluate(p, data)
    demand = r.demand_tokens_per_day
    within = [o for o, ok in r.meets_slo.items() if ok]
    served = {o: r.costs[o].compute for o in within}  # every self-hosted option here pays the same GPU-hour
    assert within and demand > 0 and served
    staff_day = 0.5 * 104_000.0 / 365.25
    assert r.costs["vllm"].staff == pytest.approx(staff_day / demand * 1e6, rel=1e-9)
    # vLLM: open weights, OpenAI-compatible, data on your hosts: the base week only
    assert r.costs["vllm"].exit_weeks == 1.0
    assert r.costs["vllm"].exit == pytest.approx(104_000.0 / 52 / (12 * 365.25 / 12) / demand * 1e6, rel=1e-9)
    # Anthropic: its own API (+2), closed weights (+4), data with the vendor (+1)
    assert r.costs["anthropic-haiku-4-5"].exit_weeks == 8.0
    luna = r.costs["openai-gpt-6-luna"]
    assert luna.compute == pytest.approx((512 * 0.10 + 256 * 0.50) / 256)
    assert luna.total == pytest.approx(luna.compute + luna.staff + luna.exit)
    assert r.values.loc["openai-gpt-6-luna", "cost"] == pytest.approx(luna.total)


def test_slots_queue_by_littles_law(data: mx.MatrixData) -> None:
    # Ollama's one slot (its default since v0.10.0) with 2 closed-loop users: each request waits one service time
    assert data.options["ollama"].slots == 1
    p = mx.MatrixParams(users=2, input_tokens=64, output_tokens=64)
    one = mx.self_hosted_estimate(data.options["ollama"], p.model_copy(update={"users": 1}))
    two = mx.self_hosted_estimate(data.options["ollama"], p)
    assert one is not None and two is not None and two.batch == 1
    assert two.output_tok_s == pytest.approx(one.output_tok_s)
    service = 64 / one.output_tok_s  # requests/s = tok/s / 64; the slot is held 1 / (req/s)
    assert two.ttft_s - one.ttft_s == pytest.approx(service, rel=1e-9)


def test_router_adds_replicas_until_slo(data: mx.MatrixData) -> None:
    p = mx.MatrixParams(users=1000, ttft_slo_s=0.5)
    alone = mx.self_hosted_estimate(data.options["vllm"], p)
    routed = mx.self_hosted_estimate(data.options["vllm-litellm"], p)
    assert alone is not None and routed is not None
    assert alone.replicas == 1 and not alone.meets_slo
    assert routed.replicas > 1 and routed.meets_slo and routed.ttft_s <= 0.5


def test_cost_curve_shapes(data: mx.MatrixData) -> None:
    curve = mx.cost_curve(mx.MatrixParams(), data, [1, 2, 4, 8, 16, 32])
    v = curve[curve["option"] == "vllm"]["usd_per_1m_output"].to_numpy()
    assert (np.diff(v) < 0).all()  # self-hosted: cheaper with load
    o = curve[curve["option"] == "ollama"]["usd_per_1m_output"].to_numpy()
    assert o[0] == pytest.approx(o[-1])  # flat from the start: its one slot is full at one user
    api = curve[curve["option"] == "openai-gpt-6-luna"]["usd_per_1m_output"]
    assert api.nunique() == 1
    assert not {"anyscale", "anthropic-haiku-3-5", "openai-gpt-4o-mini"} & set(curve["option"])


@pytest.mark.slow  # builds and pools a measured GPU study: about 5 s
def test_measured_verdict_reaches_the_matrix(data: mx.MatrixData) -> None:
    from cliffbench.bench.metrics.repeats import SloJudge
    from cliffbench.decide.tree import engine_cliff_details, pooled_levels, select_levels
    from tests.decide.measured_study import USERS, gpu_study

    # the study ran the matrix's GPU and model: at each measured user count its verdict is the matrix's
    res = gpu_study()
    judge = SloJudge.of(res.study.slo, ttft_s=2.0)
    cliffs = engine_cliff_details(select_levels(pooled_levels(res, judge)))
    seen = set()
    for users in USERS:
        r = mx.evaluate(mx.MatrixParams(users=users, ttft_slo_s=2.0, report_date="2026-12-06"), data, study=res)
        for option, engine in (("vllm", "vllm"), ("ollama", "ollama"), ("llamacpp", "llama-server")):
            fam = r.measured[option]
            assert fam.engine == engine and fam.same_target
            study_meets = users <= cliffs[engine].meets_up_to  # the study's own bracket
            assert r.meets_slo[option] == study_meets, (option, users)
            assert ("(misses SLO)" in str(r.text.loc[option, "ttft"])) == (not study_meets)
            assert r.throughput_source[option].startswith(f"measured: study a100-box, engine {engine}")
            seen.add(study_meets)
        assert r.throughput_source["sglang"].startswith("roofline")  # no SGLang engine: never measured
        assert r.capacity["ollama"][0] == 2 and r.capacity["llamacpp"][0] == 4 and r.capacity["vllm"][0] == 32
    assert seen == {True, False}
    # Ollama measured at 2 users serves 55 tok/s: its GPU-hours cost that, not the roofline's
    r = mx.evaluate(mx.MatrixParams(users=2, report_date="2026-12-06", gpu_prices={"a100-40gb": 2.0}), data, study=res)
    assert r.costs["ollama"].compute == pytest.approx(2.0 / (55.0 * 1.05 * 3600) * 1e6, rel=1e-9)
    # on another GPU the same study has no probe to project from: the roofline, labelled so
    h100 = mx.evaluate(mx.MatrixParams(hardware="h100-sxm", report_date="2026-12-06"), data, study=res)
    assert h100.throughput_source["vllm"].startswith("roofline (no probe in the study to project from)")


def test_study_on_other_hardware_is_projected(data: mx.MatrixData) -> None:
    from tests.report.study_data import fake_results

    # a CPU study (probed: 10 GB/s, 0.2 bf16 TFLOP/s): projected to the A100 at the measured efficiency
    res = fake_results(seed=1)
    p = mx.MatrixParams(report_date="2026-12-06", ttft_slo_s=0.5)
    r = mx.evaluate(p, data, study=res)
    fam = r.measured["vllm"]
    assert not fam.same_target and fam.projectable and fam.efficiency > 0
    eff = min(fam.efficiency, 1.0)
    src = r.throughput_source["vllm"]
    assert src.startswith("projected: a100-40gb, llama-3.1-8b bf16") and f"x{eff:.3g} efficiency" in src
    assert "from study fake, engine vllm on 3 CPU cores (Test CPU 9000), no GPU" in src
    # the projection is the roofline cost model at the measured efficiency, not at the default 0.5
    at_eff = mx.self_hosted_estimate(data.options["vllm"], p.model_copy(update={"efficiency": eff}))
    assert at_eff is not None and r.values.loc["vllm", "ttft"] == pytest.approx(at_eff.ttft_s, rel=1e-12)
    n, how = r.capacity["vllm"]
    assert how.startswith("projected to a100-40gb") and n >= 1
    assert r.capacity["sglang"][1].endswith("(not measured)")


# ---- scoring and sensitivity ----------------------------------------------------------------------


def _hand() -> tuple[pd.DataFrame, dict[str, str]]:
    values = pd.DataFrame({"c1": [5.0, 1.0, 3.0], "c2": [1.0, 5.0, np.nan]}, index=["A", "B", "C"])
    return values, {"c1": "higher", "c2": "higher"}


def test_score_by_hand() -> None:
    values, dirs = _hand()
    s = mx.score_matrix(values, dirs, {"c1": 2, "c2": 1})
    assert s.normalised.loc["C", "c1"] == pytest.approx(0.5)
    assert s.normalised.isna().loc["C", "c2"]
    assert s.total.to_dict() == pytest.approx({"A": 2 / 3, "B": 1 / 3, "C": 0.5})  # C: c1 only
    assert s.rank.to_dict() == {"A": 1.0, "C": 2.0, "B": 3.0}
    assert s.flagged == {"C": ["c2"]}


def test_lower_is_better_and_log_scale() -> None:
    values = pd.DataFrame({"cost": [0.1, 1.0, 10.0]}, index=["a", "b", "c"])
    s = mx.score_matrix(values, {"cost": "lower"}, {"cost": 1}, log_scale=("cost",))
    assert s.normalised["cost"].tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_weights_change_the_ranking(data: mx.MatrixData, result: mx.MatrixResult) -> None:
    assert data.options[result.top].kind == "self-hosted"
    ops_first = mx.evaluate(mx.MatrixParams(weights={"ops": 20}), data)
    assert data.options[ops_first.top].kind == "managed"
    cheap = mx.evaluate(mx.MatrixParams(weights={c: 0 for c in data.criteria} | {"cost": 1}), data)
    costs = cheap.values.loc[cheap.eligible, "cost"]
    assert cheap.top in set(costs[costs == costs.min()].index)


def test_sensitivity_finds_known_flip() -> None:
    values, dirs = _hand()
    values = values.drop(index="C")
    grid, th = mx.sensitivity(values, dirs, {"c1": 2, "c2": 1}, ["A", "B"])
    flips = {(r.criterion, r.factor) for r in grid.itertuples() if r.flips}
    assert flips == {("c1", 0.0), ("c2", 5.0)}  # x2 of c2 and x0.5 of c1 only tie
    th = th.set_index("criterion")
    assert th.loc["c2", "up"] == pytest.approx(2.0, rel=1e-3) and th.loc["c2", "up_top"] == "B"
    assert th.loc["c1", "down"] == pytest.approx(0.5, rel=1e-3) and th.loc["c1", "down_top"] == "B"


def test_a_tie_is_called_a_tie(data: mx.MatrixData) -> None:
    from cliffbench.report.matrix_text import choice_sentence

    values = pd.DataFrame({"cost": [5.0, 4.0, 1.0], "ops": [4.0, 5.0, 1.0]}, index=["vllm", "together", "ollama"])
    dirs = {"cost": "higher", "ops": "higher"}
    eligible = ["vllm", "together", "ollama"]

    def choice(weights: dict[str, float]) -> mx.TopChoice:
        total = mx.score_matrix(values, dirs, weights, eligible).total
        return mx.top_choice(total, mx.sensitivity(values, dirs, weights, eligible)[1], eligible)

    # vLLM leads by a hair: ops x1.1 makes Together first, inside x0.8..x1.25: a tie, not a top choice
    tie = choice({"cost": 1.1, "ops": 1.0})
    assert tie.tie and (tie.top, tie.other) == ("vllm", "together")
    assert tie.pivot in ("cost", "ops") and 0.8 <= tie.pivot_factor <= 1.25
    weights = {"cost": 1.1, "ops": 1.0, **{c: 0.0 for c in data.criteria if c not in ("cost", "ops")}}
    text = choice_sentence(data, tie, weights)
    assert text.startswith("**A tie between Self-hosted vLLM and Together AI**; it turns on **")
    # a lead that survives every weight within the band is one top choice, with what would flip it
    clear = choice({"cost": 3.0, "ops": 1.0})
    assert not clear.tie and clear.top == "vllm" and clear.runner_up == "together" and clear.pivot_factor > 1.25
    assert choice_sentence(data, clear, weights | {"cost": 3.0}).startswith(
        "**Top choice: Self-hosted vLLM**; it holds"
    )
    # equal totals are a tie whatever the bisection finds
    even = choice({"cost": 1.0, "ops": 1.0})
    assert even.tie and even.margin == pytest.approx(0.0)


def test_recommendation_says_cost_first(data: mx.MatrixData) -> None:
    from cliffbench.decide.matrix.verdict import verdict
    from cliffbench.report.matrix_cto import recommendation_markdown

    # ops weighs most: the consultancy-run option tops the ranking at more than twice the cheapest cost
    r = mx.evaluate(mx.MatrixParams(report_date="2026-12-06", weights={"ops": 6.0}), data)
    v = verdict(r)
    assert v.cost_warning and v.cost_ratio > 2
    cheapest_cost = float(r.values.loc[v.cheapest, "cost"])  # type: ignore[arg-type]
    known = r.values.loc[r.eligible, "cost"].dropna()
    assert cheapest_cost == min(
        known[[o for o in known.index if r.data.options[o].kind == "managed" or r.meets_slo[o]]]
    )
    first = recommendation_markdown(r, v).split("\n\n")[0]
    assert first.startswith(f"**Cost first: the top choice, {data.options[v.choice.top].name}, costs")
    assert data.options[v.cheapest].name in first
    # where the top choice is the cheapest, no warning
    cheap = mx.evaluate(
        mx.MatrixParams(report_date="2026-12-06", weights={c: 0.0 for c in data.criteria} | {"cost": 1.0}), data
    )
    assert not verdict(cheap).cost_warning and not recommendation_markdown(cheap, verdict(cheap)).startswith("**Cost")


def test_unknowns_flagged_and_discontinued_unranked(result: mx.MatrixResult) -> None:
    assert math.isnan(result.scores.rank.loc["anyscale"])
    assert "ttft" in result.scores.flagged["openai-gpt-6-luna"]
    assert result.values.isna().loc["openai-gpt-6-luna", "ttft"]
    ranked = result.scores.rank.dropna()
    totals = result.scores.total.loc[ranked.index]
    # rank = 1 + options with a strictly higher total (ties share a rank)
    assert ranked.to_dict() == {o: 1 + int((totals > totals[o]).sum()) for o in ranked.index}


# ---- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"weights": {"speed": 1}}, "weights: unknown criterion 'speed'; allowed: deployment, compliance"),
        ({"gpu_prices": {"a100-40gb": -1}}, "gpu_prices: a100-40gb must be a positive USD/hour"),
        ({"gpu_prices": {"tpu-v5": 1}}, "gpu_prices: unknown hardware 'tpu-v5'; allowed: a100-40gb"),
        ({"hardware": "l4"}, "gpu_prices: no vm-on-demand price for 'l4' (priced as serverless: set pricing_model)"),
        ({"pricing_model": "spot"}, "pricing_model: unknown pricing model 'spot'; allowed: vm-on-demand, serverless"),
        ({"weights": {"cost": -1}}, "weights: cost must be >= 0"),
        ({"weights": dict.fromkeys(mx.load_matrix().criteria, 0)}, "weights: at least one weight must be > 0"),
    ],
)
def test_bad_params(data: mx.MatrixData, params: dict[str, object], needle: str) -> None:
    with pytest.raises(InputError) as exc:
        mx.check_params(mx.MatrixParams(**params), data)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_zero_users_rejected() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="users"):
        mx.MatrixParams(users=0)


def test_parse_assignments() -> None:
    assert mx.parse_assignments("cost=3, compliance=2", "--weights") == {"cost": 3.0, "compliance": 2.0}
    assert mx.parse_assignments(["a100-40gb=1.29", "h100-sxm=2.5"], "--gpu-price") == {
        "a100-40gb": 1.29,
        "h100-sxm": 2.5,
    }
    with pytest.raises(InputError, match="--weights: expected name=number pairs, got 'cost'"):
        mx.parse_assignments("cost", "--weights")


# ---- exports --------------------------------------------------------------------------------------


def test_csv_is_tidy(result: mx.MatrixResult, tmp_path: Path) -> None:
    path = mxr.write_matrix_csv(result, tmp_path / "m.csv")
    df = pd.read_csv(path)
    assert len(df) == len(result.data.options) * len(result.data.criteria)
    assert {"option", "criterion", "value", "normalised", "weight", "rank", "source", "rationale"} <= set(df.columns)
    assert df["source"].notna().all() and not list(tmp_path.glob(".*"))


@pytest.mark.slow  # renders a PDF (WeasyPrint)
def test_standalone_pdf(result: mx.MatrixResult, tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    path = mxr.write_matrix_pdf(result, tmp_path / "decision_matrix.pdf")
    doc = pdfium.PdfDocument(str(path))
    try:
        assert 7 <= len(doc) <= 10
        text = " ".join(" ".join(doc[i].get_textpage().get_text_range() for i in range(len(doc))).split())
    finally:
        doc.close()
    for opt in result.data.options.values():
        assert opt.name in text, opt.name
    for cr in result.data.criteria.values():
        assert cr.name in text, cr.name
    assert str(result.text.loc["vllm", "cost"]) in text  # a computed number, not typed
    assert "Sensitivity" in text and not list(tmp_path.glob(".*"))
    for heading in ("Deployment", "Compliance", "Cost at your load", "Lock-in and exit", "Sources, verification"):
        assert heading in text, heading
    assert "SOC 2 Type II" in text and "HIPAA BAA" in text and "GDPR DPA" in text

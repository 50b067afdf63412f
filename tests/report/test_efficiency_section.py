"""Efficiency against both roofs on the hand-built study bundle: which roof binds, per level, in
the table and in the report's text."""

from __future__ import annotations

import pandas as pd
import pytest

from cliffbench.audit.claims import load_claims
from cliffbench.audit.shape_verdicts import efficiency
from cliffbench.bench.store.levels import Results
from cliffbench.report.data import ReportData
from cliffbench.report.sections import efficiency_section
from tests.report.study_data import fake_results


def _with_rates(res: Results, **rates: float) -> Results:
    """The bundle's probe as a new one stores it: per-dtype matmul rates."""
    res.manifest["hardware_probe"]["matmul_tflops_by_dtype"] = rates
    return res


def test_the_bundle_shows_both_roofs_and_the_binding_one() -> None:
    eff = efficiency(fake_results(0))  # the bundle's probe predates per-dtype rates: fp32 stands in
    for col in ("memory_ceiling_tok_s", "compute_ceiling_tok_s", "binding", "compute_tflops", "compute_source"):
        assert col in eff.columns, col
    roofs = eff[["memory_ceiling_tok_s", "compute_ceiling_tok_s"]]
    assert (eff["ceiling_tok_s"] == roofs.min(axis=1)).all()
    want = roofs.idxmin(axis=1).map({"memory_ceiling_tok_s": "memory", "compute_ceiling_tok_s": "compute"})
    assert (eff["binding"] == want).all()
    q41 = eff[eff["precision"] == "q4_1"]
    assert (q41["compute_tflops"] == 0.5).all()  # the bundle's fp32_tflops
    assert q41["compute_source"].str.contains("fp32 matmul rate, standing in for llama.cpp's Q4_1 path").all()


def test_a_slow_int8_path_makes_llamacpp_compute_bound_from_4_users() -> None:
    # 0.08 TOP/s over ~273 MFLOP per token (2 x 134.5 M params + attention) is ~290 tok/s: above the
    # 1-sequence memory roof (~118 tok/s at 10 GB/s), below the 4-sequence one (~450 tok/s)
    res = _with_rates(fake_results(0), float32=0.5, bfloat16=0.2, int8=0.08)
    eff = efficiency(res)
    slots = eff[eff["engine"] == "llamacpp-slots-4"].set_index("concurrency")
    assert list(slots["binding"]) == ["memory", "compute", "compute"]  # 1, 4 and 32 users (4 slots)
    assert slots.loc[4, "compute_ceiling_tok_s"] == pytest.approx(290, rel=0.02)
    assert (slots["ceiling_tok_s"] == slots["compute_ceiling_tok_s"]).loc[[4, 32]].all()
    # one sequence at a time: the weights' read binds at every level
    assert set(eff.loc[eff["engine"] == "llamacpp-serial", "binding"]) == {"memory"}
    text = efficiency_section(ReportData(study="s", results=res, claims=load_claims()))
    assert "- **llamacpp-slots-4** (q4_1): memory-bound at 1, compute-bound from 4 users" in text
    assert "- **llamacpp-serial** (q4_1): memory-bound at every level" in text
    assert "- q4_1: 0.08 TFLOP/s, torch int8 matmul (torch._int_mm" in text
    assert "standing in for llama.cpp's Q4_1 path" in text
    assert "| binds | efficiency |" in text and "| compute |" in text


def test_binding_runs_name_every_switch() -> None:
    from cliffbench.report.sections.audit import _binding_runs

    lv = pd.DataFrame({"concurrency": [1, 2, 4, 8, 16], "binding": ["memory"] * 2 + ["compute"] * 2 + ["memory"]})
    assert _binding_runs(lv) == "memory-bound at 1-2, compute-bound at 4-8, memory-bound from 16 users"

"""The stored tuning sweep: winners, paired ratios and the family of an engine kind."""

from __future__ import annotations

import math

from cliffbench.bench.store.tuning import TuningRun, TuningSweep
from tests.report.study_data import tuning_sweep


def test_winner_and_paired_ratio() -> None:
    sw = TuningSweep.model_validate(tuning_sweep())
    top = sw.winner("llama.cpp", 32)
    assert top is not None and (top.config, top.median_tok_s, top.range_tok_s) == ("llamacpp-q8_0-32", 300, (290, 310))
    assert [r.config for r in sw.at(32, "llama.cpp")] == ["llamacpp-q8_0-32", "llamacpp-f32-32", "llamacpp-q8_0-8"]
    f32 = sw.run("llamacpp-f32-32", 32)
    assert f32 is not None and sw.run("llamacpp-f32-32", 1) is None
    # ratio of medians, range over the repeats paired by round: 250/300, 240/290, 270/310
    mid, lo, hi = sw.ratio(f32, top)
    assert math.isclose(mid, 250 / 300) and math.isclose(lo, 240 / 290) and math.isclose(hi, 270 / 310)
    assert sw.winner("vllm", 1) is not None and sw.winner("vllm", 8) is None
    assert (sw.cpu_model, sw.cpu_flags) == ("Tuning CPU", ["avx2"])


def test_a_configuration_without_data_is_never_a_winner() -> None:
    empty = TuningRun(config="x", family="vllm", users=32, spec={}, precision="bf16", output_tok_s=[],
                      ttft_p50_s=[], start_s=[])  # fmt: skip
    sw = TuningSweep.model_validate({**tuning_sweep(), "runs": [empty.model_dump()]})
    assert sw.winner("vllm", 32) is None and math.isnan(empty.median_tok_s)

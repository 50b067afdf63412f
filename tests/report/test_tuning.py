"""Matched precision at fp32 and bf16, and the stored tuning sweep, rendered for two studies: one
on a CPU with bf16 kernels, one on an AVX2-only CPU, from hand-built data (no file is read)."""

from __future__ import annotations

from typing import Any

from cliffbench.audit.claims import load_claims
from cliffbench.bench.store.levels import Results
from cliffbench.report import sections as nv
from cliffbench.report.data import BenchmarkResult, ReportData
from cliffbench.report.sections.comparisons import comparisons, unmatched_precisions
from tests.report.study_data import fake_results, tuning_sweep

ENGINES = ("vllm", "vllm-fp32", "llamacpp-f32-32", "llamacpp-bf16-32", "llamacpp-q8_0-32")
BF16_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _study(seed: int, cpu_model: str, flags: tuple[str, ...], engines: tuple[str, ...] = ENGINES) -> Results:
    res = fake_results(seed, engines=engines, users=(1, 32), failed=None, cpu_model=cpu_model)
    res.manifest["cpu"]["flags"] = list(flags)
    return res


def _with_sweep(res: Results, sweep: dict[str, Any] | None) -> ReportData:
    tuning = BenchmarkResult("engine_tuning.json", sweep) if sweep else None
    return ReportData(study=f"study-{res.manifest['cpu']['model']}", results=res, claims=CLAIMS, tuning=tuning)


CLAIMS = load_claims()
# built at import: expanding the presets reads data/published/engine_defaults.csv, a section may not
XEON = _study(0, "Xeon with AMX", BF16_FLAGS)
EPYC = _study(1, "EPYC AVX2", ("avx2", "fma"), engines=ENGINES[:4])


def test_matched_precision_at_fp32_and_bf16_follows_the_cpu(no_files: list[str]) -> None:
    xeon, epyc = _with_sweep(XEON, None), _with_sweep(EPYC, None)
    # bf16 kernels: `vllm` (dtype best) is bf16 and pairs with the BF16 GGUF; vllm-fp32 with the F32 one
    pairs = {(c.precision, c.vllm, c.llamacpp) for c in comparisons(xeon) if c.kind == "matched precision"}
    assert pairs == {("bf16", "vllm", "llamacpp-bf16-32"), ("fp32", "vllm-fp32", "llamacpp-f32-32")}
    text = nv.comparisons_section(xeon)
    assert "| matched precision (bf16) | 32 | vllm (bf16, OpenMP on every core" in text
    assert "| matched precision (fp32) | 1 | vllm-fp32 (fp32" in text
    assert "llamacpp-bf16-32 (bf16, 32 slots, KV per slot)" in text
    assert "No matched precision" not in text and unmatched_precisions(xeon) == []
    summary = nv.comparisons_sentence(xeon)
    assert "*matched precision (bf16)*, vllm against llamacpp-bf16-32: x" in summary
    assert "*matched precision (fp32)*, vllm-fp32 against llamacpp-f32-32: x" in summary
    # AVX2 only: `best` is fp32, so the BF16 GGUF has no partner and the text says why
    e_pairs = {c.precision for c in comparisons(epyc) if c.kind == "matched precision"}
    assert e_pairs == {"fp32"} and unmatched_precisions(epyc) == ["bf16"]
    e_text = nv.comparisons_section(epyc)
    assert "| matched precision (bf16)" not in e_text
    assert (
        "No matched precision at bf16: this study's CPU lacks AVX512-BF16 and AMX-BF16 (flags: avx2, fma), "
        "so vLLM's `best` dtype is fp32 there." in e_text
    )
    # best of each is read from the study's numbers, whichever engines those are
    for data in (xeon, epyc):
        best = [c for c in comparisons(data) if c.kind == "best of each" and c.users == 32]
        lv = data.pooled
        top = lv[(lv["level_set"] == "chat") & (lv["concurrency"] == 32)].set_index("engine")["output_tok_s"]
        assert best[0].llamacpp == top[[e for e in top.index if e.startswith("llamacpp")]].idxmax()


def test_tuning_sweep_names_its_winners_and_whether_the_study_has_them(no_files: list[str]) -> None:
    # the sweep was run on the Xeon: its winners are Q8_0 with 32 slots and vLLM bf16 eager
    sweep = tuning_sweep(cpu_model="Xeon with AMX", flags=BF16_FLAGS)
    xeon, epyc = _with_sweep(XEON, sweep), _with_sweep(EPYC, sweep)
    x, e = nv.tuning_section(xeon), nv.tuning_section(epyc)
    for text in (x, e):
        assert "(`engine_tuning.json`, 2026-12-01, on Xeon with AMX) measured 5 configurations" in text
        assert "3 repeats interleaved" in text and "in 18 min" in text
        assert (
            "| 32 | llama.cpp | llamacpp-q8_0-32 (q8_0) | 300 (290-310) | 400 ms | llamacpp-f32-32, 250 (240-270) |"
            in text
        )
        assert "| 32 | vllm | vllm-bfloat16-eager (bf16) | 450 (400-500) |" in text
        assert "smoke run" not in text
    # same CPU, and the study has both winners under its own labels
    assert "another machine" not in x
    best = {c.llamacpp: c for c in comparisons(xeon) if c.kind == "best of each" and c.users == 32}
    said = "its best of each there" if "llamacpp-q8_0-32" in best else "not its fastest llama.cpp engine there"
    assert f"llama.cpp's winner llamacpp-q8_0-32 is in the study as llamacpp-q8_0-32, {said}" in x
    assert "vllm's winner vllm-bfloat16-eager is in the study as vllm, " in x
    # an engine of the study with nothing stored yet (a study resumed for its new engines)
    res = _study(0, "Xeon with AMX", BF16_FLAGS)
    res.levels = res.levels[res.levels["engine"] != "llamacpp-q8_0-32"]
    pending = nv.tuning_section(_with_sweep(res, sweep))
    assert "llamacpp-q8_0-32 is in the study as llamacpp-q8_0-32, with no level at 32 users stored yet" in pending
    assert "No chat level of llamacpp-q8_0-32 is stored yet" in nv.comparisons_section(_with_sweep(res, sweep))
    # another CPU, without the Q8_0 engine; `vllm` is fp32 there, so bf16 eager is not in it either
    assert "It was measured on another machine (Xeon with AMX; flags amx_bf16, avx2, avx512_bf16, avx512f)" in e
    assert "than this study (EPYC AVX2; flags avx2, fma)" in e
    assert "llama.cpp's winner llamacpp-q8_0-32 is not in the study (no engine has its configuration)" in e
    assert "vllm's winner vllm-bfloat16-eager is not in the study" in e


def test_quick_and_old_sweeps_are_labelled(no_files: list[str]) -> None:
    quick = nv.tuning_section(_with_sweep(XEON, tuning_sweep(quick=True)))
    assert "It is a smoke run (`--quick`: one repeat, short answers), not a measurement." in quick
    old = {"rows": [{"variant": "slots32-f32", "concurrency": 32, "output_tok_s": 268.0}], "machine": {}}
    text = nv.tuning_section(_with_sweep(XEON, old))
    assert text.startswith("`engine_tuning.json` holds single runs in an older format")
    assert "run `benchmarks/engine_tuning.py --skip-compiled`" in text
    assert nv.tuning_section(_with_sweep(XEON, None)).startswith("No tuning sweep is stored beside the study")

"""The whitepaper's sections from hand-built report data: no section reads a file, and two studies
render two different texts where they differ (and the same text where they share the data)."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cliffbench.audit.claims import load_claims
from cliffbench.audit.estimate import EngineEstimate
from cliffbench.bench.metrics.summary import LevelSummary
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import LevelInfo, ok_levels, write_level, write_manifest
from cliffbench.bench.store.provenance import StudyManifest
from cliffbench.config import PROJECT_ROOT, fmt_number
from cliffbench.decide.tree import decision_tree
from cliffbench.hardware import HARDWARE
from cliffbench.report import sections as nv
from cliffbench.report.data import BenchmarkResult, GpuStudy, ReportData, load_report_data
from tests.report.study_data import fake_results, tuning_sweep

CLAIMS = load_claims()

TUNING = tuning_sweep()
_FIDELITY_ROW = {"ttft_p99_ratio": 1.0, "same_text": True}
FIDELITY = {
    "tolerance": 0.1,
    "threads": 2,
    "rows": [
        {**_FIDELITY_ROW, "pair": p, "slots": n, "concurrency": c, "tok_s_ratio": r, "ttft_p50_ratio": 1 / r}
        for p, n, r in [("slots-vs-llama-server", 4, 1.05), ("vllm-vs-vllm-serve", None, 1.3)]
        for c in (1, 4, 16)
    ],
}
_REPEAT = {"pair": "slots-vs-llama-server", "slots": 8, "concurrency": 16, "ttft_p50_ratio": 1.0}
REPEATS = {
    "runs": [
        {**_REPEAT, "variant": v, "tok_s_ratio": r, "server": {"tok_s": s}}
        for v, r, s in [("default (full run)", 1.4, 80.0), ("default", 1.05, 100.0), ("--poll 0", 1.1, 95.0)]
    ]
}
GPU_SPEC = StudySpec.model_validate(
    {
        "name": "gpu",
        "hardware": "a100-40gb",
        "engines": [{"kind": "vllm"}, {"kind": "llamacpp-slots", "label": "llamacpp-slots-4", "slots": 4}],
        "level_sets": [{"name": "chat", "load": {"concurrency": [1, 8, 32]}}],
    }
)
GPU_ESTIMATE = [
    EngineEstimate("vllm", "bf16", 15.0, 21.0, 2.0, 40.0, 142.0, 256),
    EngineEstimate("llamacpp-slots-4", "q4_1", 4.67, 2.0, 1.0, 40.0, 105.0, 4),
]


def _data(name: str = "study-a", **kw: Any) -> ReportData:
    parts: dict[str, Any] = {
        "claims": CLAIMS,
        "tuning": BenchmarkResult("engine_tuning.json", TUNING),
        "fidelity": BenchmarkResult("fidelity_quiet.json", FIDELITY),
        "fidelity_repeats": BenchmarkResult("fidelity_repeats.json", REPEATS),
        "gpu_study": GpuStudy("studies/gpu.yaml", GPU_SPEC, HARDWARE["a100-40gb"], GPU_ESTIMATE),
    }
    results = kw.pop("results", None) or fake_results(0)
    return ReportData(study=name, results=results, **{**parts, **kw})


STUDY_B: dict[str, Any] = {
    "seed": 3,
    "engines": ("vllm", "llamacpp-slots-2", "llamacpp-slots-8"),
    "users": (1, 2, 8, 25),
    "mixed_users": (2, 8),
    "failed": None,
    "cpu_model": "Other CPU",
    "probe": False,
}

# every section, as the whitepaper calls it
SECTIONS: dict[str, Callable[[ReportData], str]] = {
    "title": nv.title_page_html,
    "summary": lambda d: nv.executive_summary(d, decision_tree(d.results, "chat", "mixed", 2.0, 0.25)),
    "memory": nv.memory_section,
    "comparisons": nv.comparisons_section,
    "config": nv.config_table,
    "tuning": nv.tuning_section,
    "levels": lambda d: nv.levels_table(d, "chat"),
    "fidelity": nv.fidelity_sentence,
    "overhead": nv.overhead_section,
    "seed": nv.seed_comparison,
    "claims": nv.claims_section,
    "shapes": lambda d: nv.shapes_section(d, "chat"),
    "efficiency": lambda d: nv.efficiency_section(d, "chat"),
    "gpu": nv.gpu_study_section,
    "methods": nv.methods_section,
    "limitations": nv.limitations_section,
    "glossary": lambda d: nv.glossary_table(),
}


def _render(data: ReportData) -> dict[str, str]:
    return {name: section(data) for name, section in SECTIONS.items()}


@functools.cache
def _study_a() -> tuple[ReportData, dict[str, str]]:
    """Study a's bundle and every section of it, built once: three tests read them, and a render
    takes seconds on 2 cores. Each of those tests holds `no_files`, so whichever asks first renders
    under it: the texts still come from the bundle alone."""
    data = _data()
    return data, _render(data)


def test_every_section_renders_from_the_bundle_alone(no_files: list[str]) -> None:
    data, text = _study_a()
    for name, out in text.items():
        assert isinstance(out, str) and out.strip(), name
    lv = ok_levels(data.results.levels, "chat")
    for v in lv["output_tok_s"]:
        assert f"| {nv.fmt(v)} |" in text["levels"]
    assert "study-a" in text["title"] and "Test CPU 9000" in text["title"]
    assert (
        "1 level run(s) failed and count as SLO misses: llamacpp-serial__chat__c0064 (EngineError: out of memory)"
        in (text["levels"])
    )
    assert "| 32 | llama.cpp | llamacpp-q8_0-32 (q8_0) | 300 (290-310) |" in text["tuning"]
    assert "Tuning CPU" in text["tuning"]
    assert "`benchmarks/results/fidelity_quiet.json`, 2 compute thread(s)" in text["fidelity"]
    assert "`studies/gpu.yaml` reproduces the published setup on a100-40gb" in text["gpu"]
    assert "| vllm | bf16 | 15 | 21 | 256 | 2.37 min |" in text["gpu"]
    # 5 requests per level: no 95 % interval of p90 exists, so no level is shown to meet the SLO
    assert "vllm: not shown to meet it even at its lowest measured level (1 user)" in text["summary"]
    assert "vllm (long documents): not shown to meet it even at its lowest measured level (4 users)" in text["summary"]
    assert text["seed"] in text["summary"]
    assert "levels exceed 100%" in text["efficiency"] or "| vllm |" in text["efficiency"]
    assert all(f"| {c} |" in text["claims"] for c in CLAIMS["claim_id"].head(3))


def test_two_studies_render_two_texts(no_files: list[str]) -> None:
    _, a = _study_a()
    b = _render(_data("study-b", results=fake_results(**STUDY_B)))
    study_dependent = ["title", "summary", "memory", "config", "levels", "seed", "shapes", "efficiency", "methods"]
    # the tuning sweep is the same file beside both, judged against each study's CPU and engines
    for name in [*study_dependent, "tuning"]:
        assert a[name] != b[name], name
    for name in ("fidelity", "claims", "gpu", "glossary"):  # the same files beside both studies
        assert a[name] == b[name], name
    assert "llamacpp-slots-8" in b["config"] and "llamacpp-slots-8" not in a["config"]
    assert "Study <b>study-b</b>" in b["title"] and "Other CPU" in b["title"]
    assert "**25 concurrent users**" in b["summary"] and "**32 concurrent users**" in a["summary"]
    assert "failed and count as SLO misses" in a["levels"] and "failed and count as SLO misses" not in b["levels"]
    assert "holds no hardware probe" in b["efficiency"] and "holds no hardware probe" not in a["efficiency"]
    assert "5 CPU cores" in b["limitations"] and "2 CPU cores" in a["limitations"]


def test_missing_files_are_said_not_raised(no_files: list[str]) -> None:
    data = _data(tuning=None, fidelity=None, fidelity_repeats=None, gpu_study=None)
    assert nv.tuning_section(data).startswith("No tuning sweep is stored beside the study; run `benchmarks/engine")
    assert nv.fidelity_sentence(data) == "No fidelity benchmark stored (run `benchmarks/fidelity.py`)."
    assert "`studies/a100-published.yaml` is missing" in nv.gpu_study_section(data)
    # the repeats extend the fidelity sentence only when stored
    plain = nv.fidelity_sentence(_data(fidelity_repeats=None))
    assert plain.endswith("greedy text identical at 3/3).") and "was run" not in plain


def test_empty_study_says_so(no_files: list[str]) -> None:
    res = fake_results(0)
    res.levels["status"] = "failed"
    data = _data(results=res)
    assert nv.executive_summary(data) == (
        "No level of this study finished successfully, so there is nothing to summarise."
    )
    assert "the seed's ratio is not checked" in nv.seed_comparison(data)


def test_fidelity_sentence(no_files: list[str]) -> None:
    text = nv.fidelity_sentence(_data(fidelity_repeats=None))
    assert "slots-vs-llama-server: output tok/s ratio 1.05-1.05" in text and "3/3 levels within" in text
    assert "vllm-vs-vllm-serve" in text and "0/3 levels within" in text


def test_fidelity_repeats_sentence(no_files: list[str]) -> None:
    text = nv.fidelity_sentence(_data())
    assert "was run 3 times in all: as is 2 times, tok/s ratio 1.05-1.4, the server alone 80-100 tok/s" in text
    assert "with server options changed (--poll 0) 1.1-1.1" in text
    # within 15% of the best server run (100 tok/s): the 100 and 95 runs
    assert "(2 of 3), the in-process engine is x1.05-x1.1 the server's tok/s" in text


@pytest.mark.parametrize(
    ("x", "kw", "want"),
    [
        (None, {}, "n/a"),
        (float("nan"), {}, "n/a"),
        (1450.4, {}, "1,450"),
        (12345, {}, "12345"),  # a Python int prints as it is
        (0.123456, {}, "0.123"),
        (0.000832, {}, "0.000832"),
        (0.000832, {"sci_below": 1e-3}, "8.32e-04"),
        (0.0, {"sci_below": 1e-3}, "0"),
        (2.5, {"digits": 2}, "2.5"),
        (float("inf"), {}, "inf"),
    ],
)
def test_fmt_number(x: Any, kw: dict[str, Any], want: str) -> None:
    assert fmt_number(x, **kw) == want


def test_report_fmt_is_fmt_number_with_scientific_small_values() -> None:
    assert nv.fmt(0.000832) == "8.32e-04" and nv.fmt(4038.2) == "4,038" and nv.fmt(1.1, 2) == "1.1"


def test_ok_levels_keeps_order_and_filters() -> None:
    lv = pd.DataFrame(
        {"status": ["ok", "failed", "ok", "ok"], "level_set": ["chat", "chat", "mixed", "chat"], "n": [3, 2, 1, 0]}
    )
    assert ok_levels(lv, "chat")["n"].tolist() == [3, 0]
    assert ok_levels(lv)["n"].tolist() == [3, 1, 0]


def _store_study(root: Path) -> None:
    base = {
        "study": "s",
        "engine": "vllm",
        "engine_kind": "vllm",
        "engine_hash": "x",
        "level_set": "chat",
        "workload": "chat",
        "seed": 0,
        "started_at": "2025-01-01",
        "wall_s": 1.0,
        "lag_p99_s": 0.001,
        "loop_cpu_share": 0.1,
        "lag_flagged": False,
        "summary": LevelSummary.from_columns({"output_tok_s": 10.0}),
    }
    empty = pd.DataFrame({"x": [0]})
    for i, c in enumerate((1, 2)):
        info = LevelInfo(**base, level_key=f"vllm__chat__c000{c}", level_index=i, concurrency=c, status="ok")
        write_level(info, empty, empty, empty, root=root / "data" / "results")
    manifest = StudyManifest.model_validate({"study": {"name": "s", "engines": [{"kind": "vllm"}]}})
    write_manifest("s", manifest, root=root / "data" / "results")


def test_load_report_data_reads_the_files_beside_the_study(tmp_path: Path) -> None:
    _store_study(tmp_path)
    (tmp_path / "data" / "published").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "data" / "published" / "claims.csv", tmp_path / "data" / "published")
    bench = tmp_path / "benchmarks" / "results"
    bench.mkdir(parents=True)
    (bench / "fidelity.json").write_text(json.dumps({"rows": []}))
    (bench / "engine_tuning.json").write_text(json.dumps(TUNING))
    data = load_report_data("s", root=tmp_path)
    assert data.study == "s" and len(data.results.levels) == 2
    assert len(data.claims) == len(CLAIMS)
    assert data.tuning is not None and data.tuning.data == TUNING
    assert data.fidelity is not None and data.fidelity.name == "fidelity.json"
    assert data.fidelity_repeats is None and data.gpu_study is None
    # the quiet run is the one the report cites, when stored
    (bench / "fidelity_quiet.json").write_text(json.dumps({"rows": [], "threads": 2}))
    (tmp_path / "studies").mkdir()
    shutil.copy(PROJECT_ROOT / "studies" / "a100-published.yaml", tmp_path / "studies")
    data = load_report_data("s", root=tmp_path)
    assert data.fidelity is not None and data.fidelity.name == "fidelity_quiet.json"
    assert data.gpu_study is not None and data.gpu_study.path == "studies/a100-published.yaml"
    assert [e.engine for e in data.gpu_study.estimate] == [e.name for e in data.gpu_study.spec.engines]


def test_load_report_data_names_an_unknown_study(tmp_path: Path) -> None:
    from cliffbench.config import InputError

    with pytest.raises(InputError, match="no results for 'nope'"):
        load_report_data("nope", root=tmp_path)


# a study reached partly over HTTP, on a machine with a GPU, serving another model, one engine at a
# precision it reported (q8_0, not its spec's q4_1 GGUF)
STUDY_HTTP: dict[str, Any] = {
    "seed": 1,
    "engines": ("vllm", "llamacpp-slots-4", "remote-server", "vllm-serve"),
    "failed": None,
    "gpus": ("NVIDIA H100 80GB HBM3",),
    "precisions": {"llamacpp-slots-4": "q8_0"},
    "model": "llama-3.1-8b",
}


def test_methods_and_limitations_follow_the_study(no_files: list[str]) -> None:
    names = ("methods", "limitations", "title", "summary")
    p = {k: _study_a()[1][k] for k in names}
    h = {k: SECTIONS[k](_data("study-http", results=fake_results(**STUDY_HTTP))) for k in names}
    # the GPUs the manifest lists
    assert "**2 CPU cores, no GPU.**" in p["limitations"] and "GPU: none" in p["methods"]
    assert "**3 CPU cores and NVIDIA H100 80GB HBM3.**" in h["limitations"] and "no GPU" not in h["limitations"]
    assert "GPU: NVIDIA H100 80GB HBM3" in h["methods"] and "NVIDIA H100 80GB HBM3" in h["title"]
    # in-process only where every engine is
    assert p["methods"].startswith("Every engine runs in-process in one Python process (vLLM's engine core")
    assert "measured in-process</p>" in p["title"]
    assert "Every engine runs in-process" not in h["methods"]
    assert h["methods"].startswith("vllm, llamacpp-slots-4 run in-process")
    assert "remote-server is reached over HTTP to an external server (10.1.2.3)" in h["methods"]
    assert "vllm-serve is reached over HTTP to a vllm server the kit started on this machine" in h["methods"]
    assert "measured in-process and over HTTP</p>" in h["title"]
    assert "**remote-server ran on an external server**" in h["limitations"]
    assert "shares the cores** with vllm, llamacpp-slots-4, vllm-serve;" in h["limitations"]
    # the model and its size from the manifest
    assert "**smollm2-135m, 135 M parameters**" in p["limitations"] and "Model smollm2-135m:" in p["methods"]
    assert "**llama-3.1-8b, 8,030 M parameters**" in h["limitations"] and "Model llama-3.1-8b:" in h["methods"]
    assert "relatively more here than for an 8B model" in p["limitations"]
    assert "relatively more here" not in h["limitations"]
    # each engine's precision as the study ran it: what it reported, else its spec on the stored CPU/GPU
    assert "vllm fp32, llamacpp-serial q4_1, llamacpp-slots-4 q4_1" in p["limitations"]  # AVX2 only: fp32
    assert "vllm bf16, llamacpp-slots-4 q8_0, remote-server unknown" in h["limitations"]  # a GPU: bf16
    assert "weights 16.1 GB at bf16, 8.53 GB at q8_0" in h["limitations"]
    # the bandwidth the study's probe measured
    bw = "GB/s of memory bandwidth measured by the study's probe"
    assert f"10 {bw}" in p["limitations"] and f"11 {bw}" in h["limitations"] and f"10 {bw}" in p["methods"]
    for text in (p["limitations"], h["limitations"]):
        assert not any(t in text for t in ("tens of GB/s", "135M-parameter", "Q4_1 GGUF", "as Ollama would"))
    # the summary carries the seed's sentence for both
    assert "The seed claims vLLM delivers about 4.53 times" in p["summary"]
    assert "The seed claims vLLM delivers about 4.53 times" in h["summary"]


def test_published_numbers_are_read_not_typed(no_files: list[str]) -> None:
    changed = CLAIMS.copy()
    for claim_id, value in (("cplt-c32-vllm-tps", 2900.0), ("rh-ollama-peak-tps", 82.0), ("rh-ollama-p99", 400.0)):
        changed.loc[changed["claim_id"] == claim_id, "value"] = value
    before, after = _data(), _data(claims=changed)
    seed_b, seed_a = nv.seed_comparison(before), nv.seed_comparison(after)
    assert "about 4.53 times" in seed_b and "vLLM 1,450 tok/s, Ollama 320 tok/s: CPLT_CLAIM" in seed_b
    assert "about 9.06 times" in seed_a and "vLLM 2,900 tok/s, Ollama 320 tok/s: CPLT_CLAIM" in seed_a
    # where the seed's numbers came from is found in the data: 2,900 no longer matches Spheron's row
    assert "the same values as SPH2026's sph-ollama-tps, sph-vllm-tps" in seed_b
    assert "the same values as SPH2026's sph-ollama-tps, recorded" in seed_a
    assert "Throughput (H100, 32 concurrent)" in seed_b
    shapes_b, shapes_a = nv.shapes_section(before), nv.shapes_section(after)
    assert "x19.3 (vLLM 793 tok/s, Ollama 41 tok/s: RH2025" in shapes_b
    assert "x9.67 (vLLM 793 tok/s, Ollama 82 tok/s: RH2025" in shapes_a
    assert "x8.41 (vLLM 80 ms, Ollama 673 ms: RH2025" in shapes_b and "x5 (vLLM 80 ms, Ollama 400 ms" in shapes_a
    assert "x2.84 (510 -> 1,450 tok/s" in shapes_b and "x5.69 (510 -> 2,900 tok/s" in shapes_a
    # a p99 against a p99: 5 requests give no interval, and the verdict says so
    assert "no 95 % interval of a p99 below 299 requests" in shapes_b and "**n too small (" in shapes_b


def test_glossary_puts_aiperf_itl_on_tpot() -> None:
    rows = {line.split("|")[1].strip(): line for line in nv.glossary_table().splitlines() if line.startswith("| `")}
    assert "Inter Token Latency" in rows["`tpot_s`"] and "our TPOT" in rows["`tpot_s`"]
    assert "Inter Token Latency" not in rows["`itl_s`"]


# built at import: expanding the presets reads data/published/engine_defaults.csv, a section may not
COMPARED = fake_results(
    0, engines=("vllm", "vllm-as-shipped", "ollama", "llamacpp-slots-4", "llamacpp-f32-32"), users=(1, 32), failed=None
)


def test_three_comparisons_follow_the_specs(no_files: list[str]) -> None:
    data = _data(results=COMPARED)
    text = nv.comparisons_section(data)
    # avx2 only: vLLM's best dtype is fp32, the precision of the F32 GGUF
    assert "| as shipped | 32 | vllm-as-shipped (fp32, OpenMP bind auto, eager, prefix caching on" in text
    assert "ollama (q4_1, one request at a time, prompt reuse on, rejects past 512 waiting, preset ollama-0.10+)" in (
        text
    )
    assert "| matched precision (fp32) | 32 | vllm (fp32, OpenMP on every core" in text
    assert "llamacpp-f32-32 (fp32, 32 slots, KV per slot)" in text
    assert "| best of each | 1 |" in text and "Not in this study" not in text
    summary = nv.comparisons_sentence(data)
    assert summary.startswith("At 32 users, vLLM over llama.cpp in output tok/s: *as shipped*, vllm-as-shipped")
    assert "*matched precision (fp32)*, vllm against llamacpp-f32-32" in summary
    plain = nv.comparisons_section(_data())
    assert "Not in this study: as shipped, matched precision." in plain

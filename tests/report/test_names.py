"""Engines named by what they are, from their specs: the default study's nine engines."""

from __future__ import annotations

from cliffbench.bench.spec.study import load_study
from cliffbench.config import PROJECT_ROOT
from cliffbench.engines.specs import LlamaCppSlotsSpec
from cliffbench.report.names import display_name, display_names


def test_default_study_engines_are_named_from_their_specs() -> None:
    study = load_study(PROJECT_ROOT / "studies" / "default.yaml")
    specs = {es.name: es for es in study.engines}
    flags = ["avx512_bf16"]  # a CPU with bf16 kernels: `best` is bf16
    names = display_names(specs, {n: es.precision(flags) for n, es in specs.items()})
    assert names == {
        "vllm": "vLLM, bf16, tuned, prefix cache",
        "vllm-as-shipped": "vLLM as shipped",
        "vllm-fp32": "vLLM, fp32, tuned",
        "ollama": "Ollama 0.10+ as shipped",
        "llama-server": "llama-server as shipped",
        "llamacpp-f32-32": "llama.cpp, 32 slots, F32",
        "llamacpp-bf16-32": "llama.cpp, 32 slots, BF16",
        "llamacpp-q8_0-32": "llama.cpp, 32 slots, Q8_0",
        "llamacpp-f32-32-reuse": "llama.cpp, 32 slots, F32, prompt reuse",
    }


def test_names_that_collide_keep_their_labels() -> None:
    a = LlamaCppSlotsSpec(label="a", slots=8, kv_unified=True)
    b = LlamaCppSlotsSpec(label="b", slots=8, kv_unified=True)
    assert display_name(a, "q4_1") == "llama.cpp, 8 slots, shared KV, Q4_1"
    assert display_names({"a": a, "b": b}, {"a": "q4_1", "b": "q4_1"}) == {
        "a": "llama.cpp, 8 slots, shared KV, Q4_1 (a)",
        "b": "llama.cpp, 8 slots, shared KV, Q4_1 (b)",
    }

"""Engines named by what they are, for people: "vLLM, bf16, tuned", "Ollama 0.10+ as shipped",
"llama.cpp, 32 slots, F32". Derived from each engine's spec (kind, preset, precision, slots),
never from a hand table of labels, so a new engine in a study gets its name without code.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from cliffbench.engines.specs import EngineSpec, LlamaCppSlotsSpec, LlamaCppSpec, OpenAIHttpSpec, VllmSpec
from cliffbench.report.data import ReportData

__all__ = ["display_name", "display_names", "engine_names", "engine_precisions", "gguf_name", "named"]

# what a preset's product is called, by the prefix of the preset's name
_PRODUCTS = {"ollama": "Ollama", "llama-server": "llama-server", "vllm": "vLLM"}
# the default a study tunes away from: vLLM keeping a core for its front end
_VLLM_SHIPPED_BIND = "auto"


def gguf_name(precision: str) -> str:
    """llama.cpp's own name of a weight type: F32, BF16, Q8_0."""
    return {"fp32": "F32", "fp16": "F16"}.get(precision, precision.upper())


def _preset_name(preset: str) -> str:
    product = next((name for key, name in _PRODUCTS.items() if preset.startswith(key)), preset)
    version = preset.removeprefix(next((k for k in _PRODUCTS if preset.startswith(k)), "")).strip("-")
    return f"{product} {version} as shipped" if version and version != "default" else f"{product} as shipped"


def display_name(es: EngineSpec, precision: str) -> str:
    """One engine's name for people, from its spec and the precision it served."""
    if es.preset:
        return _preset_name(es.preset)
    if isinstance(es, VllmSpec):
        tuned = "tuned" if es.omp_threads_bind != _VLLM_SHIPPED_BIND else "default core binding"
        return f"vLLM, {precision}, {tuned}" + ("" if es.enforce_eager else ", compiled")
    if isinstance(es, LlamaCppSlotsSpec):
        slots, _, unified = es.slot_layout()
        shared = ", shared KV" if unified else ""
        return f"llama.cpp, {slots} slot{'s' * (slots != 1)}{shared}, {gguf_name(precision)}"
    if isinstance(es, LlamaCppSpec):
        return f"llama.cpp, one request at a time, {gguf_name(precision)}"
    if isinstance(es, OpenAIHttpSpec):
        if es.server is not None:
            return f"{es.server.kind} server over HTTP"
        return "an external server over HTTP"
    return f"{es.kind} engine"


def display_names(specs: Mapping[str, EngineSpec], precisions: Mapping[str, str]) -> dict[str, str]:
    """Study label -> name for people; where two engines would share a name, the label is added."""
    names = {label: display_name(es, precisions.get(label, "")) for label, es in specs.items()}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {label: n if counts[n] == 1 else f"{n} ({label})" for label, n in names.items()}


def named(labels: Collection[str], names: Mapping[str, str]) -> list[str]:
    """`labels` as people read them (a label without a name stays as it is)."""
    return [names.get(label, label) for label in labels]


def engine_precisions(data: ReportData) -> dict[str, str]:
    """Each engine's weights precision as the study ran it: what the engine reported (levels'
    `cfg_precision`, else the manifest's engine description), else its spec on the stored CPU flags
    and GPUs; an external server's is unknown."""
    res, m = data.results, data.results.manifest
    flags, gpu = m.get("cpu", {}).get("flags", []), bool(m.get("gpu"))
    out: dict[str, str] = {}
    lv = res.levels
    for es in res.study.engines:
        stored = lv.loc[lv["engine"] == es.name, "cfg_precision"].dropna().tolist() if "cfg_precision" in lv else []
        described = m.get("engines", {}).get(es.name, {}).get("precision")
        if stored:
            out[es.name] = str(stored[0])
        elif described:
            out[es.name] = str(described)
        elif isinstance(es, OpenAIHttpSpec) and es.server is None:
            out[es.name] = "unknown (an external server's)"
        else:
            out[es.name] = es.precision(cpu_flags=flags, gpu=gpu)
    return out


def engine_names(data: ReportData) -> dict[str, str]:
    """Each engine of the study (by label) named for people, at the precision it served."""
    return display_names(data.results.engine_specs, engine_precisions(data))

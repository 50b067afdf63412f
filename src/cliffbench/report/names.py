"""Engines named by what they are, for people: "vLLM, bf16, tuned", "Ollama 0.10+ as shipped",
"llama.cpp, 32 slots, F32". Derived from each engine's spec (kind, preset, precision, slots),
never from a hand table of labels, so a new engine in a study gets its name without code.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from cliffbench.engines.specs import EngineSpec
from cliffbench.report.data import ReportData

__all__ = ["display_name", "display_names", "engine_names", "engine_precisions", "named"]


def display_name(es: EngineSpec, precision: str) -> str:
    """One engine's name for people, from its spec (`people_name`, a fact of each kind) and the
    precision it served."""
    return es.people_name(precision)


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
        elif es.external:
            out[es.name] = "unknown (an external server's)"
        else:
            out[es.name] = es.precision(cpu_flags=flags, gpu=gpu)
    return out


def engine_names(data: ReportData) -> dict[str, str]:
    """Each engine of the study (by label) named for people, at the precision it served."""
    return display_names(data.results.engine_specs, engine_precisions(data))

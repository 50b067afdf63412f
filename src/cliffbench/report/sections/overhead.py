"""What the harness costs each engine: kit vs the engine's own raw loop (benchmarks/engine_overhead.py).

A study's engine is matched to the stored benchmark when the benchmark measured the same spec
(label aside) on the same CPU model; anything else is named as not measured, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from pydantic import TypeAdapter

from cliffbench.engines.specs import EngineSpec
from cliffbench.report.data import ReportData
from cliffbench.report.sections.common import fmt

__all__ = ["engine_overheads", "overhead_gap_sentence", "overhead_section"]

_KIT = "kit"  # the variant with every probe and the progress display on: what `cliffbench run` does
# the engine's own loop the ratio is taken against, where a benchmark measured several (`raw`):
# `LLM.generate` for vLLM (beside it a minimal AsyncLLM loop), the bare llama_decode loop for llama.cpp
_RAW = ("generate", "decode")


def _config(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec's configuration, every default filled in and the label left out."""
    full = TypeAdapter(EngineSpec).validate_python(spec).model_dump(mode="json")
    return {k: v for k, v in full.items() if k != "label"}


def engine_overheads(data: ReportData) -> pd.DataFrame:
    """Per engine of the study: kit/raw (paired per repeat) over the benchmark's user counts, the
    median of the medians and the full min-max; NaN where the benchmark did not measure the
    engine's configuration on this CPU model."""
    cols = ["engine", "benchmark_engine", "over_raw", "over_raw_min", "over_raw_max", "users", "repeats"]
    bench = data.overhead
    if bench is None:
        return pd.DataFrame(columns=cols)
    same_cpu = bench.data["machine"]["cpu"].get("model") == data.results.manifest.cpu.model
    summary = pd.DataFrame(bench.data["summary"])
    kit = summary[summary["variant"] == _KIT]
    if "raw" in kit:
        kit = kit[kit["raw"].isin(_RAW)]
    rows = []
    for name, spec in data.results.engine_specs.items():
        want = _config(spec.model_dump(mode="json"))
        match = next((b for b, s in bench.data["specs"].items() if _config(s) == want), None) if same_cpu else None
        g = kit[kit["engine"] == match] if match is not None else kit.iloc[0:0]
        rows.append(
            {
                "engine": name,
                "benchmark_engine": match,
                "over_raw": float(g["over_raw_median"].median()) if len(g) else float("nan"),
                "over_raw_min": float(g["over_raw_min"].min()) if len(g) else float("nan"),
                "over_raw_max": float(g["over_raw_max"].max()) if len(g) else float("nan"),
                "users": ", ".join(str(u) for u in g["users"]),
                "repeats": int(g["repeats"].min()) if len(g) else 0,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _probe_costs(bench: dict[str, Any]) -> str:
    """Per probe: kit/raw with it off over kit/raw with everything on (median and range over engines x users)."""
    s = pd.DataFrame(bench["summary"])
    if "raw" in s:  # against the raw loop the table uses, one row per engine and load
        s = s[s["raw"].isin(_RAW)]
    kit = s[s["variant"] == _KIT].set_index(["engine", "users"])["over_raw_median"]
    parts = []
    for variant in dict.fromkeys(str(v) for v in s["variant"] if str(v).startswith("kit-no-")):
        off = s[s["variant"] == variant].set_index(["engine", "users"])["over_raw_median"]
        gain = off / kit.reindex(off.index)
        name = variant.removeprefix("kit-no-")
        parts.append(f"{name} off x{fmt(gain.median())} (x{fmt(gain.min())}-x{fmt(gain.max())})")
    return "; ".join(parts)


def overhead_section(data: ReportData) -> str:
    """Each engine's kit/raw ratio, as measured through the path `cliffbench run` takes."""
    if data.overhead is None:
        return "No harness-overhead benchmark stored (run `benchmarks/engine_overhead.py`)."
    bench = data.overhead.data
    ov = engine_overheads(data)
    rows = ["| engine | kit / raw loop (median) | range over repeats and users | users measured |", "|---|---|---|---|"]
    missing = []
    for r in ov.to_dict("records"):
        if not isinstance(r["benchmark_engine"], str):
            missing.append(str(r["engine"]))
            continue
        span = f"x{fmt(r['over_raw_min'])}-x{fmt(r['over_raw_max'])}"
        rows.append(f"| {r['engine']} | x{fmt(r['over_raw'])} | {span} | {r['users']} |")
    text = (
        f"Measured by `benchmarks/engine_overhead.py` (`benchmarks/results/{data.overhead.name}`): the engine as the "
        "study runs it (its spec, `run_level` with the lag / GIL-wait probe, the KV-memory sampler and the progress "
        "display on, as in `cliffbench run`) against the engine's own loop on the same requests (vLLM's "
        "`LLM.generate`, a bare batched `llama_decode` loop), run interleaved in a rotated order, "
        f"{bench.get('reps', '?')} repeats; ratio = kit / raw of the same repeat. An engine measured at x0.8 "
        "would be named slower than itself by a fifth."
    )
    if len(rows) > 2:
        text += "\n\n" + "\n".join(rows)
    if missing:
        text += (
            f"\n\nNot measured for this configuration on this CPU model: {', '.join(missing)} "
            "(their ratios are unknown, not assumed to be 1)."
        )
    probes = _probe_costs(bench)
    if probes:
        text += (
            "\n\nThe harness's self-checks switched off (lag probe, KV sampler, progress display), "
            f"kit / raw relative to all on: {probes}."
        )
    return text


def overhead_gap_sentence(
    data: ReportData, a: str, b: str, ratio: float, names: Mapping[str, str] | None = None
) -> str:
    """Whether the harness's cost to engines `a` and `b` differs by more than their measured gap
    (`ratio` = a's throughput / b's); `names` names them for people (else their labels)."""
    label_a, label_b = a, b
    a, b = (names or {}).get(a, a), (names or {}).get(b, b)
    measured = {
        str(r["engine"]): float(r["over_raw"])
        for r in engine_overheads(data).to_dict("records")
        if isinstance(r["benchmark_engine"], str)
    }
    if label_a not in measured or label_b not in measured:
        return f" The harness overhead of {a} or {b} is not measured for this configuration, so the ratio carries it."
    oa, ob = measured[label_a], measured[label_b]
    skew = oa / ob  # how much the harness alone tilts the ratio toward a
    bigger = abs(skew - 1) > abs(ratio - 1)
    return (
        f" The harness runs {a} at x{fmt(oa)} and {b} at x{fmt(ob)} of their raw loops: it tilts the ratio by "
        f"x{fmt(skew)}, {'more' if bigger else 'less'} than the x{fmt(ratio)} gap between them"
        + (", so the harness could explain the gap." if bigger else ", so the gap is the engines', not the harness's.")
    )

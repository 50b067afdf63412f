"""vLLM against llama.cpp in the three comparisons a verdict must name.

- *as shipped*: the engines a study builds from a preset of today's defaults (the preset names the
  version, `data/published/engine_defaults.csv` sources every value);
- *matched precision*: a vLLM and a llama.cpp engine serving the same weight precision, one pair per
  precision (fp32 and bf16 where the study has both; engines built from a preset stand for "as
  shipped" and are taken only where no tuned engine serves that precision);
- *best of each*: at each user count, the fastest vLLM engine of the study against the fastest
  llama.cpp engine (median output tok/s over repeats).

Which engines take part is read from the study's specs (kind, preset, precision on the stored
CPU), never from their labels; a comparison the study cannot make says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from cliffbench.bench.metrics.repeats import RatioEstimate, median_range_level, paired_ratio
from cliffbench.engines.specs import LLAMACPP, VLLM, EngineSpec
from cliffbench.report.data import ReportData
from cliffbench.report.sections.common import fmt, measured_levels

__all__ = [
    "Comparison",
    "comparisons",
    "comparisons_section",
    "comparisons_sentence",
    "engine_config_text",
    "engine_roles_table",
    "unmatched_precisions",
]

KINDS = ("as shipped", "matched precision", "best of each")


@dataclass(frozen=True)
class Comparison:
    kind: str  # one of KINDS
    users: int
    vllm: str
    llamacpp: str
    vllm_tok_s: float
    llamacpp_tok_s: float
    ratio: RatioEstimate
    precision: str = ""  # matched precision: the precision both serve

    @property
    def label(self) -> str:
        """The comparison as the text names it: matched precision says which precision."""
        return f"{self.kind} ({self.precision})" if self.precision else self.kind


# the precisions vLLM serves: a llama.cpp engine at one of them could have a matched vLLM engine
_VLLM_PRECISIONS = ("fp32", "bf16", "fp16")


def _precisions(data: ReportData) -> dict[str, str]:
    manifest = data.results.manifest
    flags = (manifest.get("cpu") or {}).get("flags") or []
    gpu = bool(manifest.get("gpu"))
    return {name: es.precision(flags, gpu) for name, es in data.results.engine_specs.items()}


def engine_config_text(es: EngineSpec, precision: str) -> str:
    """The settings that decide an engine's speed, as the comparison table prints them."""
    parts = [precision, *es.speed_settings()]
    if es.preset:
        parts.append(f"preset {es.preset}")
    return ", ".join(parts)


def _pairs(data: ReportData, lv: pd.DataFrame, users: int) -> list[tuple[str, str, str, str]]:
    """(kind, vLLM engine, llama.cpp engine, matched precision or '') at `users`."""
    specs = data.results.engine_specs
    prec = _precisions(data)
    here = set(lv.loc[lv["concurrency"] == users, "engine"])
    fam = {n: es.family for n, es in specs.items() if n in here}
    vl = [n for n, f in fam.items() if f == VLLM]
    lc = [n for n, f in fam.items() if f == LLAMACPP]
    tok = lv[lv["concurrency"] == users].set_index("engine")["output_tok_s"]
    out: list[tuple[str, str, str, str]] = []
    out += [("as shipped", a, b, "") for a in vl if specs[a].preset for b in lc if specs[b].preset]
    for p in dict.fromkeys(prec[n] for n in vl):
        pair = []
        for members in ([n for n in vl if prec[n] == p], [n for n in lc if prec[n] == p]):
            tuned = [n for n in members if not specs[n].preset] or members
            pair.append(max(tuned, key=lambda e: tok[e]) if tuned else None)
        if pair[0] and pair[1]:
            out.append(("matched precision", pair[0], pair[1], p))
    if vl and lc:
        out.append(("best of each", max(vl, key=lambda e: tok[e]), max(lc, key=lambda e: tok[e]), ""))
    return out


def unmatched_precisions(data: ReportData, level_set: str = "chat") -> list[str]:
    """Precisions vLLM could serve at which the study has a llama.cpp engine but no vLLM one: on a
    CPU without bf16 kernels vLLM's `best` is fp32, so a BF16 GGUF has no bf16 partner."""
    lv = measured_levels(data, level_set)
    specs, prec = data.results.engine_specs, _precisions(data)
    ran = set(lv["engine"])
    have = {f: {prec[n] for n, es in specs.items() if n in ran and es.family == f} for f in (VLLM, LLAMACPP)}
    return [p for p in _VLLM_PRECISIONS if p in have[LLAMACPP] and p not in have[VLLM]]


def _unmatched_sentence(data: ReportData, level_set: str) -> str:
    missing = unmatched_precisions(data, level_set)
    if not missing:
        return ""
    flags = sorted((data.results.manifest.get("cpu") or {}).get("flags") or [])
    bf16 = {"avx512_bf16", "amx_bf16"} & set(flags)
    why = (
        f"this study's CPU has {', '.join(sorted(bf16))}, yet no vLLM engine of the study was set to that dtype"
        if bf16
        else "this study's CPU lacks AVX512-BF16 and AMX-BF16 (flags: " + (", ".join(flags) or "none recorded") + "), "
        "so vLLM's `best` dtype is fp32 there"
    )
    return f" No matched precision at {', '.join(missing)}: {why}."


def comparisons(data: ReportData, level_set: str = "chat") -> list[Comparison]:
    """Every comparison the study supports, at its lowest and highest user count."""
    lv = measured_levels(data, level_set)
    if lv.empty:
        return []
    users = sorted({int(u) for u in lv["concurrency"]})
    out = []
    for u in dict.fromkeys([users[0], users[-1]]):
        tok = lv[lv["concurrency"] == u].set_index("engine")["output_tok_s"].astype(float).to_dict()
        for kind, a, b, p in _pairs(data, lv, u):
            r = paired_ratio(data.results.levels, a, b, level_set, u)
            out.append(Comparison(kind, u, a, b, tok[a], tok[b], r, p))
    return out


def _ratio_cell(r: RatioEstimate) -> str:
    if r.pairs < 2:
        return f"x{fmt(r.median)} (one repeat)"
    return f"x{fmt(r.median)} (x{fmt(r.lo)}-x{fmt(r.hi)})"


def _unmeasured_sentence(data: ReportData, level_set: str) -> str:
    ran = set(measured_levels(data, level_set)["engine"])
    sets = [ls for ls in data.results.study.level_sets if ls.name == level_set]
    skipped = {n for ls in sets for n, at in ls.load.only_at.items() if not at}  # not planned in this set
    absent = [n for n, es in data.results.engine_specs.items() if es.family and n not in ran | skipped]
    if not absent:
        return ""
    return f" No {level_set} level of {', '.join(absent)} is stored yet: the comparisons they stand for are left out."


def comparisons_section(data: ReportData, level_set: str = "chat") -> str:
    """The three comparisons as a table, each engine with the configuration it ran."""
    rows = comparisons(data, level_set)
    if not rows:
        return "The study has no level both a vLLM and a llama.cpp engine completed: nothing to compare."
    specs, prec = data.results.engine_specs, _precisions(data)
    lines = [
        "| comparison | users | vLLM engine | llama.cpp engine | vLLM tok/s | llama.cpp tok/s | vLLM / llama.cpp |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        lines.append(
            f"| {c.label} | {c.users} | {c.vllm} ({engine_config_text(specs[c.vllm], prec[c.vllm])}) "
            f"| {c.llamacpp} ({engine_config_text(specs[c.llamacpp], prec[c.llamacpp])}) "
            f"| {fmt(c.vllm_tok_s)} | {fmt(c.llamacpp_tok_s)} | {_ratio_cell(c.ratio)} |"
        )
    n = min((c.ratio.pairs for c in rows), default=0)
    missing = [k for k in KINDS if k not in {c.kind for c in rows}]
    lines.append("")
    lines.append(
        "Throughput is the median output tok/s over repeats; a ratio is the median of the per-repeat ratios of "
        f"repeats paired in time, its range min-max over {n} pairs"
        + (f" (a {100 * median_range_level(n):.0f} % interval of the median)." if n >= 2 else ".")
        + " *As shipped*: engines built from today's defaults (their preset names the version). *Matched "
        "precision*: the same weight precision in both, one pair per precision. *Best of each*: the fastest "
        "engine of each family at that user count."
        + (f" Not in this study: {', '.join(missing)}." if missing else "")
        + _unmatched_sentence(data, level_set)
        + _unmeasured_sentence(data, level_set)
    )
    return "\n".join(lines)


def comparisons_sentence(data: ReportData, level_set: str = "chat") -> str:
    """One sentence per comparison at the highest user count, for the executive summary."""
    rows = comparisons(data, level_set)
    if not rows:
        return ""
    top = max(c.users for c in rows)
    said = []
    for kind in KINDS:
        mine = [c for c in rows if c.kind == kind and c.users == top]
        for c in mine:
            r = c.ratio
            spread = f" (x{fmt(r.lo)}-x{fmt(r.hi)} over {r.pairs} paired repeats)" if r.pairs >= 2 else ""
            verb = "ahead" if r.median > 1 else "behind" if r.median < 1 else "level"
            said.append(
                f"*{c.label}*, {c.vllm} against {c.llamacpp}: x{fmt(r.median)}{spread}, vLLM {verb}"
                if not math.isnan(r.median)
                else f"*{c.label}*, {c.vllm} against {c.llamacpp}: no paired repeats"
            )
    return f"At {top} users, vLLM over llama.cpp in output tok/s: " + "; ".join(said) + "."


def engine_roles_table(data: ReportData, level_set: str = "chat") -> str:
    """Which comparison each engine of the study stands for (at the highest user count), with its
    configuration: the legend that makes every leaf of the decision tree name its comparison."""
    specs, prec = data.results.engine_specs, _precisions(data)
    rows = comparisons(data, level_set)
    top = max((c.users for c in rows), default=0)
    roles: dict[str, list[str]] = {name: [] for name in specs}
    for c in rows:
        if c.users == top:
            for engine in (c.vllm, c.llamacpp):
                if c.label not in roles[engine]:
                    roles[engine].append(c.label)
    lines = ["| engine | comparison it stands for | configuration |", "|---|---|---|"]
    for name, es in specs.items():
        role = ", ".join(roles[name]) or "none of the three (" + ("preset " + es.preset if es.preset else "tuned") + ")"
        lines.append(f"| {name} | {role} | {engine_config_text(es, prec[name])} |")
    return "\n".join(lines)

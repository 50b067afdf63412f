"""The body's paragraph on the shipped reference run: this study against the project's own run of
the same study (data/reference/<study>, bench/store/reference.py), engine by engine.

The comparison is `cliffbench compare REFERENCE THIS --allow-different` (decide/compare.py): the
reference is the baseline, so ratios read this run over the reference. Another machine is the
usual case here, so differences of hardware, versions or workload are compared all the same and
named; a verdict says whether a difference is beyond the repeats' noise, not what caused it.
"""

from __future__ import annotations

import math

from cliffbench.bench.store.provenance import StudyManifest
from cliffbench.config import InputError
from cliffbench.decide.compare import EngineShift, StudyComparison, compare_studies
from cliffbench.decide.compare_match import Difference
from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_names, named
from cliffbench.report.sections.common import fmt
from cliffbench.trace import Source, cite_text, record

__all__ = ["reference_section"]

_LONG = 40  # a differing value longer than this (a flag list, a model file's hash) is named, not shown
# the manifest's field names, as the text says them
_FIELDS = {"hardware.cpu.model": "CPU", "hardware.cpu.usable_cpus": "usable cores", "hardware.gpus": "GPUs"}


def _machine(m: StudyManifest, where: str) -> str:
    """'AMD EPYC, 2 cores, 2026-12-06'."""
    cpu = record(m.cpu.model or "CPU not recorded", Source(where, "cpu.model"))
    cores = fmt(m.cpu.usable_cpus, src=Source(where, "cpu.usable_cpus")) if m.cpu.usable_cpus else "?"
    return f"{cpu}, {cores} cores, {m.created_at[:10] or 'date not recorded'}"


def _difference(d: Difference, where: tuple[str, str]) -> str:
    name = _FIELDS.get(d.field, d.field.removeprefix("versions.").removeprefix("hardware."))
    if max(len(d.a), len(d.b)) > _LONG:
        return name
    a, b = record(d.a, Source(where[0], d.field)), record(d.b, Source(where[1], d.field))
    return f"{name} {a} → {b}"


def _users(n: float, src: Source) -> str:
    return f"{fmt(n, src=src)} user" + ("" if n == 1 else "s")


def _bracket(b: tuple[float, float], src: Source) -> str:
    """A cliff's bracket `(lo, hi]` in words: '7-8 users', 'above 32 users', 'at or below 4 users'."""
    lo, hi = b
    if math.isinf(hi):
        return "not bracketed" if not lo else f"above {_users(lo, src)}"
    return f"{fmt(lo, src=src)}-{_users(hi, src)}" if lo else f"at or below {_users(hi, src)}"


def _throughput(e: EngineShift, src: Source) -> str:
    m = e.metrics[0]  # output tok/s, pooled over the levels both runs measured
    if math.isnan(m.ratio):
        return "not measured in both"
    if math.isnan(m.level):
        return f"x{fmt(m.ratio, 2, src)} (too few repeats)"
    return f"x{fmt(m.ratio, 2, src)} [{fmt(m.lo, 2, src)}-{fmt(m.hi, 2, src)}]"


def _table(c: StudyComparison, level_set: str, names: dict[str, str], ref_path: str) -> list[str]:
    out = [
        "| engine | cliff here | cliff in the reference | cliff | output tok/s, here / reference | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for e in c.engines:
        here = Source("levels", f"cliff bracket, {level_set}", e.engine_b)
        there = Source(ref_path, f"cliff bracket, {level_set}", e.engine_a)
        cliff = next((x for x in e.cliffs if x.level_set == level_set), e.cliffs[0] if e.cliffs else None)
        cells = (
            (_bracket(cliff.b_bracket, here), _bracket(cliff.a_bracket, there), cliff.moved.split(" (")[0])
            if cliff is not None
            else ("not measured", "not measured", "-")
        )
        ratio = _throughput(e, Source("compare", "output tok/s this run / reference, pooled", e.engine_b))
        name = names.get(e.engine_b, e.engine_b).replace("|", "\\|")
        out.append(f"| {name} | {' | '.join(cells)} | {ratio} | {e.verdict} |")
    return out


def reference_section(data: ReportData, level_set: str = "chat") -> str:
    """Markdown: the reference's machine and what differs, then per engine its cliff here and in
    the reference, the throughput ratio and the verdict. One sentence when none is shipped."""
    study = data.results.study.name
    cite_text(study)
    ref = data.reference
    if ref is None:
        return (
            f"No reference run of the study `{study}` is shipped with the kit (data/reference/ holds none), "
            "so this run is not compared with the project's."
        )
    cite_text(ref.path)
    theirs = ref.results
    try:
        if theirs is None:
            raise InputError(ref.problem)
        c = compare_studies(theirs, data.results, paths=(ref.path, data.study), allow_different=True)
    except InputError as exc:  # a reader's run that cannot be compared still gets its report
        reason = record(str(exc), Source(ref.path, "compare"))
        return f"The reference run `{ref.path}` cannot be compared with this one: {reason}."
    names = engine_names(data)
    cite_text(*names.values())
    where = (f"{ref.path}/manifest.json", "manifest")
    shown = [_difference(d, where) for d in c.differences if d.field != "git_sha"]
    conf = fmt(100 * c.confidence, src=Source("compare", "confidence"))
    text = [
        f"The project ships its own run of this study (`{ref.path}`): {_machine(theirs.manifest, where[0])}; "
        f"this run: {_machine(data.results.manifest, where[1])}. "
        + ("Differs: " + "; ".join(shown) + ". " if shown else "Nothing recorded differs but the date. ")
        + "Ratios are this run over the reference; a verdict says whether a difference is beyond the "
        f"repeats' noise ({conf} % over each engine's metrics together), not what caused it, and a cliff "
        "moved only when the two brackets do not overlap.",
        "",
        *_table(c, level_set, names, ref.path),
    ]
    missing = named(c.only_in_b, names)
    if missing:
        text += ["", "Not in the reference (none of its engines has the configuration): " + ", ".join(missing) + "."]
    text += ["", f"Level by level: `cliffbench compare {ref.path} {data.study}`."]
    return "\n".join(text)

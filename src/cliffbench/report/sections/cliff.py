"""The cliff section: each engine's cliff (searched, or the grid's bracket) and its cause."""

from __future__ import annotations

from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.bench.search.bracket import CliffFound
from cliffbench.decide.causes import cliff_cause, latency_components, study_cliffs
from cliffbench.report.data import ReportData

__all__ = ["cliff_section"]


def _unit(s: CliffFound) -> str:
    return "user" if s.over == "users" and s.resolution == 1 else s.unit()


def cliff_section(data: ReportData, level_set: str = "chat") -> str:
    """Markdown: a table of every engine's cliff with how it was found and the cause computed from
    the stored levels, then each search's path."""
    res = data.results
    study = res.study
    judge = SloJudge.of(study.slo)
    pooled = data.pooled
    comp = latency_components(res, level_set)
    cliffs = study_cliffs(pooled, level_set, data.searches)
    if not cliffs:
        return f"No successful level in level set {level_set!r}: no cliff to name."
    specs = res.engine_specs
    sets = {s.name: s for s in study.level_sets}
    long_docs = level_set in sets and sets[level_set].workload.long_fraction > 0
    rows = ["| engine | cliff | found by | cause, from the stored levels |", "|---|---|---|---|"]
    for engine, c in cliffs.items():
        slots = specs[engine].batch_capacity() if engine in specs else None
        cause = cliff_cause(comp, pooled, engine, c.meets_up_to, c.first_miss, judge, slots, long_docs)
        rows.append(f"| {engine} | {c.text} | {c.source} | {cause.text} |")
    searched = [s for s in data.searches if s.level_set == level_set]
    out = [
        f"Level set `{level_set}`, SLO {judge.text()} (each verdict by the {judge.level:.0%} interval of the "
        "percentile, pooled over repeats). A *search* bracketed by doubling and bisected to its resolution; "
        "*grid* reads the bracket off the grid. Latency split per request from the engine's own timestamps "
        "(queue: submitted to scheduled; prefill: scheduled to first token; decode: first to last token; "
        "a served engine's queue wait is the level's mean, estimated from the server's /metrics); "
        "running and waiting sequences sampled from the engine during each level.",
        "",
        *rows,
    ]
    if searched:
        out += ["", "Search paths (load, verdict; `g`: a grid level reused, `rep`: repeats the probe took):", ""]
        for s in searched:
            wall = f"{s.wall_s / 60:.1f} min" if s.wall_s == s.wall_s else "time not stored"
            out.append(
                f"- **{s.engine}** ({s.slo}; resolution {s.resolution:g} {_unit(s)}; {s.probes_measured} level "
                f"runs measured by the search, {wall}): {s.path_text()}"
            )
    return "\n".join(out)

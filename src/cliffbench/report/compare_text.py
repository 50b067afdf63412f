"""A study comparison (`decide.compare`) as text: rich tables for `cliffbench compare`, Markdown
for the whitepaper's comparison section. Pure functions of the StudyComparison."""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cliffbench.decide.compare import EngineShift, MetricShift, StudyComparison

__all__ = ["comparison_markdown", "comparison_renderables", "engine_line", "metric_cell"]


def metric_cell(m: MetricShift) -> str:
    """'x0.97 [0.91-1.02 @90%] same within noise'; 'x0.97 (one repeat each) undecided'."""
    if math.isnan(m.ratio):
        return "not measured in both"
    if math.isnan(m.level):
        return f"x{m.ratio:.3g} (too few repeats) {m.verdict}"
    return f"x{m.ratio:.3g} [{m.lo:.3g}-{m.hi:.3g} @{100 * m.level:.3g}%] {m.verdict}"


def _name(e: EngineShift) -> str:
    return e.engine_a if e.engine_a == e.engine_b else f"{e.engine_a} (B: {e.engine_b})"


def engine_line(e: EngineShift) -> str:
    """'vllm: same within noise; output tok/s x0.98 [...]; TTFT p90 ...' (pooled over its levels)."""
    parts = [f"{m.label} {metric_cell(m)}" for m in e.metrics]
    return f"{_name(e)}: {e.verdict} over its levels; " + "; ".join(parts)


def _header(c: StudyComparison) -> list[str]:
    lines = [
        f"A: {c.a.name} ({c.a.path}), {c.a.created_at}, git {c.a.git_sha[:12]}, {c.a.cpu}",
        f"B: {c.b.name} ({c.b.path}), {c.b.created_at}, git {c.b.git_sha[:12]}, {c.b.cpu}",
        f"ratios B/A; SLO (A's, for both): {c.slo}; engine verdicts at {100 * c.confidence:g} % over their "
        f"metrics together, a level's at its own coverage; regression: slower beyond {100 * c.tolerance:g} % "
        "or a cliff moved down",
    ]
    blocking = [d.text() for d in c.differences if d.blocking]
    notes = [d.text() for d in c.differences if not d.blocking]
    if blocking:
        lines.append("DIFFERENT (allowed, named on every line): " + "; ".join(blocking))
    if notes:
        lines.append("also differs: " + "; ".join(notes))
    for side, names in (("A", c.only_in_a), ("B", c.only_in_b)):
        if names:
            lines.append(f"only in {side} (no engine of the other has its configuration): {', '.join(names)}")
    return lines


def _cliff_lines(e: EngineShift) -> list[str]:
    lines = [f"cliff in {x.level_set}: A {x.a}, B {x.b}: {x.moved}" for x in e.cliffs]
    return lines + [f"level: {n}" for n in e.level_notes]


def _verdict_line(c: StudyComparison) -> str:
    if c.regressions:
        busy = any(d.field == "machine load" for d in c.differences)
        why = " (measured beside other work: the machine load differs as much as the engines may)" if busy else ""
        return "REGRESSION: " + "; ".join(c.regressions) + why
    return f"no regression beyond the tolerance ({100 * c.tolerance:g} %)"


def comparison_renderables(c: StudyComparison) -> list[RenderableType]:
    """The terminal output of `cliffbench compare`: header, then per engine its line, cliffs and a
    table of its levels, then the regression line."""
    out: list[RenderableType] = [Text("\n".join(_header(c)))]
    for e in c.engines:
        table = Table(title=None, show_lines=False)
        for col in ("set", "load", *(f"{m.label} B/A" for m in e.metrics), "differs"):
            table.add_column(col, overflow="fold")
        for lv in e.levels:
            table.add_row(lv.level_set, lv.load, *(metric_cell(m) for m in lv.metrics), "; ".join(lv.differs) or "-")
        head = Text(engine_line(e), style="bold")
        out.append(
            Group(Text(""), head, Text("\n".join(_cliff_lines(e) + [f"differs: {d}" for d in e.differs])), table)
        )
    out.append(Text(_verdict_line(c), style="bold red" if c.regressions else "bold"))
    return out


def comparison_markdown(c: StudyComparison, title_a: str = "A", title_b: str = "B") -> str:
    """The whitepaper's comparison section: who is A and B, what differs, per engine its verdict,
    cliffs and level table."""
    head = _header(c)
    md = [f"- **A**, {title_a}: {head[0][3:]}", f"- **B**, {title_b}: {head[1][3:]}", ""]
    md += [" ".join(f"{x}." for x in head[2:]), ""]
    for e in c.engines:
        md += [f"**{engine_line(e)}**", ""]
        md += [f"- {x}" for x in _cliff_lines(e) + [f"differs: {d}" for d in e.differs]]
        cols = ["set", "load", *(f"{m.label} B/A" for m in e.metrics)]
        md += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        md += [
            f"| {lv.level_set} | {lv.load} | " + " | ".join(metric_cell(m) for m in lv.metrics) + " |"
            for lv in e.levels
        ]
        md.append("")
    md.append(f"**{_verdict_line(c)}**")
    return "\n".join(md)

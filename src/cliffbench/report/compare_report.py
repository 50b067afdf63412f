"""The whitepaper's comparison with another run (`cliffbench report --compare-to B`, notebook
parameter `compare_to`): one call from notebook 30 returns the section's Markdown, with an overlay
figure per engine (its throughput and TTFT curves in both runs) under figures/<study>/compare/.

The other run is the baseline (A), this study B: the ratios say how this run compares with it.
Different hardware, models or workloads are compared all the same (a reader comparing with a
reference run from another machine wants to see it) and named on every line."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.decide.compare import compare_studies, open_study
from cliffbench.report.compare_text import comparison_markdown
from cliffbench.report.figure_set import figure_dir
from cliffbench.report.figures.overlay import plot_overlay
from cliffbench.report.figures.style import save_figure, set_style
from cliffbench.report.sections.common import figure_html

__all__ = ["comparison_section"]


def comparison_section(study: str, compare_to: str, level_set: str = "chat", out_dir: Path | None = None) -> str:
    """The section comparing stored study `study` (B) with `compare_to` (A: a study name or a study
    folder such as data/reference/default): Markdown with its figures inline."""
    base, this = open_study(compare_to, "compare_to"), open_study(study, "study")
    comp = compare_studies(base, this, paths=(compare_to, study), allow_different=True)
    judge = SloJudge.of(base.study.slo)
    pooled = (pool_repeats(base.levels, base.requests, judge), pool_repeats(this.levels, this.requests, judge))
    ttft = next((m for m in comp.engines[0].metrics if m.metric.startswith("ttft_s_p")), None) if comp.engines else None
    out = out_dir or figure_dir(study) / "compare"
    titles = (f"{comp.a.name} (baseline)", f"{comp.b.name} (this run)")
    set_style()
    figures = []
    for e in comp.engines:
        panels = [("output_tok_s", "output tok/s")] + ([(ttft.metric, ttft.label + " (s)")] if ttft else [])
        fig, axes = plt.subplots(1, len(panels), figsize=(7.5, 3.0), squeeze=False)
        for ax, (column, label) in zip(axes[0], panels, strict=True):
            plot_overlay(ax, pooled, (e.engine_a, e.engine_b), titles, level_set, column, label)
        fig.suptitle(e.engine_b if e.engine_a == e.engine_b else f"{e.engine_b} (baseline: {e.engine_a})", fontsize=9)
        fig.tight_layout()
        svg = save_figure(fig, f"compare_{e.engine_b}", out)["svg"]
        plt.close(fig)
        caption = f"{e.engine_b}: solid {titles[0]}, dashed {titles[1]}; medians over repeats, bars their range."
        figures.append(figure_html(svg, caption))
    text = comparison_markdown(comp, f"{comp.a.name} (baseline)", f"{comp.b.name} (this run)")
    return "\n\n".join([f"## Compared with {compare_to}", text, *figures])

"""The whitepaper's words, built from stored data: every number here is read from the results.

Each section is a pure function of a `cliffbench.report.data.ReportData` bundle (plus the
notebook's parameters) returning Markdown or a small HTML fragment that the `30_whitepaper`
notebook displays; none reads a file, so the same sections render any study.
"""

from __future__ import annotations

from cliffbench.report.sections.audit import claims_section, efficiency_section, gpu_study_section, shapes_section
from cliffbench.report.sections.cliff import cliff_section
from cliffbench.report.sections.common import figure_html, fmt, headline_level, measured_levels
from cliffbench.report.sections.comparisons import comparisons_section, comparisons_sentence, engine_roles_table
from cliffbench.report.sections.fidelity import fidelity_sentence
from cliffbench.report.sections.methods import glossary_table, limitations_section, methods_section
from cliffbench.report.sections.overhead import engine_overheads, overhead_gap_sentence, overhead_section
from cliffbench.report.sections.results import config_table, levels_table, memory_section
from cliffbench.report.sections.summary import (
    executive_summary,
    seed_comparison,
    seed_engines,
    title_page_html,
)
from cliffbench.report.sections.tuning import tuning_section

__all__ = [
    "claims_section",
    "cliff_section",
    "comparisons_section",
    "comparisons_sentence",
    "config_table",
    "efficiency_section",
    "engine_overheads",
    "engine_roles_table",
    "executive_summary",
    "fidelity_sentence",
    "figure_html",
    "fmt",
    "glossary_table",
    "gpu_study_section",
    "headline_level",
    "levels_table",
    "limitations_section",
    "measured_levels",
    "memory_section",
    "methods_section",
    "overhead_gap_sentence",
    "overhead_section",
    "seed_comparison",
    "seed_engines",
    "shapes_section",
    "title_page_html",
    "tuning_section",
]

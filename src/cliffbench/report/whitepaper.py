"""The whitepaper in reading order: page 1 (the answer), the body (at most 12 pages), the appendices.

`whitepaper_blocks` returns the document as Markdown and HTML blocks; the `30_whitepaper`
notebook displays them in order and `report/pdf.py` renders the executed notebook, so a test can
render the same blocks from a hand-built study. The body cites each appendix it leaves detail to.
Numbers go through `fmt` with their source (`cliffbench.trace`); what the study file and the
published data fix (user counts, the SLO, the seed's constants) is recorded here, before any
section is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from cliffbench.audit.roofline import MODELS
from cliffbench.audit.seed import OLLAMA_SLOTS, SEED_HIGH_USERS
from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.decide.constraints import constraint_tree, measured_study
from cliffbench.decide.matrix.score import MatrixResult
from cliffbench.decide.tree import DecisionTree, Recommendation, UserProfile, recommend_for
from cliffbench.hardware import HARDWARE
from cliffbench.report import matrix_text as mxt
from cliffbench.report import sections as nv
from cliffbench.report.constraints_text import constraint_markdown, readers_markdown
from cliffbench.report.data import ReportData
from cliffbench.report.figure_set import FIGURE_CAPTIONS
from cliffbench.report.matrix_cto import verified_markdown
from cliffbench.report.matrix_pdf import MATRIX_CAPTIONS
from cliffbench.report.names import engine_names
from cliffbench.report.params import AnalysisParams
from cliffbench.report.sections import answer, body, reference, reuse, steady, working_set
from cliffbench.trace import Source, cite_text, record

__all__ = ["APPENDICES_CLASS", "Block", "whitepaper_blocks"]

APPENDICES_CLASS = "appendices"  # the HTML class that opens the appendices (the body ends there)


@dataclass(frozen=True)
class Block:
    kind: Literal["md", "html"]
    text: str


def _md(text: str) -> Block:
    return Block("md", text)


def _html(text: str) -> Block:
    return Block("html", text)


def _fig(figs: dict[str, Path], name: str, captions: dict[str, str] = FIGURE_CAPTIONS) -> Block:
    return _html(nv.figure_html(figs[name], captions[name]))


def _record_inputs(data: ReportData) -> None:
    """What the study file and the cited data fix: logged before the text uses it."""
    study = data.results.study
    for ls in study.level_sets:
        for users in ls.load.concurrency:
            record(str(users), Source("study", "concurrency", ls.name))
        record(str(ls.load.repeats), Source("study", "repeats", ls.name))
    for s in data.searches:
        for step in s.path:
            record(f"{step.x:g}", Source("search", "load", s.engine))
    record(f"{100 * SloJudge.of(study.slo).level:g}", Source("study", "slo confidence"))
    record(str(OLLAMA_SLOTS), Source("cliffbench.audit.seed", "OLLAMA_SLOTS", cited=True))
    for u in SEED_HIGH_USERS:
        record(str(u), Source("data/published/claims.csv", "concurrency", "seed", cited=True))
    cite_text(*MODELS, *(m.name for m in MODELS.values()), *HARDWARE, *(h.name for h in HARDWARE.values()))
    cite_text(*(es.model.name for es in study.engines))
    manifest = data.results.manifest  # the machine's own names (a CPU model, a GPU) are cited, not computed
    cite_text(manifest.cpu.model or "", *(g.name for g in manifest.gpu))


def _reuse_blocks(data: ReportData, judged: pd.DataFrame) -> list[Block]:
    """The reuse profiles (conversations, shared documents) in the body, where the study has any."""
    text = reuse.reuse_section(data, judged)
    if not text:
        return []
    axis = working_set.working_set_sentence(data)
    return [_md("### Conversations and shared documents"), _md(text + (f"\n\n{axis}" if axis else ""))]


def _body(
    data: ReportData,
    params: AnalysisParams,
    tree: DecisionTree,
    figs: dict[str, Path],
    matrix: MatrixResult,
    rec: Recommendation,
) -> list[Block]:
    res = data.results
    judge = SloJudge.of(res.study.slo, **tree.slo)
    judged = answer.judged_levels(data, tree)
    names = engine_names(data)
    users = record(str(params.peak_users), Source("parameters", "peak_users"))
    chosen = names.get(rec.engine, rec.engine) if rec.engine else "no engine measured here"
    return [
        _md("## Results"),
        _md(body.comparison_table(data, params.level_set)),
        _fig(figs, "throughput"),
        _fig(figs, "ttft"),
        _md("Every level with its range over repeats and its SLO verdict: Appendix C."),
        _md("### Against the reference run"),
        _md(reference.reference_section(data, params.level_set)),
        _md("### Steady state, not the starting gun"),
        _md(steady.steady_sentence(data)),
        _fig(figs, "in_flight"),
        _md(steady.steady_table(data, params.level_set)),
        *_reuse_blocks(data, judged),
        _md("## Why each cliff"),
        _md(body.cliff_table(data, judged, judge, params.level_set)),
        _fig(figs, "cliff_causes"),
        _md("## The seed's claims, one by one"),
        _md(nv.seed_comparison(data)),
        _md(body.seed_claims_table(data, params.level_set)),
        _md("## Decision tree"),
        _fig(figs, "decision_tree"),
        _md(body.tree_ranges(tree, names)),
        _md(
            f"For your **{users} peak users** ({record(tree.slo_text, Source('study', 'slo'))}): **{chosen}**. "
            "The evidence for each leaf: Appendix D."
        ),
        _md("## The decision matrix in brief"),
        _md(body.matrix_summary(matrix)),
    ]


def _appendices(
    data: ReportData,
    params: AnalysisParams,
    tree: DecisionTree,
    figs: dict[str, Path],
    matrix: MatrixResult,
    mfigs: dict[str, Path],
    rec: Recommendation,
) -> list[Block]:
    res = data.results
    measured = measured_study(res, params.level_set, params.ttft_slo_s, params.tpot_slo_s)
    path = constraint_tree(params.reader_constraints(), params.matrix_params(), study=measured)
    return [
        _html(f'<div class="{APPENDICES_CLASS}"><h2 id="appendices">Appendices</h2></div>'),
        _md("## Appendix A. Configuration of every engine"),
        _md(nv.config_table(data)),
        _md(nv.engine_roles_table(data, params.level_set)),
        _md(nv.comparisons_section(data, params.level_set)),
        _md("## Appendix B. The tuning sweep"),
        _md(nv.tuning_section(data, params.level_set)),
        _md("## Appendix C. Every level measured"),
        _md(nv.levels_table(data, params.level_set)),
        _fig(figs, "itl"),
        _md("## Appendix D. Cliffs in full: causes, search paths, the tree's evidence"),
        _md(nv.cliff_section(data, params.level_set)),
        _md(f"For {params.peak_users} users: {rec.verdict}\n\n" + "\n".join(f"- {e}" for e in rec.evidence)),
        _md("## Appendix E. How the two memory models work"),
        _md(nv.memory_section(data)),
        _fig(figs, "kv_memory"),
        _md(working_set.working_set_section(data)),
        _fig(figs, "working_set"),
        _md("## Appendix F. Queueing made visible"),
        _fig(figs, "timeline"),
        _fig(figs, "hol_blocking"),
        _md("## Appendix G. What the harness costs each engine"),
        _md(nv.overhead_section(data)),
        _md("## Appendix H. In-process engines against the real servers"),
        _md(nv.fidelity_sentence(data)),
        _fig(figs, "serving_overhead"),
        _md("## Appendix I. The published numbers against physical limits"),
        _md(nv.claims_section(data)),
        _md("## Appendix J. Measured efficiency against the roofline"),
        _md(nv.efficiency_section(data, params.level_set)),
        _fig(figs, "ceiling_fraction"),
        _md("## Appendix K. The published setup, ready to run on a GPU"),
        _md(nv.gpu_study_section(data)),
        _md("## Appendix L. From your constraints to an option of the matrix"),
        _md(constraint_markdown(path)),
        _md(readers_markdown(params.matrix_params(), measured)),
        _md("## Appendix M. Architecture Decision Matrix"),
        _md(mxt.method_markdown(matrix)),
        _md("### Ranking under the chosen weights"),
        _md(mxt.ranking_markdown(matrix)),
        _fig(mfigs, "matrix_heatmap", MATRIX_CAPTIONS),
        _md("### Freshness of the data"),
        _md(mxt.freshness_markdown(matrix)),
        _md(verified_markdown(matrix.data)),
        _md("### Sensitivity to the weights"),
        _md(mxt.sensitivity_markdown(matrix)),
        _md("### Cost per 1M output tokens vs load"),
        _fig(mfigs, "matrix_cost", MATRIX_CAPTIONS),
        _md("### Utilisation: where the ranking flips"),
        _md(mxt.utilisation_markdown(matrix)),
        _md("### The matrix, with sources"),
        _md(mxt.matrix_markdown(matrix)),
        _md("## Appendix N. Methods, environment and provenance"),
        _md(nv.methods_section(data)),
        _md("## Appendix O. Limitations"),
        _md(nv.limitations_section(data)),
        _md("## Appendix P. Glossary"),
        _md(nv.glossary_table()),
    ]


def whitepaper_blocks(
    data: ReportData,
    params: AnalysisParams,
    tree: DecisionTree,
    figs: dict[str, Path],
    matrix: MatrixResult,
    mfigs: dict[str, Path],
) -> list[Block]:
    """The whole document: page 1, the body, the appendices (figures drawn by 20_analysis and
    `make_matrix_figures`)."""
    _record_inputs(data)
    reuse_sets = reuse.reuse_level_sets(data.results.study)
    profiles = answer.profiles_of(data, [params.level_set, params.mixed_level_set, *reuse_sets])
    page1 = answer.answer_html(
        data, tree, figs["pareto"], FIGURE_CAPTIONS["pareto"], profiles, nv.seed_engines(data, params.level_set)
    )
    # the reader's recommendation, read once: the body states it, Appendix D gives its evidence
    profile = UserProfile(peak_users=params.peak_users, ttft_slo_s=params.ttft_slo_s, tpot_slo_s=params.tpot_slo_s)
    rec = recommend_for(data.results, profile, params.level_set, params.mixed_level_set)
    return [
        _html(page1),
        *_body(data, params, tree, figs, matrix, rec),
        *_appendices(data, params, tree, figs, matrix, mfigs, rec),
    ]

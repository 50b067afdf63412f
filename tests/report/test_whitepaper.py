"""The whitepaper rendered from a hand-built study shaped like the default one (seven engines, six
loads, two traffic profiles): page 1 is the answer, the contents follow, the body fits in 12
pages, and every number in the body's text was written by the formatter, which logged its source.

The PDF goes through the same path as `make report` (blocks -> notebook outputs -> nbconvert ->
WeasyPrint), without papermill or engines. Set CLIFFBENCH_PAGES_DIR to keep each page as PNG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cliffbench.audit.claims import load_claims
from cliffbench.config import PROJECT_ROOT
from cliffbench.decide import matrix as mx
from cliffbench.decide.matrix import score as matrix_score
from cliffbench.decide.tree import decision_tree
from cliffbench.report import figure_set
from cliffbench.report.data import BenchmarkResult, ReferenceRun, ReportData
from cliffbench.report.matrix_pdf import make_matrix_figures
from cliffbench.report.params import AnalysisParams
from cliffbench.report.pdf import render_pdf
from cliffbench.report.prose import MEDIAN_WORDS_MAX, SENTENCE_WORDS_MAX, body_blocks, notebook_blocks, prose_stats
from cliffbench.report.whitepaper import Block, whitepaper_blocks
from cliffbench.trace import NumberLog, number_tokens, recording
from tests.report.study_data import fake_results, tuning_sweep

ENGINES = (
    "vllm",
    "vllm-as-shipped",
    "vllm-fp32",
    "ollama",
    "llamacpp-f32-32",
    "llamacpp-bf16-32",
    "llamacpp-q8_0-32",
)
MAX_BODY_PAGES = 12

pytestmark = pytest.mark.slow  # renders a 40-page PDF: about 3 minutes on 2 cores


def _notebook(blocks: list[Block]) -> dict[str, Any]:
    """A notebook whose one cell displayed `blocks`, as the executed 30_whitepaper holds them."""
    outputs = [
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"text/markdown" if b.kind == "md" else "text/html": b.text},
        }
        for b in blocks
    ]
    cell = {"cell_type": "code", "id": "wp", "execution_count": 1, "metadata": {}, "source": "", "outputs": outputs}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"language_info": {"name": "python"}}, "cells": [cell]}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], NumberLog, Path]:
    out = tmp_path_factory.mktemp("whitepaper")
    res = fake_results(
        1, engines=ENGINES, users=(1, 2, 4, 8, 16, 32), mixed_users=(4, 16), failed=None, requests_per_level=31
    )
    data = ReportData(
        study="whitepaper-fixture",
        results=res,
        claims=load_claims(),
        tuning=BenchmarkResult("engine_tuning.json", tuning_sweep()),
        # the project's run of the same study on another machine: the body compares with it
        reference=ReferenceRun(
            "data/reference/whitepaper-fixture",
            fake_results(2, engines=ENGINES, users=(1, 2, 4, 8, 16, 32), mixed_users=(4, 16), failed=None,
                         requests_per_level=31, cpu_model="Reference CPU 7"),
        ),
    )  # fmt: skip
    params = AnalysisParams(study=data.study)
    tree = decision_tree(res, "chat", "mixed", params.ttft_slo_s, params.tpot_slo_s)
    mp = pytest.MonkeyPatch()
    mp.setattr(figure_set, "FIGURES_DIR", out / "figures")
    # the fixture study is not on disk: the matrix (and the constraint tree's matrix) read it from here
    mp.setattr(matrix_score, "load_study", lambda name: res)
    try:
        figs = figure_set.make_figures(data, "chat", "mixed", tree)
        matrix = mx.evaluate(params.matrix_params(), study=res)
        mfigs = make_matrix_figures(matrix, out / "figures")
        with recording() as log:
            blocks = whitepaper_blocks(data, params, tree, figs, matrix, mfigs)
    finally:
        mp.undo()
    nb_path = out / "30_whitepaper.ipynb"
    nb_path.write_text(json.dumps(_notebook(blocks)))
    pdf = render_pdf(nb_path, out / "whitepaper.pdf", PROJECT_ROOT / "notebooks")

    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    pages = [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    keep = os.environ.get("CLIFFBENCH_PAGES_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for i in range(len(doc)):
            doc[i].render(scale=1.5).to_pil().save(Path(keep) / f"page-{i + 1:02d}.png")
    return [" ".join(p.split()) for p in pages], log, pdf


def _appendix_start(pages: list[str]) -> int:
    """The first page after the contents that opens the appendices."""
    return next(i for i, p in enumerate(pages) if i > 1 and p.startswith("Appendices"))


def test_page_one_is_the_answer(rendered: tuple[list[str], NumberLog, Path]) -> None:
    pages, _, _ = rendered
    first = pages[0]
    assert first.startswith("Which engine for how many users")
    for part in ("Setup:", "Users each engine serves within the SLO", "Choose by peak users", "Of the seed's"):
        assert part in first, part
    # one repeat per level here: the page says the spread is unknown rather than print none
    assert "Every level ran once, so the run-to-run spread is not known" in first
    # engines by what they are, not by study label
    assert "Ollama 0.10+ as shipped" in first and "llama.cpp, 32 slots, F32" in first
    assert "llamacpp-f32-32" not in first
    assert "Contents" not in first and pages[1].startswith("Contents")


def test_body_fits_twelve_pages(rendered: tuple[list[str], NumberLog, Path]) -> None:
    pages, _, _ = rendered
    start = _appendix_start(pages)
    assert start <= MAX_BODY_PAGES, f"body is {start} pages"
    body = " ".join(pages[:start])
    for title in ("Results", "Against the reference run", "Why each cliff", "The seed's claims, one by one"):
        assert title in body, title
    assert "Decision tree" in body and "Reference CPU 7, " in body  # the reference's machine, named
    # the seed paragraph once, not twice
    assert " ".join(pages).count("The seed claims vLLM delivers about") == 1


def test_every_body_number_is_traced(rendered: tuple[list[str], NumberLog, Path]) -> None:
    pages, log, _ = rendered
    start = _appendix_start(pages)
    body = " ".join([pages[0], *pages[2:start]])  # the contents (page 2) hold page numbers only
    found = number_tokens(body)
    assert len(found) > 50, found  # the check reads numbers, not an empty page
    untraced = log.untraced(body)
    assert untraced == [], [(t, body[max(0, body.find(f" {t}") - 60) : body.find(f" {t}") + 20]) for t in untraced]
    sources = {s.table for token in found if token in log.sources for s in log.sources[token]}
    assert {"levels", "cliff", "study"} <= sources, sources


def test_body_sentences_are_short(rendered: tuple[list[str], NumberLog, Path]) -> None:
    """Read from the blocks the PDF was made of (its text runs tables into sentences)."""
    _, _, pdf = rendered
    stats = prose_stats(body_blocks(notebook_blocks(pdf.parent / "30_whitepaper.ipynb")))
    assert stats.n_sentences > 20  # the check reads the body's prose, not an empty list
    assert stats.median_words < MEDIAN_WORDS_MAX, stats
    assert stats.max_words <= SENTENCE_WORDS_MAX, stats.longest

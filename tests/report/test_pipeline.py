"""The notebooks under papermill on a tiny study (real engines), and the whitepaper PDF."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cliffbench.bench.store.levels import load_results
from cliffbench.cli import app
from cliffbench.config import PROJECT_ROOT
from cliffbench.report.sections import fmt

pytestmark = [pytest.mark.engine, pytest.mark.vllm, pytest.mark.slow]  # studies/tiny.yaml runs vLLM

SECTIONS = [
    "Which engine for how many users",
    "Users each engine serves within the SLO",
    "Contents",
    "Results",
    "Why each cliff",
    "The seed's claims, one by one",
    "Decision tree",
    "The decision matrix in brief",
    "Appendices",
    "Appendix A. Configuration of every engine",
    "Appendix E. How the two memory models work",
    "Appendix I. The published numbers against physical limits",
    "Appendix J. Measured efficiency against the roofline",
    "Appendix K. The published setup, ready to run on a GPU",
    "Appendix M. Architecture Decision Matrix",
    "Appendix N. Methods, environment and provenance",
    "Appendix O. Limitations",
    "Appendix P. Glossary",
]


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory, model: object) -> Path:
    out = tmp_path_factory.mktemp("report") / "whitepaper.pdf"
    result = CliRunner().invoke(
        app, ["report", "--study-file", "studies/tiny.yaml", "-p", "force", "true", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "[cliffbench report] running notebooks/30_whitepaper.ipynb" in result.output
    return out


def _text(pdf: Path) -> tuple[list[str], object]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    return [doc[i].get_textpage().get_text_range() for i in range(len(doc))], doc


def test_notebooks_executed(pdf: Path) -> None:
    for name in ("00_prepare_model", "10_benchmark", "20_analysis", "30_whitepaper"):
        assert (PROJECT_ROOT / "report" / "executed" / f"{name}.ipynb").is_file()
    res = load_results("tiny")
    assert set(res.levels["engine"]) == {"vllm", "llamacpp-serial", "llamacpp-slots-2"}
    assert (res.levels["status"] == "ok").all(), res.levels["error"].tolist()


def test_pdf_sections_toc_pages(pdf: Path) -> None:
    pages, _ = _text(pdf)
    text = " ".join(" ".join(pages).split())
    for title in SECTIONS:
        assert title in text, title
    assert len(pages) >= 4
    assert re.search(r"page 2 of \d+", " ".join(pages[1].split()))
    first, toc = " ".join(pages[0].split()), " ".join(pages[1].split())
    assert first.startswith("Which engine for how many users")  # page 1 is the answer, no cover
    assert toc.startswith("Contents") and "Results" in toc and "Glossary" in toc


def test_pdf_numbers_come_from_data(pdf: Path) -> None:
    pages, _ = _text(pdf)
    text = " ".join(" ".join(pages).split())
    lv = load_results("tiny").levels
    ok = lv[(lv["status"] == "ok") & (lv["level_set"] == "chat")]
    values = [fmt(v) for v in ok["output_tok_s"]] + [fmt(v) for v in ok["ttft_s_p99"]]
    found = [v for v in values if v in text]
    assert len(found) >= 3, (values, found)


def test_pdf_pages_not_blank(pdf: Path) -> None:
    import numpy as np

    pages, doc = _text(pdf)
    fig_page = next(i for i, t in enumerate(pages) if "Figure 1." in " ".join(t.split()))
    img = np.asarray(doc[fig_page].render(scale=1).to_pil().convert("L"))  # type: ignore[index]
    share = float((img < 200).mean())
    assert share > 0.02, f"page {fig_page + 1} is nearly blank ({share:.4f} non-white)"


def test_pdf_has_the_matrix(pdf: Path) -> None:
    from cliffbench.decide.matrix import load_matrix

    pages, _ = _text(pdf)
    text = " ".join(" ".join(pages).split())
    # the whitepaper's section is a one-page summary pointing to the decision document
    assert "Architecture Decision Matrix" in text and "The decision document" in text
    assert "verified against a primary source" in text
    doc, _ = _text(PROJECT_ROOT / "report" / "decision_matrix.pdf")
    full = " ".join(" ".join(doc).split())
    data = load_matrix()
    for name in [o.name for o in data.options.values()] + [c.name for c in data.criteria.values()]:
        assert name in full, name
    # its self-hosted rows name the study they come from, measured or projected
    assert "study tiny" in full and ("projected to a100-40gb" in full or "measured: study tiny" in full)
    assert (PROJECT_ROOT / "report" / "decision_matrix.csv").is_file()


def test_whitepaper_stops_early_on_unknown_study() -> None:
    from papermill.exceptions import PapermillExecutionError

    from cliffbench.report.pipeline import execute_notebook

    with pytest.raises(PapermillExecutionError) as exc:
        execute_notebook(
            "30_whitepaper", {"study": "no-such-study"}, out_dir=PROJECT_ROOT / "report" / "executed" / "bad"
        )
    assert "no results for 'no-such-study'" in str(exc.value.evalue)
    assert exc.value.exec_count <= 4  # parameters, injected parameters, validation, load


def test_missing_figures_named() -> None:
    from cliffbench.config import InputError
    from cliffbench.report.figure_set import figure_paths

    with pytest.raises(InputError, match=r"figures: .*missing; run notebooks/20_analysis\.ipynb"):
        figure_paths("no-such-study")

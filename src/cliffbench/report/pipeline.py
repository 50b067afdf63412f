"""The report pipeline: papermill runs the notebooks, nbconvert + WeasyPrint render the PDF.

    python -m cliffbench.report.pipeline --study-file studies/default.yaml [-p name value ...] [-f params.yaml]

Executed notebooks go to report/executed/ (sources untouched); the PDF is written to a temporary
file and renamed over report/whitepaper.pdf only when rendering succeeded, so a failed run leaves
the previous PDF as it was. Notebook parameters are validated by the pydantic models below, the
first thing each notebook does.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, ValidationInfo, field_validator

from cliffbench.bench.study import flag_study, load_study
from cliffbench.config import PROJECT_ROOT, REPORT_DIR, InputError, Spec, parse_spec

if TYPE_CHECKING:
    from cliffbench.decide.matrix import MatrixParams

__all__ = [
    "NOTEBOOKS",
    "NOTEBOOKS_DIR",
    "AnalysisParams",
    "BenchmarkParams",
    "PrepareParams",
    "benchmark_spec",
    "build_report",
    "execute_notebook",
    "html_to_pdf",
    "main",
    "render_pdf",
    "validate_params",
]

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = ("00_prepare_model", "10_benchmark", "20_analysis", "30_whitepaper")


class PrepareParams(Spec):
    """`00_prepare_model`."""

    model_name: str = "smollm2-135m"
    force_prepare: bool = False


class BenchmarkParams(Spec):
    """`10_benchmark`: a study file, or the flag form (engine + levels)."""

    study_file: str = "studies/default.yaml"
    study_name: str = Field("", description="overrides the study's name (results folder)")
    engine: str = Field("", description="flag form instead of a study file: an engine kind")
    slots: int | None = Field(None, gt=0)
    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4])
    workload: str = "chat"
    requests_per_level: int = Field(8, gt=0)
    seed: int = 0
    force: bool = False


class AnalysisParams(Spec):
    """`20_analysis` and `30_whitepaper`: which stored study, and the user's profile for the tree."""

    study: str = "default"
    level_set: str = "chat"
    mixed_level_set: str = "mixed"
    peak_users: int = Field(25, gt=0)
    ttft_slo_s: float = Field(2.0, gt=0)
    tpot_slo_s: float = Field(0.25, gt=0)
    # the Architecture Decision Matrix (cliffbench.decide.matrix.MatrixParams without the prefix)
    matrix_users: int = Field(25, gt=0)
    matrix_input_tokens: int = Field(512, gt=0)
    matrix_output_tokens: int = Field(256, gt=0)
    matrix_ttft_slo_s: float = Field(2.0, gt=0)
    matrix_hardware: str = "a100-40gb"
    matrix_gpu_prices: dict[str, float] = Field(default_factory=dict)
    matrix_weights: dict[str, float] = Field(default_factory=dict)
    matrix_efficiency: float = Field(0.5, gt=0, le=1)
    matrix_precision: str = "bf16"
    matrix_study: str = ""

    @field_validator("matrix_hardware", "matrix_precision", "matrix_gpu_prices", "matrix_weights")
    @classmethod
    def _matrix_names(cls, v: Any, info: ValidationInfo) -> Any:
        # unknown criteria or hardware fail here, before any notebook runs, not mid-report
        from cliffbench.decide.matrix import param_problem

        if problem := param_problem(str(info.field_name).removeprefix("matrix_"), v):
            raise ValueError(problem)
        return v

    def matrix_params(self) -> MatrixParams:
        """The matrix's MatrixParams from the `matrix_*` parameters, checked against data/matrix/."""
        from cliffbench.decide.matrix import MatrixParams, check_params

        fields = {k.removeprefix("matrix_"): v for k, v in self.model_dump().items() if k.startswith("matrix_")}
        params = MatrixParams(**fields)
        check_params(params, names={k: f"parameter matrix_{k}" for k in fields})
        return params


def validate_params(cls: type[Spec], namespace: dict[str, Any]) -> Any:
    """Validate a notebook's parameters (its globals) into `cls`; InputError names the parameter."""
    data = {k: namespace[k] for k in cls.model_fields if k in namespace}
    return parse_spec(cls, data, prefix="parameter ")


def benchmark_spec(p: BenchmarkParams) -> Any:
    """The StudySpec a `10_benchmark` run executes."""
    if p.engine:
        spec = flag_study(
            p.engine, p.slots, ",".join(map(str, p.concurrency)), p.requests_per_level, p.workload, p.study_name or None
        )
    else:
        path = Path(p.study_file)
        spec = load_study(path if path.is_absolute() else PROJECT_ROOT / path)
        if p.study_name:
            spec = spec.model_copy(update={"name": p.study_name})
    return spec.model_copy(update={"seed": p.seed}) if p.seed else spec


def execute_notebook(name: str, params: dict[str, Any], out_dir: Path | None = None) -> Path:
    import papermill as pm

    out_dir = out_dir or REPORT_DIR / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    source = NOTEBOOKS_DIR / f"{name}.ipynb"
    declared = pm.inspect_notebook(str(source))
    pm.execute_notebook(
        str(source),
        str(out),
        parameters={k: v for k, v in params.items() if k in declared},
        cwd=str(NOTEBOOKS_DIR),
        kernel_name="python3",
        progress_bar=False,
        report_mode=True,
    )
    return out


_CSS = """
@page { size: A4; margin: 20mm 17mm 22mm 17mm;
  @bottom-center { content: "page " counter(page) " of " counter(pages); font-size: 8pt; color: #666; } }
@page :first { @bottom-center { content: none; } }
body { counter-reset: fig; font-family: "DejaVu Sans", sans-serif; font-size: 9.5pt; line-height: 1.4; color: #222; }
.title-page { page-break-after: always; padding-top: 70mm; text-align: center; }
.title-page .title { font-size: 26pt; margin-bottom: 4mm; }
.title-page .subtitle { font-size: 13pt; color: #444; }
.title-page .meta { font-size: 10pt; color: #555; }
nav.toc { page-break-after: always; }
nav.toc h2 { counter-increment: none; }
nav.toc ul { list-style: none; padding-left: 0; }
nav.toc li.h3 { padding-left: 6mm; font-size: 9pt; }
nav.toc a { color: #222; text-decoration: none; }
nav.toc a::after { content: leader('.') target-counter(attr(href), page); }
h2 { font-size: 15pt; border-bottom: 1px solid #999; margin-top: 8mm; }
h3 { font-size: 11.5pt; }
table { border-collapse: collapse; font-size: 8pt; margin: 3mm 0; }
th, td { border: 1px solid #bbb; padding: 1mm 2mm; text-align: left; }
figure { page-break-inside: avoid; margin: 4mm auto; counter-increment: fig; }
figure img { width: 100%; }
figcaption { font-size: 8.5pt; color: #333; }
figcaption::before { content: "Figure " counter(fig) ". "; font-weight: bold; }
a.anchor-link { display: none; }
pre, .jp-OutputArea-output pre { white-space: pre-wrap; font-size: 8pt; }
"""


def _html_document(body: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(body, "html.parser")
    for a in soup.select("a.anchor-link"):
        a.decompose()
    items = []
    for i, h in enumerate(soup.find_all(["h2", "h3"])):
        if h.find_parent(class_="title-page"):
            continue
        hid = h.get("id") or f"sec-{i}"
        h["id"] = re.sub(r"[^A-Za-z0-9_-]", "-", str(hid))
        items.append(f'<li class="{h.name}"><a href="#{h["id"]}">{h.get_text(strip=True)}</a></li>')
    toc = f'<nav class="toc"><h2 id="toc">Contents</h2><ul>{"".join(items)}</ul></nav>'
    title = soup.select_one(".title-page")
    if title is not None:
        title.insert_after(BeautifulSoup(toc, "html.parser"))
        rest = str(soup)
    else:
        rest = toc + str(soup)
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{_CSS}</style></head><body>{rest}</body></html>"


def render_pdf(executed: Path, pdf: Path, base_dir: Path | None = None) -> Path:
    """nbconvert (no code cells) -> HTML with a table of contents and page numbers -> WeasyPrint PDF."""
    import nbformat
    from nbconvert import HTMLExporter
    from weasyprint import HTML

    nb = nbformat.read(str(executed), as_version=4)  # type: ignore[no-untyped-call]
    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        template_name="basic", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    exporter.exclude_output_stdin = True
    body, _ = exporter.from_notebook_node(nb)
    document = _html_document(body)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    (pdf.with_suffix(".html")).write_text(document)
    tmp = pdf.with_name(f".{pdf.stem}-{os.getpid()}.pdf")
    try:
        HTML(string=document, base_url=str(base_dir or NOTEBOOKS_DIR) + "/").write_pdf(str(tmp))
        tmp.replace(pdf)
    finally:
        tmp.unlink(missing_ok=True)
    return pdf


def html_to_pdf(body: str, pdf: Path, base_dir: Path, extra_css: str = "") -> Path:
    """An HTML fragment in the report's style (no title page, no contents) -> PDF, written atomically."""
    from weasyprint import HTML

    head = f"<head><meta charset='utf-8'><style>{_CSS}{extra_css}</style></head>"
    document = f"<!DOCTYPE html><html>{head}<body>{body}</body></html>"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp = pdf.with_name(f".{pdf.stem}-{os.getpid()}.pdf")
    try:
        HTML(string=document, base_url=str(base_dir) + "/").write_pdf(str(tmp))
        tmp.replace(pdf)
    finally:
        tmp.unlink(missing_ok=True)
    return pdf


def build_report(params: dict[str, Any], out_pdf: Path | None = None) -> Path:
    """Run 00 -> 10 -> 20 -> 30 with `params` and render the whitepaper PDF."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    declared = {k for name in NOTEBOOKS for k in pm.inspect_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"))}
    unknown = sorted(set(params) - declared)
    if unknown:
        raise InputError(f"parameter {unknown[0]}: unknown; allowed: {', '.join(sorted(declared))}")
    bench = validate_params(BenchmarkParams, params)
    spec = benchmark_spec(bench)
    params = {**params, "study": params.get("study", spec.name)}
    validate_params(AnalysisParams, params).matrix_params()  # the matrix's checks need data/matrix/ too
    executed = {}
    for name in NOTEBOOKS:
        print(f"[cliffbench report] running notebooks/{name}.ipynb", flush=True)
        try:
            executed[name] = execute_notebook(name, params)
        except PapermillExecutionError as exc:
            raise InputError(f"notebook {name}: {exc.ename}: {str(exc.evalue).splitlines()[0]}") from None
    pdf = out_pdf or REPORT_DIR / "whitepaper.pdf"
    render_pdf(executed["30_whitepaper"], pdf)
    print(f"[cliffbench report] wrote {pdf.relative_to(PROJECT_ROOT) if pdf.is_relative_to(PROJECT_ROOT) else pdf}")
    return pdf


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cliffbench.report.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--study-file", default=None, help="study YAML (default studies/default.yaml)")
    ap.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter, as papermill's -p (YAML-parsed value)",
    )
    ap.add_argument("-f", "--parameters-file", action="append", default=[], help="YAML file of parameters")
    ap.add_argument("--out", default=None, help="PDF path (default report/whitepaper.pdf)")
    a = ap.parse_args(argv)
    params: dict[str, Any] = {}
    try:
        for f in a.parameters_file:
            data = yaml.safe_load(Path(f).read_text()) if Path(f).is_file() else None
            if not isinstance(data, dict):
                raise InputError(f"-f: {f} is not a YAML mapping of parameters")
            params.update(data)
        params.update({k: _parse_value(v) for k, v in a.parameters})
        if a.study_file:
            params["study_file"] = a.study_file
        build_report(params, Path(a.out) if a.out else None)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

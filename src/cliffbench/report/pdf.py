"""The report's PDF: nbconvert + WeasyPrint, in one style (A4, page numbers, numbered figures).

Each PDF is written atomically (cliffbench.files.atomic_file): a failed rendering leaves the
previous PDF as it was.
"""

from __future__ import annotations

import re
from pathlib import Path

from cliffbench.files import atomic_file

__all__ = ["html_to_pdf", "render_pdf"]

_CSS = """
@page { size: A4; margin: 20mm 17mm 22mm 17mm;
  @bottom-center { content: "page " counter(page) " of " counter(pages); font-size: 8pt; color: #666; } }
@page :first { @bottom-center { content: none; } }
body { counter-reset: fig; font-family: "DejaVu Sans", sans-serif; font-size: 9.5pt; line-height: 1.4; color: #222; }
.title-page { page-break-after: always; padding-top: 70mm; text-align: center; }
.title-page .title { font-size: 26pt; margin-bottom: 4mm; }
.title-page .subtitle { font-size: 13pt; color: #444; }
.title-page .meta { font-size: 10pt; color: #555; }
.answer { page-break-after: always; }
.answer .title { font-size: 17pt; margin: 0 0 2mm 0; }
.answer .setup { font-size: 8.5pt; color: #444; margin: 0 0 2mm 0; }
.answer .bottom-line { font-size: 10pt; margin: 0 0 2mm 0; }
.answer table { font-size: 7.5pt; margin: 1mm 0; }
.answer caption { caption-side: top; text-align: left; font-weight: bold; font-size: 8.5pt; padding-bottom: 1mm; }
.answer figure { margin: 1mm auto; }
.answer figcaption { font-size: 7.5pt; }
.answer td, .answer th { padding: 0.6mm 1.5mm; }
.appendices { page-break-before: always; }
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
    appendix = False
    for i, h in enumerate(soup.find_all(["h2", "h3"])):
        if h.find_parent(class_="title-page"):
            continue
        appendix = appendix or bool(h.find_parent(class_="appendices"))
        if appendix and h.name == "h3":  # the appendices' subsections would double the contents
            continue
        hid = h.get("id") or f"sec-{i}"
        h["id"] = re.sub(r"[^A-Za-z0-9_-]", "-", str(hid))
        items.append(f'<li class="{h.name}"><a href="#{h["id"]}">{h.get_text(strip=True)}</a></li>')
    toc = f'<nav class="toc"><h2 id="toc">Contents</h2><ul>{"".join(items)}</ul></nav>'
    # the contents follow page 1: the answer (or a title page, in documents that have one)
    title = soup.select_one(".answer") or soup.select_one(".title-page")
    if title is not None:
        title.insert_after(BeautifulSoup(toc, "html.parser"))
        rest = str(soup)
    else:
        rest = toc + str(soup)
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{_CSS}</style></head><body>{rest}</body></html>"


def render_pdf(executed: Path, pdf: Path, base_dir: Path) -> Path:
    """nbconvert (no code cells) -> HTML with a table of contents and page numbers -> WeasyPrint PDF;
    relative image paths resolve against `base_dir`."""
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
    with atomic_file(pdf) as tmp:
        HTML(string=document, base_url=str(base_dir) + "/").write_pdf(str(tmp))
    return pdf


def html_to_pdf(body: str, pdf: Path, base_dir: Path, extra_css: str = "") -> Path:
    """An HTML fragment in the report's style (no title page, no contents) -> PDF, written atomically."""
    from weasyprint import HTML

    head = f"<head><meta charset='utf-8'><style>{_CSS}{extra_css}</style></head>"
    document = f"<!DOCTYPE html><html>{head}<body>{body}</body></html>"
    with atomic_file(pdf) as tmp:
        HTML(string=document, base_url=str(base_dir) + "/").write_pdf(str(tmp))
    return pdf

"""Render every page of a PDF to PNG, to look at them (`python tools/render_pages.py report/whitepaper.pdf`).

Writes <pdf stem>-pages/page-NN.png beside the PDF (or under --out) and prints each page's first
heading-like line, so a reader can check titles, blank pages and overlaps page by page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pypdfium2 as pdfium


def render_pages(pdf: Path, out: Path, scale: float = 1.5) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    doc = pdfium.PdfDocument(str(pdf))
    paths = []
    for i in range(len(doc)):
        path = out / f"page-{i + 1:02d}.png"
        doc[i].render(scale=scale).to_pil().save(path)
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("pdf", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--scale", type=float, default=1.5)
    args = ap.parse_args()
    out = args.out or args.pdf.with_name(f"{args.pdf.stem}-pages")
    doc = pdfium.PdfDocument(str(args.pdf))
    for i, path in enumerate(render_pages(args.pdf, out, args.scale)):
        lines = [ln.strip() for ln in doc[i].get_textpage().get_text_range().splitlines() if ln.strip()]
        print(f"{path}: {lines[0][:90] if lines else '(no text)'}")


if __name__ == "__main__":
    main()

"""Compare the numbers in the text of two whitepaper PDFs, in reading order.

    .venv/bin/python tools/compare_pdf_numbers.py BEFORE.pdf AFTER.pdf [--json OUT.json]

A refactoring that must not change behaviour renders the same stored study before and after;
every number of the text (tok/s, ratios, percentiles, counts, versions, dates) must then be
identical, in the same order. Prints the count of numbers on each side and every difference with
the words around it; exits 1 when any number differs. Text differences that hold no number (a
renamed module in a sentence) are listed too, but do not fail the check.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any

import pypdfium2 as pdfium
import typer

NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?|\.\d+)")


def pdf_words(path: Path) -> list[str]:
    doc = pdfium.PdfDocument(str(path))
    words: list[str] = []
    for page in doc:
        words += page.get_textpage().get_text_range().split()
    return words


def numbers(words: list[str]) -> list[tuple[int, str]]:
    """(word index, number) for every number in the text, in order."""
    return [(i, m.group()) for i, w in enumerate(words) for m in NUMBER.finditer(w)]


def _context(words: list[str], i: int, span: int = 6) -> str:
    return " ".join(words[max(0, i - span) : i + span + 1])


def compare(before: Path, after: Path) -> dict[str, object]:
    wa, wb = pdf_words(before), pdf_words(after)
    na, nb = numbers(wa), numbers(wb)
    sm = difflib.SequenceMatcher(a=[n for _, n in na], b=[n for _, n in nb], autojunk=False)
    number_diffs = []
    for op, a0, a1, b0, b1 in sm.get_opcodes():
        if op == "equal":
            continue
        number_diffs.append(
            {
                "op": op,
                "before": [n for _, n in na[a0:a1]],
                "after": [n for _, n in nb[b0:b1]],
                "before_context": _context(wa, na[a0][0]) if a0 < len(na) else "",
                "after_context": _context(wb, nb[b0][0]) if b0 < len(nb) else "",
            }
        )
    text_diffs = [
        {"before": " ".join(wa[a0:a1]), "after": " ".join(wb[b0:b1])}
        for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes()
        if op != "equal"
    ]
    return {
        "before": str(before),
        "after": str(after),
        "numbers_before": len(na),
        "numbers_after": len(nb),
        "numbers_identical": not number_diffs,
        "number_diffs": number_diffs,
        "words_before": len(wa),
        "words_after": len(wb),
        "text_diffs": text_diffs,
    }


def main(
    before: Annotated[Path, typer.Argument(help="PDF rendered before the change")],
    after: Annotated[Path, typer.Argument(help="PDF rendered after the change")],
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the comparison as JSON")] = None,
) -> None:
    out = compare(before, after)
    number_diffs: list[dict[str, Any]] = out["number_diffs"]  # type: ignore[assignment]
    text_diffs: list[dict[str, str]] = out["text_diffs"]  # type: ignore[assignment]
    verdict = "identical" if out["numbers_identical"] else "DIFFERENT"
    typer.echo(f"numbers: {out['numbers_before']} before, {out['numbers_after']} after; {verdict}")
    for d in number_diffs:
        typer.echo(f"  {d['op']}: {d['before']} -> {d['after']}")
        typer.echo(f"    before: ...{d['before_context']}...")
        typer.echo(f"    after:  ...{d['after_context']}...")
    typer.echo(f"words: {out['words_before']} before, {out['words_after']} after; {len(text_diffs)} text differences")
    for t in text_diffs[:40]:
        typer.echo(f"  {t['before']!r} -> {t['after']!r}")
    if json_out is not None:
        json_out.write_text(json.dumps(out, indent=2))
    raise typer.Exit(0 if out["numbers_identical"] else 1)


if __name__ == "__main__":
    typer.run(main)

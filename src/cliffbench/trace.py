"""Where each number the whitepaper prints comes from: a log the kit's one number formatter fills.

`config.fmt_number` hands every number it formats to `record`. Outside `recording()` that does
nothing; inside, the text is logged with its `Source` (a table, a column, a row), given by the
caller or by the enclosing `source(...)` block (a section: "comparisons", "shape verdicts"). A
value read from a cited file (the seed's published numbers) is recorded as cited. The traced-
numbers test renders the whitepaper inside `recording()`, extracts the PDF's text and asks
`NumberLog.untraced` for any number the formatter did not write. This module imports nothing of
the kit, so the lowest layer (config) can call it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["NumberLog", "Source", "cite_text", "number_tokens", "record", "recording", "source"]


@dataclass(frozen=True)
class Source:
    """Where a printed number was read: `table` (a stored table or file), `column`, `row`."""

    table: str
    column: str = ""
    row: str = ""
    cited: bool = False  # read from a cited file (data/published), not measured here

    def text(self) -> str:
        where = ", ".join(p for p in (self.column, self.row) if p)
        return f"{self.table} ({where})" if where else self.table


_UNNAMED = Source("unnamed")
# numbers as the formatter writes them: 1,450 / 0.25 / 8.32e-04, optionally after an 'x' (a ratio);
# not the digits inside a word (p90, Q8_0, A100, 135M)
_NUMBER = re.compile(r"(?<![\w.])x?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e[-+]\d+)?)(?![\w])")
# what carries digits without being a result: dates, times, versions, page and figure numbers
_NOT_NUMBERS = (
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?)?"),
    re.compile(r"\bv?\d+\.\d+(?:\.\d+)+\b"),  # 0.10.0, 3.11.9
    re.compile(r"\b\d+\.\d+\+"),  # 0.10+
    re.compile(r"\bpage \d+ of \d+"),
    re.compile(r"\b(?:Figure|Table|Appendix|Section) \d+\b"),
)


def number_tokens(text: str) -> list[str]:
    """The numbers in `text` (dates, versions, page and figure numbers removed first)."""
    for pat in _NOT_NUMBERS:
        text = pat.sub(" ", text)
    return [m.group(1) for m in _NUMBER.finditer(text)]


class NumberLog:
    """Every number formatted while recording, with its sources; names holding digits that are
    cited, not computed (a model, a GPU), as texts to remove before reading numbers."""

    def __init__(self) -> None:
        self.sources: dict[str, list[Source]] = {}
        self.cited_texts: set[str] = set()

    def add(self, text: str, src: Source) -> None:
        for token in number_tokens(text) or [text]:
            self.sources.setdefault(token, []).append(src)

    def cite_text(self, texts: Iterable[str]) -> None:
        """Names to ignore when reading numbers (SmolLM2-135M, Llama-3.1-8B, a100-40gb)."""
        self.cited_texts.update(t for t in texts if t)

    def untraced(self, text: str) -> list[str]:
        """The numbers of `text` no formatter call recorded."""
        for name in sorted(self.cited_texts, key=len, reverse=True):
            text = text.replace(name, " ")
        return [t for t in number_tokens(text) if t not in self.sources]


_LOG: ContextVar[NumberLog | None] = ContextVar("number_log", default=None)
_SOURCE: ContextVar[Source] = ContextVar("number_source", default=_UNNAMED)


@contextmanager
def recording() -> Iterator[NumberLog]:
    """Log every number formatted inside the block."""
    log = NumberLog()
    token = _LOG.set(log)
    try:
        yield log
    finally:
        _LOG.reset(token)


@contextmanager
def source(table: str, column: str = "", row: str = "", cited: bool = False) -> Iterator[Source]:
    """The source of numbers formatted inside the block without one of their own."""
    src = Source(table, column, row, cited)
    token = _SOURCE.set(src)
    try:
        yield src
    finally:
        _SOURCE.reset(token)


def record(text: str, src: Source | None = None) -> str:
    """Log `text` (a formatted number) with `src` (else the enclosing `source`) while recording;
    returns `text`."""
    log = _LOG.get()
    if log is not None:
        log.add(text, src or _SOURCE.get())
    return text


def cite_text(*texts: str) -> None:
    """Names holding digits that are cited, not computed (SmolLM2-135M, a100-40gb), while recording."""
    log = _LOG.get()
    if log is not None:
        log.cite_text(texts)

"""How long the body's sentences are: the whitepaper promises its reader short ones (a median
under 22 words, none over 50).

Read from the blocks the document is made of (Markdown and HTML, as `whitepaper_blocks` returns
them and the executed `30_whitepaper` notebook displays them), not from the PDF: text extraction
runs a table's cells into the sentence before it. Tables, headings, figures and captions are not
prose and are left out; a list item is a sentence of its own.
"""

from __future__ import annotations

import html
import json
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProseStats", "body_blocks", "notebook_blocks", "prose_sentences", "prose_stats"]

MEDIAN_WORDS_MAX = 22
SENTENCE_WORDS_MAX = 50

_APPENDICES = 'class="appendices"'
# a sentence ends at . ! or ? and a space (names such as vLLM and llama.cpp start sentences in
# lower case); an abbreviation ("e.g.", "vs.") does not end one
_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_ABBREV = re.compile(r"\b(e\.g|i\.e|vs|cf|approx|Fig|No)\.$")


@dataclass(frozen=True)
class ProseStats:
    n_sentences: int
    median_words: float
    max_words: int
    longest: str

    @property
    def ok(self) -> bool:
        return self.median_words < MEDIAN_WORDS_MAX and self.max_words <= SENTENCE_WORDS_MAX


def notebook_blocks(path: Path) -> list[tuple[str, str]]:
    """(kind, text) of every Markdown and HTML output of an executed notebook, in order."""
    nb = json.loads(path.read_text())
    out: list[tuple[str, str]] = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            for mime, kind in (("text/markdown", "md"), ("text/html", "html")):
                if mime in data:
                    text = data[mime]
                    out.append((kind, "".join(text) if isinstance(text, list) else text))
    return out


def body_blocks(blocks: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The blocks before the appendices open (page 1 and the body)."""
    out = []
    for kind, text in blocks:
        if kind == "html" and _APPENDICES in text:
            break
        out.append((kind, text))
    return out


def _html_prose(text: str) -> list[str]:
    """The paragraphs and list items of an HTML block, without its tables, figures and headings."""
    text = re.sub(r"(?is)<(table|figure|figcaption|h[1-6]|style|script|svg)\b.*?</\1>", " ", text)
    parts = re.split(r"(?i)</?(?:p|li|div|br)\b[^>]*>", text)
    return [html.unescape(re.sub(r"<[^>]+>", " ", p)) for p in parts]


def _md_prose(text: str) -> list[str]:
    """The paragraphs and list items of a Markdown block, without tables, headings, figures."""
    if text.lstrip().startswith("<"):
        return _html_prose(text)
    paras: list[str] = []
    current: list[str] = []
    for line in [*text.splitlines(), ""]:
        s = line.strip()
        item = re.match(r"^([-*+]|\d+\.)\s+", s)
        if not s or s.startswith(("|", "#", "<", "!", ">")) or item:
            if current:
                paras.append(" ".join(current))
            current = [s[item.end() :]] if item else []
            continue
        current.append(s)
    return paras


def _clean(para: str) -> str:
    para = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", para)  # a link reads as its text
    para = re.sub(r"[*_`]", "", para)
    return " ".join(para.split())


def prose_sentences(blocks: Iterable[tuple[str, str]]) -> list[str]:
    """The sentences of the blocks' prose, in order."""
    sentences: list[str] = []
    for kind, text in blocks:
        for para in map(_clean, _html_prose(text) if kind == "html" else _md_prose(text)):
            pending = ""
            for piece in _END.split(para):
                pending = f"{pending} {piece}".strip()
                if not _ABBREV.search(pending):
                    sentences.append(pending)
                    pending = ""
            if pending:
                sentences.append(pending)
    # a fragment of one or two words is a label or a caption's remnant, not a sentence
    return [s for s in sentences if len(s.split()) > 2]


def prose_stats(blocks: Iterable[tuple[str, str]]) -> ProseStats:
    sentences = prose_sentences(blocks)
    words = [len(s.split()) for s in sentences]
    if not words:
        return ProseStats(0, 0.0, 0, "")
    longest = max(sentences, key=lambda s: len(s.split()))
    return ProseStats(len(words), float(statistics.median(words)), max(words), longest)

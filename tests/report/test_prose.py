"""Sentence lengths of the whitepaper's prose: tables, headings and figures are not prose."""

from __future__ import annotations

from cliffbench.report.prose import body_blocks, prose_sentences, prose_stats

BLOCKS = [
    (
        "html",
        '<div class="answer"><h1>Title words here now</h1><p>Page one says this. It ends.</p>'
        "<table><tr><td>a cell with many words in it</td></tr></table></div>",
    ),
    (
        "md",
        "## A heading of words\n\nvLLM serves 32 users, e.g. a team. llama.cpp serves 26 users.\n\n"
        "| a | table row with words |\n|---|---|\n\n- a list item of its own\n- another item of its own",
    ),
    ("html", '<h1 class="appendices">Appendices</h1>'),
    ("md", "An appendix sentence that is not counted in the body."),
]


def test_sentences_of_the_body_only() -> None:
    sentences = prose_sentences(body_blocks(BLOCKS))
    assert sentences == [
        "Page one says this.",
        "vLLM serves 32 users, e.g. a team.",  # an abbreviation ends no sentence
        "llama.cpp serves 26 users.",  # a sentence may start in lower case
        "a list item of its own",
        "another item of its own",
    ]


def test_stats() -> None:
    stats = prose_stats(body_blocks(BLOCKS))
    assert (stats.n_sentences, stats.max_words, stats.median_words) == (5, 7, 5.0)
    assert stats.longest == "vLLM serves 32 users, e.g. a team." and stats.ok

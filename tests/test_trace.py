"""The number log: what counts as a number in the text, and what the formatter records."""

from __future__ import annotations

from cliffbench.config import fmt_number
from cliffbench.trace import Source, cite_text, number_tokens, record, recording, source


def test_numbers_in_text_skip_words_dates_versions_and_pages() -> None:
    text = (
        "x1.06 at 32 users, 1,450 tok/s, 8.32e-04 s; p90, Q8_0, A100, SmolLM2-135M; measured 2026-12-06, "
        "vllm 0.10.0, Ollama 0.10+; page 3 of 14; Figure 2. (1-32 users)"
    )
    assert number_tokens(text) == ["1.06", "32", "1,450", "8.32e-04", "1", "32"]


def test_the_formatter_logs_what_it_writes_only_while_recording() -> None:
    fmt_number(123.456)  # outside recording: nothing to log into, nothing raised
    with recording() as log:
        with source("levels", "output_tok_s"):
            a = fmt_number(123.456)
        b = fmt_number(0.25, src=Source("study", "slo"))
        record("25-32", Source("claims.csv", "concurrency", cited=True))
    assert (a, b) == ("123", "0.25")
    assert log.sources["123"] == [Source("levels", "output_tok_s")]
    assert log.sources["0.25"][0].text() == "study (slo)"
    assert log.sources["32"][0].cited
    # a number nobody formatted is found; so is one the text rounds differently from the formatter
    assert log.untraced("123 tok/s at 25 users, TPOT 0.25 s, 124 tok/s") == ["124"]


def test_cited_names_are_not_read_as_numbers() -> None:
    with recording() as log:
        cite_text("Test CPU 9000", "")
    assert log.untraced("on Test CPU 9000 with 3 cores") == ["3"]

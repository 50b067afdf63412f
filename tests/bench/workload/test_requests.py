"""Workload generation: exact token lengths, seeded reproducibility, mixed and prefix shapes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from cliffbench.bench.spec.workload import LengthDist, WorkloadSpec
from cliffbench.bench.workload.requests import (
    LONG_PROMPT_MARGIN_TOKENS,
    WorkloadSummary,
    build_requests,
    corpus_token_ids,
    load_corpus,
    sample_lengths,
)
from cliffbench.models.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    return CharTokenizer()


def _spec(**kw: object) -> WorkloadSpec:
    return WorkloadSpec.model_validate(kw)


def test_corpus_is_sizeable_english_text() -> None:
    text = load_corpus()
    words = len(text.split())
    assert 6_000 <= words <= 10_000
    assert "Four score and seven years ago" in text
    assert "It is a truth universally acknowledged" in text
    # Name order: aesop_fables.txt sorts first.
    assert text.startswith("Fables of Aesop")


def test_sample_lengths_fixed_and_uniform() -> None:
    rng = np.random.default_rng(0)
    assert sample_lengths(LengthDist(dist="fixed", mean=7), 5, rng).tolist() == [7] * 5
    assert sample_lengths(LengthDist(mean=7), 0, rng).size == 0
    u = sample_lengths(LengthDist(dist="uniform", mean=10, low=3), 4000, rng)
    assert u.min() == 3 and u.max() == 20  # high defaults to 2*mean, both ends inclusive
    u2 = sample_lengths(LengthDist(dist="uniform", mean=10, low=5, high=6), 200, rng)
    assert set(u2.tolist()) == {5, 6}
    with pytest.raises(ValueError):
        sample_lengths(LengthDist(), -1, rng)


def test_lognormal_median_near_mean_and_clipped() -> None:
    rng = np.random.default_rng(1)
    x = sample_lengths(LengthDist(dist="lognormal", mean=200, sigma=0.8), 20_000, rng)
    assert abs(np.median(x) - 200) / 200 < 0.03
    assert x.min() >= 1 and x.max() <= 8 * 200
    assert (x == 8 * 200).any()  # sigma 0.8 reaches the default clip: the clip is really applied
    y = sample_lengths(LengthDist(dist="lognormal", mean=50, low=40, high=60, sigma=1.0), 2000, rng)
    assert y.min() == 40 and y.max() == 60
    assert np.issubdtype(y.dtype, np.integer)


def test_prompts_have_exact_lengths_and_are_corpus_windows(tok: CharTokenizer) -> None:
    spec = _spec(kind="uniform", prompt={"dist": "uniform", "mean": 40, "low": 5}, output={"mean": 9})
    reqs = build_requests(spec, 50, tok, start_id=100)
    corpus = load_corpus()
    wrapped = corpus + corpus
    assert len(reqs) == 50
    assert [r.request_id for r in reqs] == list(range(100, 150))
    assert len({r.prompt_tokens for r in reqs}) > 10  # lengths really vary
    assert min(r.prompt_tokens for r in reqs) >= 5 and max(r.prompt_tokens for r in reqs) <= 80
    for r in reqs:
        assert r.max_tokens == 9
        assert r.prompt_text == tok.decode(r.prompt_token_ids)
        assert r.prompt_text in wrapped  # consecutive text, wrapping past the end at most once


def test_window_wraps_past_corpus_end(tok: CharTokenizer) -> None:
    n_tok = corpus_token_ids(tok).size
    spec = _spec(prompt={"mean": n_tok + 10}, output={"mean": 1})
    (req,) = build_requests(spec, 1, tok)
    assert req.prompt_tokens == n_tok + 10


def test_same_seed_same_requests_different_seed_differs(tok: CharTokenizer) -> None:
    spec = _spec(kind="lognormal", prompt={"dist": "lognormal", "mean": 30}, seed=7)
    a = build_requests(spec, 20, tok)
    b = build_requests(spec, 20, tok)
    c = build_requests(spec.model_copy(update={"seed": 8}), 20, tok)
    assert a == b
    assert [r.prompt_token_ids for r in a] != [r.prompt_token_ids for r in c]


def test_output_distribution_does_not_move_prompts(tok: CharTokenizer) -> None:
    spec = _spec(prompt={"dist": "uniform", "mean": 30}, output={"mean": 10}, seed=3)
    other = spec.model_copy(update={"output": LengthDist(dist="uniform", mean=50)})
    a, b = build_requests(spec, 15, tok), build_requests(other, 15, tok)
    assert [r.prompt_token_ids for r in a] == [r.prompt_token_ids for r in b]
    assert [r.max_tokens for r in a] != [r.max_tokens for r in b]


@pytest.mark.parametrize(("n", "frac"), [(40, 0.25), (33, 0.1), (7, 0.5)])
def test_mixed_has_exact_long_share(tok: CharTokenizer, n: int, frac: float) -> None:
    spec = _spec(kind="mixed", prompt={"mean": 20}, long_fraction=frac, long_prompt_tokens=500, seed=2)
    reqs = build_requests(spec, n, tok)
    lens = [r.prompt_tokens for r in reqs]
    assert lens.count(500) == round(n * frac)
    assert lens.count(20) == n - round(n * frac)
    # Long positions come from the seed, not a fixed pattern such as the first k requests.
    other = build_requests(spec.model_copy(update={"seed": 5}), n, tok)
    assert [r.prompt_tokens for r in other] != lens


def test_mixed_default_long_length_from_max_context(tok: CharTokenizer) -> None:
    spec = _spec(kind="mixed", output={"dist": "uniform", "mean": 30}, long_fraction=0.2)
    reqs = build_requests(spec, 30, tok, max_context=1000)
    max_out = max(r.max_tokens for r in reqs)
    long_len = 1000 - max_out - LONG_PROMPT_MARGIN_TOKENS
    assert sum(r.prompt_tokens == long_len for r in reqs) == 6
    assert all(r.prompt_tokens + r.max_tokens <= 1000 for r in reqs)
    with pytest.raises(ValueError, match="max_context"):
        build_requests(spec, 30, tok)


def test_long_fraction_needs_mixed(tok: CharTokenizer) -> None:
    with pytest.raises(ValueError, match="long_fraction"):
        build_requests(_spec(kind="fixed", long_fraction=0.1), 10, tok)


def test_shared_prefix_is_identical_and_keeps_lengths(tok: CharTokenizer) -> None:
    spec = _spec(prompt={"dist": "uniform", "mean": 60, "low": 40}, system_prefix_tokens=32, seed=4)
    reqs = build_requests(spec, 25, tok)
    stream = corpus_token_ids(tok)
    prefix = tuple(stream[:32].tolist())
    plain = build_requests(spec.model_copy(update={"system_prefix_tokens": 0}), 25, tok)
    for r, p in zip(reqs, plain, strict=True):
        assert r.prompt_token_ids[:32] == prefix
        assert r.prompt_tokens == p.prompt_tokens
    assert len({r.prompt_token_ids[32:] for r in reqs}) == 25  # the rest differs per request


def test_prefix_not_shorter_than_prompt_raises(tok: CharTokenizer) -> None:
    spec = _spec(prompt={"mean": 16}, system_prefix_tokens=16)
    with pytest.raises(ValueError, match="system_prefix_tokens"):
        build_requests(spec, 3, tok)


def test_over_long_request_raises(tok: CharTokenizer) -> None:
    spec = _spec(prompt={"mean": 100}, output={"mean": 50})
    assert len(build_requests(spec, 3, tok, max_context=150)) == 3
    with pytest.raises(ValueError, match=r"workload: .*max_context 149.*100 prompt \+ 50 output"):
        build_requests(spec, 3, tok, max_context=149)


def test_zero_requests(tok: CharTokenizer) -> None:
    assert build_requests(_spec(), 0, tok) == []
    assert WorkloadSummary.of([]).n_requests == 0


def test_summary_counts_tokens(tok: CharTokenizer) -> None:
    reqs = build_requests(_spec(prompt={"mean": 10}, output={"mean": 4}), 5, tok)
    s = WorkloadSummary.of(reqs)
    assert (s.n_requests, s.prompt_tokens_max, s.output_tokens_max, s.total_tokens) == (5, 10, 4, 70)


def test_real_bpe_tokenizer_exact_lengths() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]"], show_progress=False)
    bpe.train_from_iterator([load_corpus()], trainer=trainer)

    class Adapter:
        def encode(self, text: str) -> list[int]:
            return list(bpe.encode(text).ids)

        def decode(self, ids: Sequence[int]) -> str:
            return str(bpe.decode(list(ids)))

    adapter = Adapter()
    spec = _spec(kind="lognormal", prompt={"dist": "lognormal", "mean": 64}, system_prefix_tokens=8)
    reqs = build_requests(spec, 20, adapter, max_context=4096)
    corpus = load_corpus()
    stream = corpus_token_ids(adapter)
    assert stream.size < len(corpus)  # merges happened: tokens are not characters
    for r in reqs:
        assert r.prompt_tokens >= 9
        assert set(r.prompt_token_ids) <= set(stream.tolist())
        assert len(r.prompt_text.split()) > 0
    assert len({r.prompt_tokens for r in reqs}) > 5

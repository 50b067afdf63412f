"""Workloads with KV reuse: theoretical hit rates against hand counts, seeding, shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cliffbench.bench.spec.workload import RagSpec, SessionsSpec, SharedPrefixSpec, WorkloadSpec
from cliffbench.bench.workload.requests import build_requests, corpus_token_ids
from cliffbench.bench.workload.reuse import (
    build_sessions,
    prefix_hit_tokens,
    theoretical_hit_rate,
    zipf_weights,
)
from cliffbench.cli import app
from cliffbench.engines.base import GenRequest
from cliffbench.models.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    return CharTokenizer()


def _req(i: int, ids: tuple[int, ...]) -> GenRequest:
    return GenRequest(i, ids, 4)


def test_prefix_hits_match_a_hand_count() -> None:
    reqs = [
        _req(0, (1, 2, 3, 4)),  # nothing before it: 0
        _req(1, (1, 2, 3, 9, 9)),  # shares 1 2 3 with request 0: 3
        _req(2, (1, 2, 3, 9, 7)),  # shares 1 2 3 9 with request 1: 4
        _req(3, (5, 1, 2)),  # starts with a token no one began with: 0
        _req(4, (1, 2, 3, 4)),  # the whole of request 0: 4
    ]
    assert prefix_hit_tokens(reqs) == [0, 3, 4, 0, 4]
    assert theoretical_hit_rate(reqs) == pytest.approx(11 / 21)  # 4 + 5 + 5 + 3 + 4 prompt tokens
    assert theoretical_hit_rate([]) != theoretical_hit_rate([])  # NaN: no prompt tokens


def test_shared_prefix_hit_rate_equals_the_count_of_repeated_prefixes(tok: CharTokenizer) -> None:
    sp = SharedPrefixSpec(prompts=3, prefix_tokens=40, zipf_s=1.0)
    spec = WorkloadSpec(kind="shared_prefix", shared_prefix=sp, prompt={"mean": 10}, output={"mean": 4}, seed=3)
    reqs = build_requests(spec, 50, tok)
    assert all(r.prompt_tokens == 50 for r in reqs)
    prefixes = [r.prompt_token_ids[:40] for r in reqs]
    # by hand: every request whose system prompt was already sent reuses its 40 tokens (the questions
    # are random corpus windows, so a hit never reaches into them but for the chance of a matching
    # first character: counted below from the list itself)
    seen: set[tuple[int, ...]] = set()
    hand = 0
    for i, r in enumerate(reqs):
        if prefixes[i] in seen:
            extra = max(
                (
                    _common(r.prompt_token_ids[40:], q.prompt_token_ids[40:])
                    for q in reqs[:i]
                    if q.prompt_token_ids[:40] == prefixes[i]
                ),
                default=0,
            )
            hand += 40 + extra
        seen.add(prefixes[i])
    assert 1 < len(seen) <= 3
    assert theoretical_hit_rate(reqs) == pytest.approx(hand / (50 * 50))
    assert build_requests(spec, 50, tok) == reqs  # seeded


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def test_zipf_weights_rank_popularity() -> None:
    w = zipf_weights(4, 1.0)
    assert w.sum() == pytest.approx(1.0)
    assert w[0] / w[1] == pytest.approx(2.0) and w[0] / w[3] == pytest.approx(4.0)
    assert zipf_weights(3, 0.0).tolist() == pytest.approx([1 / 3] * 3)


def test_rag_requests_are_k_pool_documents_and_a_question(tok: CharTokenizer) -> None:
    rg = RagSpec(documents=5, doc_tokens=30, k=2)
    spec = WorkloadSpec(kind="rag", rag=rg, prompt={"mean": 8}, output={"mean": 4})
    reqs = build_requests(spec, 40, tok)
    stream = corpus_token_ids(tok)
    pool = {tuple(stream[d * stream.size // 5 : d * stream.size // 5 + 30].tolist()) for d in range(5)}
    for r in reqs:
        assert r.prompt_tokens == 2 * 30 + 8
        docs = {r.prompt_token_ids[:30], r.prompt_token_ids[30:60]}
        assert len(docs) == 2 and docs <= pool
    assert 0.3 < theoretical_hit_rate(reqs) < 60 / 68 + 0.01  # at most the documents, plus chance


def test_rag_pools_at_other_offsets_share_no_document(tok: CharTokenizer) -> None:
    def spec(offset: int) -> WorkloadSpec:
        rg = RagSpec(documents=6, doc_tokens=30, k=2, offset_tokens=offset)
        return WorkloadSpec(kind="rag", rag=rg, prompt={"mean": 8}, output={"mean": 4})

    a, b = build_requests(spec(0), 30, tok), build_requests(spec(997), 30, tok)
    assert a == build_requests(WorkloadSpec(kind="rag", rag=RagSpec(documents=6, doc_tokens=30, k=2),
                                            prompt={"mean": 8}, output={"mean": 4}), 30, tok)  # fmt: skip
    docs_a = {r.prompt_token_ids[i : i + 30] for r in a for i in (0, 30)}
    docs_b = {r.prompt_token_ids[i : i + 30] for r in b for i in (0, 30)}
    assert docs_a.isdisjoint(docs_b)
    # the cold pool, warmed only by its own requests: the same possible hit rate up to chance
    assert abs(theoretical_hit_rate(a) - theoretical_hit_rate(b)) < 0.15
    assert theoretical_hit_rate(a + b) < theoretical_hit_rate(a) + 0.15


def test_session_plan_history_is_the_previous_prompt_and_answer(tok: CharTokenizer) -> None:
    ss = SessionsSpec(turns={"dist": "fixed", "mean": 3}, user={"mean": 5}, think_s=0.5)
    spec = WorkloadSpec(kind="sessions", sessions=ss, prompt={"mean": 10}, output={"mean": 4})
    plan = build_sessions(spec, 7, tok, corpus_token_ids(tok), max_context=None, start_id=0)
    # a budget of 7 turns; whole sessions planned to 3 x 7 = 21 turns
    assert plan.budget == 7 and [len(s) for s in plan.sessions] == [3] * 7
    # turn lengths by hand: 10; 10 + 4 + 5 = 19; 19 + 4 + 5 = 28
    assert [r.prompt_tokens for r in plan.requests] == [10, 19, 28] * 7
    assert [t.history_tokens for s in plan.sessions for t in s] == [0, 14, 23] * 7
    assert plan.hit_rate() == pytest.approx((14 + 23) / 57)
    assert theoretical_hit_rate(plan.requests, plan) == plan.hit_rate()
    # over the turns sent, at their lengths as sent: two whole sessions and a first turn, answers
    # of 6 tokens instead of the 4 planned (turn 2: 10 + 6 + 5 = 21, history 16)
    sent = {0: 10, 1: 21, 2: 32, 3: 10, 4: 21, 5: 32, 6: 10}
    assert plan.hit_rate(sent) == pytest.approx((16 + 27) * 2 / (63 * 2 + 10))
    think = plan.think_s
    assert think[0] == 0 and think[3] == 0 and all(think[i] > 0 for i in (1, 2, 4, 5))
    # the planned turn holds the previous turn's prompt as its prefix (answers are stand-ins)
    assert plan.requests[1].prompt_token_ids[:10] == plan.requests[0].prompt_token_ids
    assert build_requests(spec, 7, tok) == plan.requests[:7]  # the list the level counts


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"kind": "fixed", "sessions": {}}, "a 'sessions' block needs kind 'sessions'"),
        ({"kind": "rag", "rag": {"documents": 2, "k": 3}}, r"rag: k \(3\) must be <= documents \(2\)"),
        ({"kind": "sessions", "sessions": {"think_s": -1}}, "greater than or equal to 0"),
        ({"kind": "sessions", "system_prefix_tokens": 4}, "does not combine with kind 'sessions'"),
    ],
)
def test_bad_reuse_parameters(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        WorkloadSpec.model_validate(data)


def test_context_is_checked(tok: CharTokenizer) -> None:
    spec = WorkloadSpec(kind="sessions", sessions=SessionsSpec(turns={"mean": 4}), prompt={"mean": 20})
    with pytest.raises(ValueError, match="exceeds max_context 100"):
        build_requests(spec, 8, tok, max_context=100)


@pytest.mark.parametrize(
    ("workload", "load", "needle"),
    [
        ("{kind: sessions, sessions: {turns: {mean: 0}}}", "{}", "sessions.turns.mean"),
        ("{kind: sessions, sessions: {thinks: 1}}", "{}", "sessions.thinks"),
        ("{kind: sessions}", "{arrival: poisson, rate_rps: [1]}", "needs load.arrival 'closed'"),
        ("{kind: fixed, rag: {}}", "{}", "a 'rag' block needs kind 'rag'"),
    ],
)
def test_bad_session_parameters_exit_2_with_one_line(tmp_path: Path, workload: str, load: str, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        "name: bad\ntokenizer: fake\nengines:\n  - kind: fake\n"
        f"level_sets:\n  - workload: {workload}\n    load: {load}\n"
    )
    result = CliRunner().invoke(app, ["run", str(p), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output

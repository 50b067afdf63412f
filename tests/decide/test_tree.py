"""Decision tree on hand-built stores: levels and their requests, three repeats each.

SLO: TTFT p90 <= 1 s and TPOT p50 <= 0.2 s. A level "fast" serves 12 requests per repeat with TTFT
0.1-0.3 s (pooled n = 36: the 95 % interval of p90 exists from n = 29, and its upper end is well
under 1 s); a level "slow" has TTFT 3-4 s (its interval lies above 1 s). Throughput is given per
engine and users.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from cliffbench.bench.metrics.repeats import SloJudge, paired_ratio, pool_repeats
from cliffbench.decide.at_load import engine_at_load
from cliffbench.decide.tree import (
    CRITERION,
    DecisionNode,
    Leaf,
    UserProfile,
    build_tree,
    engine_cliff_details,
    interpolate,
    recommend,
    select_levels,
)
from cliffbench.report.tree_text import render_tree_text

USERS = [1, 2, 4, 8]
JUDGE = SloJudge({"ttft_s": 1.0, "tpot_s": 0.2}, {"ttft_s": 90.0, "tpot_s": 50.0})
FAST = np.linspace(0.1, 0.3, 12)
FASTEST = np.linspace(0.05, 0.15, 12)
SLOW = np.linspace(3.0, 4.0, 12)


def _store(
    shapes: dict[str, dict[int, str]],
    tok_s: dict[str, list[float]],
    *,
    level_set: str = "chat",
    repeats: int = 3,
    n: int = 12,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`shapes[engine][users]`: 'fast', 'fastest' (TTFT 0.05-0.15 s), 'slow', 'failed' (the level run failed outright),
    'half-rejected' (fast, but every other request rejected) or 'straddle' (TTFT 0.3-1.1 s)."""
    levels, requests = [], []
    for engine, by_users in shapes.items():
        for i, (users, shape) in enumerate(sorted(by_users.items())):
            for rep in range(repeats):
                key = f"{engine}__{level_set}__c{users:04d}" + (f"-rep{rep + 1}" if rep else "")
                ttft = {
                    "fast": FAST,
                    "fastest": FASTEST,
                    "slow": SLOW,
                    "half-rejected": FAST,
                    "straddle": np.linspace(0.3, 1.1, 12),
                }
                status = "failed" if shape == "failed" else "ok"
                levels.append(
                    {
                        "engine": engine,
                        "level_set": level_set,
                        "concurrency": users,
                        "rate_rps": np.nan,
                        "repeat": rep,
                        "status": status,
                        "level_key": key,
                        "output_tok_s": tok_s[engine][i] * (1 + 0.05 * rep) if status == "ok" else np.nan,
                        "ttft_s_p50": 0.2,
                        "tpot_s_p50": 0.05,
                        "busy_flagged": False,
                    }
                )
                if shape == "failed":
                    continue
                vals = np.resize(ttft[shape], n)
                st = ["rejected" if shape == "half-rejected" and k % 2 else "ok" for k in range(n)]
                requests.append(
                    pd.DataFrame(
                        {
                            "level_key": key,
                            "warmup": False,
                            "status": st,
                            "ttft_s": np.where(np.array(st) == "ok", vals, np.nan),
                            "tpot_s": np.where(np.array(st) == "ok", 0.05, np.nan),
                            "e2e_s": vals + 3.0,
                        }
                    )
                )
    return pd.DataFrame(levels), pd.concat(requests, ignore_index=True)


def _pooled(
    shapes: dict[str, dict[int, str]],
    tok_s: dict[str, list[float]],
    *,
    level_set: str = "chat",
    repeats: int = 3,
    n: int = 12,
) -> pd.DataFrame:
    levels, requests = _store(shapes, tok_s, level_set=level_set, repeats=repeats, n=n)
    return pool_repeats(levels, requests, JUDGE)


CHAT_SHAPES = {
    "vllm": {1: "fast", 2: "fast", 4: "fast", 8: "slow"},
    "llamacpp-serial": {1: "fast", 2: "slow", 4: "slow", 8: "slow"},
}
CHAT_TOK = {"vllm": [20.0, 40.0, 80.0, 120.0], "llamacpp-serial": [50.0, 50.0, 50.0, 50.0]}


def test_pool_repeats_medians_ranges_and_verdicts() -> None:
    pooled = _pooled(CHAT_SHAPES, CHAT_TOK)
    row = pooled[(pooled.engine == "vllm") & (pooled.concurrency == 4)].iloc[0]
    assert row.repeats == 3 and row.ok_repeats == 3
    assert row.output_tok_s == pytest.approx(80.0 * 1.05)  # median of 80, 84, 88
    assert (row.output_tok_s_min, row.output_tok_s_max) == pytest.approx((80.0, 88.0))
    assert row.n_submitted == 36 and row.slo_verdict == "meets"
    assert row.slo_ttft_s_lo <= row.slo_ttft_s <= row.slo_ttft_s_hi <= 0.3
    assert row.slo_ttft_s_level >= 0.95
    slow = pooled[(pooled.engine == "vllm") & (pooled.concurrency == 8)].iloc[0]
    assert slow.slo_verdict == "misses" and slow.slo_ttft_s_lo > 1.0


def test_cliff_is_a_bracket_of_measured_levels() -> None:
    cliffs = engine_cliff_details(_pooled(CHAT_SHAPES, CHAT_TOK))
    v = cliffs["vllm"]
    assert (v.meets_up_to, v.first_miss, v.at_least) == (4.0, 8.0, False)
    assert v.text() == "between 4 and 8 users"
    s = cliffs["llamacpp-serial"]
    assert (s.meets_up_to, s.first_miss) == (1.0, 2.0)


def test_at_least_when_no_level_missed() -> None:
    shapes = {"vllm": dict.fromkeys(USERS, "fast")}
    c = engine_cliff_details(_pooled(shapes, {"vllm": CHAT_TOK["vllm"]}))["vllm"]
    assert c.at_least and c.meets_up_to == 8.0
    assert c.text() == "at least 8 users (no measured level missed)"


def test_top_level_failing_outright_is_a_miss() -> None:
    shapes = {"vllm": {1: "fast", 2: "fast", 4: "fast", 8: "failed"}}
    pooled = _pooled(shapes, {"vllm": CHAT_TOK["vllm"]})
    top = pooled[pooled.concurrency == 8].iloc[0]
    assert top.status == "failed" and top.failed_repeats == 3 and top.slo_verdict == "misses"
    c = engine_cliff_details(pooled)["vllm"]
    assert (c.meets_up_to, c.first_miss, c.at_least) == (4.0, 8.0, False)
    rec = recommend(pooled, UserProfile(peak_users=8, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
    assert rec.engine is None and not rec.meets_slo
    assert any("3 repeat(s) failed outright" in e for e in rec.evidence)


def test_middle_level_failing_outright_ends_the_cliff_there() -> None:
    shapes = {"vllm": {1: "fast", 2: "failed", 4: "fast", 8: "fast"}}
    c = engine_cliff_details(_pooled(shapes, {"vllm": CHAT_TOK["vllm"]}))["vllm"]
    assert (c.meets_up_to, c.first_miss) == (1.0, 2.0)


def test_rejecting_half_the_requests_misses() -> None:
    shapes = {"vllm": {1: "fast", 2: "fast", 4: "half-rejected", 8: "fast"}}
    pooled = _pooled(shapes, {"vllm": CHAT_TOK["vllm"]})
    row = pooled[pooled.concurrency == 4].iloc[0]
    # the latencies of the requests it served are fast; the rejected ones count as misses
    assert row.n_missed_requests == 18 and math.isinf(row.slo_ttft_s)
    assert row.slo_verdict == "misses"
    assert engine_cliff_details(pooled)["vllm"].first_miss == 4.0


def test_straddling_interval_is_uncertain_not_a_pass() -> None:
    shapes = {"vllm": {1: "fast", 2: "straddle"}}
    pooled = _pooled(shapes, {"vllm": [10.0, 20.0]})
    row = pooled[pooled.concurrency == 2].iloc[0]
    assert row.slo_ttft_s_lo <= 1.0 < row.slo_ttft_s_hi and row.slo_verdict == "uncertain"
    c = engine_cliff_details(pooled)["vllm"]
    assert (c.meets_up_to, c.first_miss, c.first_miss_verdict) == (1.0, 2.0, "uncertain")
    assert "straddles" in c.text()
    lowest = engine_cliff_details(_pooled({"v": {1: "straddle"}}, {"v": [1.0]}))["v"]
    assert lowest.text().startswith("not shown to meet it even at its lowest measured level (1 user)")
    rec = recommend(pooled, UserProfile(peak_users=2, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
    assert rec.engine is None and "no engine is shown to meet" in rec.verdict


def test_too_few_requests_for_an_interval_is_uncertain() -> None:
    # 2 repeats x 5 requests = 10 < 29, the fewest with a 95 % interval of p90
    pooled = _pooled({"vllm": {1: "fast"}}, {"vllm": [10.0]}, repeats=2, n=5)
    row = pooled.iloc[0]
    assert math.isnan(row.slo_ttft_s_lo) and row.slo_ttft_s_verdict == "uncertain"
    assert row.slo_verdict == "uncertain"


def test_recommend_between_measured_levels_is_judged_above() -> None:
    pooled = _pooled(CHAT_SHAPES, CHAT_TOK)
    rec = recommend(pooled, UserProfile(peak_users=3, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
    assert rec.engine == "vllm" and rec.judged_at == 4.0 and not rec.measured
    assert any("3 users lies between measured levels 2 and 4: judged at 4" in e for e in rec.evidence)
    assert "judged at its measured 4 users" in rec.verdict
    exact = recommend(pooled, UserProfile(peak_users=4, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
    assert exact.measured and exact.judged_at == 4.0
    # above the highest level every engine already missed at a lower load: monotone, not unmeasured
    above = recommend(pooled, UserProfile(peak_users=9, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
    assert above.engine is None and above.kind == "misses" and "no engine meets" in above.verdict
    assert any(e.startswith("vllm at 8 users") and "misses at 8 users already" in e for e in above.evidence)
    alone = _pooled({"vllm": dict.fromkeys(USERS, "fast")}, {"vllm": CHAT_TOK["vllm"]})
    beyond = recommend(alone, UserProfile(peak_users=9, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
    assert beyond.engine is None and beyond.kind == "unmeasured" and "unmeasured" in beyond.verdict


def test_recommend_picks_highest_median_throughput_among_meeting() -> None:
    shapes = {"a": dict.fromkeys(USERS, "fast"), "b": dict.fromkeys(USERS, "fast")}
    pooled = _pooled(shapes, {"a": [10.0, 20, 30, 40], "b": [15.0, 25, 35, 35]})
    assert recommend(pooled, UserProfile(peak_users=4, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE).engine == "b"
    assert recommend(pooled, UserProfile(peak_users=8, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE).engine == "a"


def test_tree_splits_where_the_answer_changes_and_merges_equal_leaves() -> None:
    tree = build_tree(_pooled(CHAT_SHAPES, CHAT_TOK), JUDGE)
    labels = [label for label, _ in tree.root.branches]
    # at 1 user llamacpp-serial is faster (50 vs 20 tok/s) but at its cliff (it misses at 2), while
    # vllm meets the SLO at 4x the users: headroom first. From 5 users on both miss (vllm at 8,
    # llamacpp-serial from 2): one branch, above the highest level too (monotone verdicts)
    assert labels == ["<= 4 users", "> 4 users"]
    leaves = [leaf for _, leaf in tree.root.branches]
    assert all(isinstance(leaf, Leaf) for leaf in leaves)
    assert [leaf.engine for leaf in leaves if isinstance(leaf, Leaf)] == ["vllm", None]
    assert isinstance(leaves[1], Leaf) and "no engine meets" in leaves[1].verdict and "at 5 users" in leaves[1].verdict
    assert tree.criterion == CRITERION and "headroom" in render_tree_text(tree)
    assert tree.thresholds == {"llamacpp-serial": 1.0, "vllm": 4.0}
    assert tree.slo_text == "TTFT p90 <= 1 s and TPOT p50 <= 0.2 s"
    one = build_tree(_pooled({"a": dict.fromkeys(USERS, "fast")}, {"a": [1.0, 2, 3, 4]}), JUDGE)
    assert [label for label, _ in one.root.branches] == ["<= 8 users", "> 8 users"]


# issue 27's default study: llamacpp-f32-32 on the grid and probed by the cliff search at 19 and 20
# users (meets at 19 with 159 tok/s, misses from 20 on); vllm measured at 16 and 32 only, meeting
# at both with 272 and 328 tok/s and a lower TTFT
DEFAULT_SHAPES = {
    "llamacpp-f32-32": {1: "fast", 2: "fast", 4: "fast", 8: "fast", 16: "fast", 19: "fast", 20: "slow", 32: "slow"},
    "vllm": {16: "fastest", 32: "fastest"},
}
DEFAULT_TOK = {"llamacpp-f32-32": [25.0, 45.0, 80.0, 125.0, 150.0, 159.0, 160.0, 170.0], "vllm": [272.0, 328.0]}


def _leaf_at(node: DecisionNode, users: int) -> Leaf:
    """The leaf of the users question whose branch label covers `users`."""
    for label, leaf in node.branches:
        assert isinstance(leaf, Leaf)
        bounds = [int(t) for t in re.findall(r"\d+", label)]
        if label.startswith("<="):
            hit = users <= bounds[0]
        elif label.startswith(">"):
            hit = users > bounds[0]
        else:
            hit = bounds[0] <= users <= bounds[-1]
        if hit:
            return leaf
    raise AssertionError(f"no branch covers {users} users: {[label for label, _ in node.branches]}")


def test_default_study_shape_recommends_the_engine_meeting_at_both_neighbours() -> None:
    pooled = _pooled(DEFAULT_SHAPES, DEFAULT_TOK)
    for users in range(8, 20):
        rec = recommend(pooled, UserProfile(peak_users=users, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
        assert rec.engine == "vllm", (users, rec.verdict)
    at19 = recommend(pooled, UserProfile(peak_users=19, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
    # both read at 19 users: vllm between its 16 and 32 users (meeting at 32 implies meeting at 19)
    assert at19.judged_at == 32.0 and not at19.measured
    assert "interpolated between its 16 and 32 users" in at19.verdict
    probe = next(e for e in at19.evidence if e.startswith("llamacpp-f32-32 at 19 users"))
    assert "meets it up to 19 users (1x the users)" in probe
    tree = build_tree(pooled, JUDGE)
    assert all(_leaf_at(tree.root, users).engine == "vllm" for users in range(8, 20))
    # below 6 users llamacpp-f32-32, measured there, is faster than vllm's 16-user rate scaled down
    assert [label for label, _ in tree.root.branches] == ["<= 5 users", "6-32 users", "> 32 users"]
    assert _leaf_at(tree.root, 5).engine == "llamacpp-f32-32"


def test_verdicts_are_monotone_in_users() -> None:
    # b misses at 8 users, then meets at 32 (noise): at 19 users it misses, judged at 8, although
    # its 32-user level met with the higher throughput; a meets at 32, so at 19 too
    shapes = {"a": {1: "fast", 4: "fast", 32: "fast"}, "b": {1: "fast", 8: "slow", 32: "fast"}}
    pooled = _pooled(shapes, {"a": [10.0, 40.0, 300.0], "b": [100.0, 100.0, 500.0]})
    rec = recommend(pooled, UserProfile(peak_users=19, ttft_slo_s=1, tpot_slo_s=0.2), JUDGE)
    assert rec.engine == "a" and rec.judged_at == 32.0
    cliffs = engine_cliff_details(pooled)
    b = engine_at_load(pooled, cliffs["b"], 19)
    assert (b.verdict, b.judged_at) == ("misses", 8.0) and "misses at 8 users already" in b.how
    a = engine_at_load(pooled, cliffs["a"], 2)
    assert (a.verdict, a.judged_at, a.headroom) == ("meets", 4.0, 16.0)


def test_below_the_lowest_level_throughput_is_scaled_down() -> None:
    pooled = _pooled({"v": {16: "fast", 32: "fast"}}, {"v": [160.0, 320.0]})
    a = engine_at_load(pooled, engine_cliff_details(pooled)["v"], 4)
    # each user at most as fast as at 16 users: 168 tok/s (median of 160, 168, 176) x 4 / 16
    assert a.verdict == "meets" and a.tok_s == pytest.approx(42.0)
    assert a.numbers == "scaled down from its lowest measured level (16 users)"
    with pytest.raises(ValueError, match="users must be > 0"):
        engine_at_load(pooled, engine_cliff_details(pooled)["v"], 0)


def test_tree_with_long_documents_branch() -> None:
    chat = _pooled(CHAT_SHAPES, CHAT_TOK)
    mixed = _pooled(
        {"vllm": {4: "fast", 16: "slow"}, "llamacpp-serial": {4: "slow", 16: "slow"}},
        {"vllm": [60.0, 90.0], "llamacpp-serial": [30.0, 30.0]},
        level_set="mixed",
    )
    tree = build_tree(chat, JUDGE, mixed)
    assert tree.root.question == "long documents in the traffic?"
    assert tree.cliffs["vllm (long documents)"].text() == "between 4 and 16 users"
    assert tree.cliffs["llamacpp-serial (long documents)"].text().startswith("below 4 users")
    text = render_tree_text(tree)
    assert "vllm (long documents): between 4 and 16 users" in text
    assert "SLO: TTFT p90 <= 1 s and TPOT p50 <= 0.2 s" in text


def test_paired_ratio_pairs_repeats() -> None:
    levels, _ = _store({"a": {8: "fast"}, "b": {8: "fast"}}, {"a": [100.0], "b": [50.0]})
    levels.loc[(levels.engine == "b") & (levels.repeat == 2), "output_tok_s"] = 25.0
    r = paired_ratio(levels, "a", "b", "chat", 8)
    # per repeat: 100/50, 105/52.5, 110/25
    assert r.pairs == 3 and r.median == pytest.approx(2.0) and r.hi == pytest.approx(4.4)
    assert r.level == pytest.approx(0.75)


def test_interpolate_is_for_estimates_only() -> None:
    levels, _ = _store(CHAT_SHAPES, CHAT_TOK)
    assert interpolate(levels, "llamacpp-serial", "output_tok_s", 3) == pytest.approx(52.5)
    assert math.isnan(interpolate(levels, "vllm", "output_tok_s", 16))
    with pytest.raises(ValueError, match="users must be > 0"):
        interpolate(levels, "vllm", "output_tok_s", 0)


def test_select_levels_keeps_failed_levels() -> None:
    levels, requests = _store({"vllm": {1: "fast", 2: "failed"}}, {"vllm": [1.0, 2.0]})
    assert len(select_levels(pool_repeats(levels, requests, JUDGE))) == 2


def test_bad_profile() -> None:
    with pytest.raises(ValidationError):
        UserProfile(peak_users=0, ttft_slo_s=1, tpot_slo_s=1)

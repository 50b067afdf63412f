"""Decision tree on hand-made curves: every expected number is worked out in the comments.

Engines (SLO: TTFT p99 <= 1 s, TPOT p50 <= 0.2 s), users 1, 2, 4, 8 (log2 = 0, 1, 2, 3):
- vllm:            TTFT p99 0.1 0.2 0.5 2.0, TPOT p50 0.05 0.06 0.08 0.10, 20 40 80 120 tok/s
- llamacpp-serial: TTFT p99 0.2 0.6 1.4 3.0, TPOT p50 0.04 everywhere,    50 tok/s everywhere
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pydantic import ValidationError

from cliffbench.decide.tree import (
    DecisionNode,
    Leaf,
    UserProfile,
    build_tree,
    engine_cliff_details,
    engine_cliffs,
    interpolate,
    recommend,
    select_levels,
)
from cliffbench.report.tree_text import render_tree_text

USERS = [1, 2, 4, 8]
CURVES = {
    "vllm": ([0.1, 0.2, 0.5, 2.0], [0.05, 0.06, 0.08, 0.10], [20.0, 40.0, 80.0, 120.0]),
    "llamacpp-serial": ([0.2, 0.6, 1.4, 3.0], [0.04] * 4, [50.0] * 4),
}


def _levels(
    curves: dict[str, tuple[list[float], list[float], list[float]]] = CURVES,
    users: list[int] = USERS,
    level_set: str = "chat",
) -> pd.DataFrame:
    rows = []
    for engine, (ttft, tpot, tok) in curves.items():
        for c, a, b, t in zip(users, ttft, tpot, tok, strict=True):
            rows.append(
                {
                    "engine": engine,
                    "level_set": level_set,
                    "status": "ok",
                    "concurrency": c,
                    "ttft_s_p99": a,
                    "tpot_s_p50": b,
                    "output_tok_s": t,
                }
            )
    return pd.DataFrame(rows)


# mixed set measured at 1 and 4 users: vllm TTFT p99 0.5 -> 3.0, llamacpp-serial 0.3 -> 0.9
MIXED = _levels(
    {
        "vllm": ([0.5, 3.0], [0.05, 0.08], [20.0, 70.0]),
        "llamacpp-serial": ([0.3, 0.9], [0.04] * 2, [50.0] * 2),
    },
    users=[1, 4],
    level_set="mixed",
)


def test_interpolate_linear_in_log2_users() -> None:
    lv = _levels()
    # 2**1.5 users sits half-way between 2 (40 tok/s) and 4 (80 tok/s) on log2
    assert interpolate(lv, "vllm", "output_tok_s", 2**1.5) == pytest.approx(60.0)
    # 3 users: 40 + 40 * (log2(3) - 1) = 63.398
    assert interpolate(lv, "vllm", "output_tok_s", 3) == pytest.approx(40 + 40 * (math.log2(3) - 1))
    assert interpolate(lv, "vllm", "ttft_s_p99", 8) == pytest.approx(2.0)
    assert interpolate(lv, "vllm", "ttft_s_p99", 0.5) == pytest.approx(0.1)  # below: lowest level
    assert math.isnan(interpolate(lv, "vllm", "ttft_s_p99", 9))  # above: unmeasured


def test_interpolate_bad_inputs() -> None:
    lv = _levels()
    with pytest.raises(ValueError, match="nope"):
        interpolate(lv, "nope", "ttft_s_p99", 2)
    with pytest.raises(ValueError, match="e2e_s_p99"):
        interpolate(lv, "vllm", "e2e_s_p99", 2)
    with pytest.raises(ValueError, match="users"):
        interpolate(lv, "vllm", "ttft_s_p99", 0)


def test_select_levels_drops_failed_and_other_sets() -> None:
    lv = pd.concat([_levels(), MIXED, _levels(users=USERS).assign(status="failed", level_set="chat")])
    chat = select_levels(lv)
    assert set(chat["level_set"]) == {"chat"} and set(chat["status"]) == {"ok"} and len(chat) == 8
    assert len(select_levels(MIXED)) == 4  # a single-set frame is taken as it is


def test_engine_cliffs_by_hand() -> None:
    cliffs = engine_cliffs(_levels(), 1.0, 0.2)
    # vllm: passes at 4 (0.5), fails at 8 (2.0): log2 = 2 + (1 - 0.5) / 1.5 = 7/3
    assert cliffs["vllm"] == pytest.approx(2 ** (7 / 3))
    # llamacpp-serial: passes at 2 (0.6), fails at 4 (1.4): log2 = 1 + 0.4 / 0.8 = 1.5
    assert cliffs["llamacpp-serial"] == pytest.approx(2**1.5)
    # at its cliff an engine exactly meets the TTFT SLO
    assert interpolate(_levels(), "vllm", "ttft_s_p99", cliffs["vllm"]) == pytest.approx(1.0)


def test_engine_cliffs_tpot_bound_never_and_always() -> None:
    curves = {
        # TTFT fine everywhere, TPOT 0.1 -> 0.3 between 2 and 4: log2 = 1 + 0.1 / 0.2 = 1.5
        "tpot-bound": ([0.1] * 4, [0.05, 0.1, 0.3, 0.5], [1.0] * 4),
        "never-fails": ([0.1] * 4, [0.05] * 4, [1.0] * 4),
        "always-fails": ([5.0] * 4, [0.05] * 4, [1.0] * 4),
    }
    details = engine_cliff_details(_levels(curves), 1.0, 0.2)
    assert details["tpot-bound"].users == pytest.approx(2**1.5)
    assert details["never-fails"].users == 8 and details["never-fails"].at_least
    assert details["always-fails"].users == 0 and not details["always-fails"].at_least


def test_recommend_picks_highest_throughput_meeting_slo() -> None:
    lv = _levels()
    # at 2 users both meet; llamacpp-serial 50 tok/s beats vllm 40 tok/s
    rec = recommend(lv, UserProfile(peak_users=2, ttft_slo_s=1.0, tpot_slo_s=0.2))
    assert rec.engine == "llamacpp-serial" and rec.meets_slo
    # at 4 users only vllm meets (llamacpp-serial TTFT p99 1.4 s)
    rec = recommend(lv, UserProfile(peak_users=4, ttft_slo_s=1.0, tpot_slo_s=0.2))
    assert rec.engine == "vllm" and rec.meets_slo
    assert "vllm at 4 users: 80 tok/s, TTFT p99 0.5 s, TPOT p50 0.08 s -> meets SLO" in rec.evidence
    assert any(e.startswith("llamacpp-serial at 4 users") and "misses SLO" in e for e in rec.evidence)


def test_recommend_fallback_and_unmeasured() -> None:
    lv = _levels()
    # at 8 users neither meets: the lower TTFT p99 (vllm 2.0 s < 3.0 s) is named
    rec = recommend(lv, UserProfile(peak_users=8, ttft_slo_s=1.0, tpot_slo_s=0.2))
    assert rec.engine == "vllm" and not rec.meets_slo
    assert rec.verdict.startswith("no engine meets the SLO at 8 users on this hardware: scale out")
    rec = recommend(lv, UserProfile(peak_users=64, ttft_slo_s=1.0, tpot_slo_s=0.2))
    assert rec.engine is None and "unmeasured" in rec.verdict
    assert all("unmeasured" in e for e in rec.evidence)


def test_recommend_long_prompts_uses_mixed_ttft() -> None:
    lv = _levels()
    short = UserProfile(peak_users=4, ttft_slo_s=1.0, tpot_slo_s=0.2)
    long = UserProfile(peak_users=4, ttft_slo_s=1.0, tpot_slo_s=0.2, long_prompts=True)
    assert recommend(lv, short, MIXED).engine == "vllm"
    # with documents vllm's TTFT p99 is 3.0 s, llamacpp-serial's 0.9 s
    assert recommend(lv, long, MIXED).engine == "llamacpp-serial"


def test_bad_profile_and_empty_levels() -> None:
    with pytest.raises(ValidationError):
        UserProfile(peak_users=0, ttft_slo_s=1.0, tpot_slo_s=0.2)
    with pytest.raises(ValidationError):
        UserProfile(peak_users=4, ttft_slo_s=-1.0, tpot_slo_s=0.2)
    with pytest.raises(ValidationError):
        UserProfile(peak_users=4, ttft_slo_s=1.0, tpot_slo_s=0.2, typo=1)  # type: ignore[call-arg]
    failed = _levels().assign(status="failed")
    profile = UserProfile(peak_users=4, ttft_slo_s=1.0, tpot_slo_s=0.2)
    with pytest.raises(ValueError, match="no successful levels to decide from"):
        recommend(failed, profile)
    with pytest.raises(ValueError, match="no successful levels to decide from"):
        build_tree(_levels().iloc[0:0], 1.0, 0.2)


def test_tree_thresholds_are_the_cliffs_and_leaves_follow_recommend() -> None:
    lv = _levels()
    tree = build_tree(lv, 1.0, 0.2)
    assert tree.thresholds == pytest.approx(engine_cliffs(lv, 1.0, 0.2))
    assert tree.slo == {"ttft_s": 1.0, "tpot_s": 0.2}
    # cliffs 2.83 and 5.04 round down to 2 and 5; the highest measured level 8 closes the last range
    labels = [label for label, _ in tree.root.branches]
    assert labels == ["<= 2 users", "3-5 users", "6-8 users", "> 8 users"]
    engines = [leaf.engine for _, leaf in tree.root.branches if isinstance(leaf, Leaf)]
    assert engines == ["llamacpp-serial", "vllm", "vllm", None]
    last = tree.root.branches[-1][1]
    assert isinstance(last, Leaf) and "unmeasured, extrapolate with the roofline" in last.verdict


def test_tree_with_long_documents_branch() -> None:
    tree = build_tree(_levels(), 1.0, 0.2, mixed_levels=MIXED)
    assert tree.root.question == "long documents in the traffic?"
    assert [label for label, _ in tree.root.branches] == ["no", "yes"]
    # vllm with documents: TTFT 0.5 at 1 user, 1.75 at 2 (interpolated): log2 = 0.25 / 1.25 = 0.4
    assert tree.thresholds["vllm (long documents)"] == pytest.approx(2**0.4)
    # llamacpp-serial meets at every jointly measured level (1, 2, 4)
    assert tree.thresholds["llamacpp-serial (long documents)"] == pytest.approx(4.0)
    yes = tree.root.branches[1][1]
    assert isinstance(yes, DecisionNode)
    first = yes.branches[0][1]
    assert isinstance(first, Leaf) and first.engine == "llamacpp-serial"


def test_render_tree_text_names_every_leaf() -> None:
    tree = build_tree(_levels(), 1.0, 0.2, mixed_levels=MIXED)
    text = render_tree_text(tree)
    leaves: list[Leaf] = []

    def walk(node: DecisionNode | Leaf) -> None:
        if isinstance(node, Leaf):
            leaves.append(node)
        else:
            for _, child in node.branches:
                walk(child)

    walk(tree.root)
    assert len(leaves) >= 6
    for leaf in leaves:
        assert (leaf.engine or "no recommendation") in text
        assert leaf.verdict in text
    assert "long documents in the traffic?" in text and "TTFT p99 <= 1 s" in text

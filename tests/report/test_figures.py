"""Figures on a tiny hand-made study: each plot draws the expected artists, scales and legend labels."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.config import PROJECT_ROOT
from cliffbench.decide.tree import build_tree
from cliffbench.report.figure_set import overhead_figure, timeline_figure, tree_figure
from cliffbench.report.figures import (
    PRINT_HEIGHT_IN,
    PRINT_WIDTH_IN,
    engine_palette,
    plot_decision_tree,
    plot_hol_blocking,
    plot_itl,
    plot_kv_memory,
    plot_throughput,
    plot_timeline,
    plot_ttft,
    save_figure,
    set_style,
)
from cliffbench.report.figures.style import sparse_ticks
from cliffbench.report.figures.timeline import _long_in_flight
from tests.report.study_data import fake_results

FIDELITY_JSON = PROJECT_ROOT / "benchmarks" / "results" / "fidelity.json"
ENGINES = ["vllm", "llamacpp-serial"]
# (level set, users): chat at 1 and 4, mixed at 4; plus one failed vllm level at 8 that must not show
LEVELS = [("chat", 1), ("chat", 4), ("mixed", 4)]


def _key(engine: str, level_set: str, c: int) -> str:
    return f"{engine}__{level_set}__c{c:04d}"


def _study() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    levels, requests, tokens, memory = [], [], [], []
    for e_i, engine in enumerate(ENGINES):
        for level_set, c in [*LEVELS, ("chat", 8)]:
            failed = (level_set, c) == ("chat", 8)
            if failed and engine != "vllm":
                continue
            key = _key(engine, level_set, c)
            sweep = {"engine": engine, "level_set": level_set, "concurrency": c, "level_key": key}
            ttft = 0.05 * c * (1 + e_i)
            levels.append(
                {
                    **sweep,
                    "status": "failed" if failed else "ok",
                    "output_tok_s": 10.0 * c / (1 + e_i),
                    "ttft_s_p50": ttft,
                    "ttft_s_p99": 2 * ttft,
                    "ttft_s_p50_lo": 0.8 * ttft,
                    "ttft_s_p50_hi": 1.2 * ttft,
                    "ttft_s_p50_ci_level": 0.96,
                    "ttft_s_p90_lo": 1.3 * ttft,
                    "ttft_s_p90_hi": 2.0 * ttft,
                    "ttft_s_p90_ci_level": 0.955,
                    "ttft_s_p99_lo": 1.6 * ttft,
                    "ttft_s_p99_hi": 2.4 * ttft,
                    "ttft_s_p99_ci_level": 0.951,
                    "tpot_s_p50": 0.02 * (1 + e_i),
                }
            )
            for rid in range(4):
                long = level_set == "mixed" and rid == 0
                t0 = 0.1 * rid
                t1 = t0 + (0.5 if long else 0.05 * (1 + rid))
                times = t1 + 0.02 * np.arange(5) * (1 + e_i)
                requests.append(
                    {
                        **sweep,
                        "request_id": rid,
                        "warmup": False,
                        "status": "ok",
                        "prompt_tokens": 1000 if long else 20,
                        "output_tokens": 5,
                        "t_submit_s": t0,
                        "t_first_s": t1,
                        "t_end_s": float(times[-1]),
                        "queue_s": 0.01 if engine == "vllm" else np.nan,
                        "ttft_s": t1 - t0,
                    }
                )
                tokens += [{**sweep, "request_id": rid, "k": k, "t_s": float(t)} for k, t in enumerate(times)]
            reserved = (512 if engine == "vllm" else 64) * 2**20
            memory += [
                {
                    **sweep,
                    "t_s": 0.05 * i,
                    "reserved_bytes": reserved,
                    "live_bytes": (i + 1) * c * 2**20,
                    "live_seqs": c,
                    "waiting": 0,
                }
                for i in range(3)
            ]
    return pd.DataFrame(levels), pd.DataFrame(requests), pd.DataFrame(tokens), pd.DataFrame(memory)


@pytest.fixture
def ax() -> Iterator[Axes]:
    set_style()
    fig, axes = plt.subplots()
    yield axes
    plt.close(fig)


def _legend(ax: Axes) -> list[str]:
    leg = ax.get_legend()
    assert leg is not None
    return [t.get_text() for t in leg.get_texts()]


def test_palette_is_stable_and_distinct() -> None:
    full = engine_palette(["vllm", "llamacpp-serial", "llamacpp-slots-4", "llamacpp-slots-8", "other"])
    assert engine_palette(["vllm"])["vllm"] == full["vllm"]
    assert len(set(full.values())) == 5  # two slot counts get two shades, not one colour


def test_throughput(ax: Axes) -> None:
    levels, *_ = _study()
    plot_throughput(ax, levels)
    assert len(ax.get_lines()) >= 2
    assert set(ENGINES) <= set(_legend(ax))
    assert ax.get_xscale() == "log"
    # the failed vllm level at 8 users is not a measured point
    assert list(ax.get_xticks()) == [1.0, 4.0]
    ys = sorted(float(y) for line in ax.get_lines() for y in np.asarray(line.get_ydata()))
    assert ys == [5.0, 10.0, 20.0, 40.0]


def test_ttft(ax: Axes) -> None:
    levels, *_ = _study()
    plot_ttft(ax, levels)
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    assert len(ax.collections) == 4  # p50 and p99 CI bands per engine
    styles = {line.get_linestyle() for line in ax.get_lines()}
    assert {"-", "--"} <= styles
    assert {"vllm", "llamacpp-serial", "p50", "p99"} <= set(_legend(ax))


def test_ttft_bands_only_where_the_interval_exists(ax: Axes) -> None:
    levels, *_ = _study()
    # p99 "n too small" (NaN) everywhere, as at tens of requests per level; an unbounded top (+inf,
    # failed requests) cannot be drawn either
    levels = levels.assign(ttft_s_p99_lo=np.nan, ttft_s_p99_hi=np.nan, ttft_s_p99_ci_level=np.nan)
    levels.loc[levels["concurrency"] == 4, "ttft_s_p50_hi"] = np.inf
    plot_ttft(ax, levels)
    # p50 at 1 user only: a lone level, drawn as a bar; no p99 band at all
    assert [type(c).__name__ for c in ax.collections] == ["LineCollection"] * 2
    for bar in ax.collections:
        (segment,) = bar.get_segments()  # type: ignore[attr-defined]
        assert segment[0][0] == segment[1][0] == 1.0
    assert len(ax.get_lines()) == 4  # both point-estimate lines still drawn per engine


def test_itl(ax: Axes) -> None:
    levels, requests, tokens, _ = _study()
    plot_itl(ax, tokens, requests, levels)
    assert ax.get_yscale() == "log"
    assert _legend(ax) == ["low (c=1)", "high (c=4)"]
    assert len(ax.patches) >= 4  # a box per engine and load
    assert [t.get_text() for t in ax.get_xticklabels()] == ["llamacpp-serial", "vllm"]


def test_timeline_phases(ax: Axes) -> None:
    _, requests, *_ = _study()
    requests.loc[(requests["engine"] == "vllm") & (requests["request_id"] == 3), "status"] = "failed"
    plot_timeline(ax, requests, "vllm", _key("vllm", "chat", 4))
    # 3 ok requests x (waiting, prefill, decoding) + 1 failed bar
    assert len(ax.patches) == 10
    assert _legend(ax) == ["waiting", "prefill", "decoding", "failed"]
    assert "vllm" in ax.get_title()


def test_timeline_without_queue_stamp(ax: Axes) -> None:
    _, requests, *_ = _study()
    plot_timeline(ax, requests, "llamacpp-serial", _key("llamacpp-serial", "chat", 1))
    assert _legend(ax) == ["waiting + prefill", "decoding"]
    assert len(ax.patches) == 8


def test_kv_memory(ax: Axes) -> None:
    levels, _, _, memory = _study()
    plot_kv_memory(ax, memory, levels)
    assert ax.get_ylabel() == "KV cache (MiB)"
    ys = {float(y) for line in ax.get_lines() for y in np.asarray(line.get_ydata())}
    # reserved 512 / 64 MiB; peak live = 3 samples x c MiB -> 3 and 12 MiB
    assert {512.0, 64.0, 3.0, 12.0} <= ys
    assert {"reserved", "peak live"} <= set(_legend(ax))


def test_kv_memory_of_engines_that_tell_none(ax: Axes) -> None:
    """Fake engines and some servers report zero KV bytes: a note, not a log axis with no data."""
    levels, _, _, memory = _study()
    plot_kv_memory(ax, memory.assign(reserved_bytes=0, live_bytes=0), levels)
    assert [t.get_text() for t in ax.texts] == ["no engine reported KV memory in level set 'chat'"]


def test_long_in_flight_overlap() -> None:
    level = pd.DataFrame(
        {
            "t_submit_s": [0.0, 0.5, 2.0, 0.0],
            "t_first_s": [1.0, 1.5, 2.5, 0.1],
            "t_end_s": [1.2, 3.0, 2.6, 5.0],
        }
    )
    is_long = pd.Series([False, True, False, False])
    # the long request [0.5, 3.0] overlaps short 0's [0, 1] and short 2's [2, 2.5], not short 3's [0, 0.1]
    assert list(_long_in_flight(level, is_long)) == [True, True, True, False]


def test_hol_blocking(ax: Axes) -> None:
    _, requests, *_ = _study()
    plot_hol_blocking(ax, requests)
    assert ax.get_yscale() == "log"
    assert _legend(ax) == ["long request in flight", "none"]
    assert "1000" in ax.get_title() or "500" in ax.get_title()


def test_hol_blocking_without_mixed_set(ax: Axes) -> None:
    _, requests, *_ = _study()
    plot_hol_blocking(ax, requests[requests["level_set"] == "chat"])
    assert [t.get_text() for t in ax.texts] == ["no mixed-length levels in this study"]


def test_decision_tree(ax: Axes) -> None:
    levels, requests, *_ = _study()
    # 4 requests per level: an 80 % interval of the median exists (87.5 %), a 95 % one does not
    judge = SloJudge({"ttft_s": 100.0, "tpot_s": 10.0}, {"ttft_s": 50.0, "tpot_s": 50.0}, level=0.8)
    tree = build_tree(pool_repeats(levels, requests, judge), judge)
    plot_decision_tree(ax, tree)
    texts = " ".join(t.get_text().replace("\n", " ") for t in ax.texts)
    assert "peak concurrent users?" in texts and "vllm" in texts
    assert any(">" in t.get_text() for t in ax.texts)  # the unmeasured range's edge label
    assert not ax.axison


PLOTS: list[tuple[str, Callable[[Axes, tuple[pd.DataFrame, ...]], Any], str, str]] = [
    ("throughput", lambda a, s: plot_throughput(a, s[0]), "levels", "output_tok_s"),
    ("ttft", lambda a, s: plot_ttft(a, s[0]), "levels", "ttft_s_p99_hi"),
    ("itl", lambda a, s: plot_itl(a, s[2], s[1], s[0]), "tokens", "t_s"),
    ("timeline", lambda a, s: plot_timeline(a, s[1], "vllm", "x"), "requests", "queue_s"),
    ("kv", lambda a, s: plot_kv_memory(a, s[3], s[0]), "memory", "live_bytes"),
    ("hol", lambda a, s: plot_hol_blocking(a, s[1]), "requests", "prompt_tokens"),
]


@pytest.mark.parametrize(("name", "draw", "table", "column"), PLOTS, ids=[p[0] for p in PLOTS])
def test_missing_column_is_named(
    ax: Axes, name: str, draw: Callable[[Axes, tuple[pd.DataFrame, ...]], Any], table: str, column: str
) -> None:
    levels, requests, tokens, memory = _study()
    frames = {"levels": levels, "requests": requests, "tokens": tokens, "memory": memory}
    frames[table] = frames[table].drop(columns=[column])
    with pytest.raises(ValueError, match=column):
        draw(ax, (frames["levels"], frames["requests"], frames["tokens"], frames["memory"]))


def test_save_figure_writes_png_and_svg(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    paths = save_figure(fig, "demo", out_dir=tmp_path / "new")
    plt.close(fig)
    assert set(paths) == {"png", "svg"}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths["svg"].read_text()
    with pytest.raises(ValueError):
        save_figure(fig, "../escape", out_dir=tmp_path)


def test_serving_overhead_figure() -> None:
    from cliffbench.report.figures import plot_serving_overhead

    rows = [
        {"pair": p, "slots": n, "concurrency": c, "tok_s_ratio": r, "ttft_p50_ratio": 1 / r, "ttft_p99_ratio": 1.0,
         "same_text": True}
        for p, n, r in [("slots-vs-llama-server", 4, 1.05), ("vllm-vs-vllm-serve", None, 1.3)]
        for c in (1, 4, 16)
    ]  # fmt: skip
    fig, ax = plt.subplots()
    plot_serving_overhead(ax, pd.DataFrame(rows))
    legend = ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert "slots-vs-llama-server (N=4)" in labels and "vllm-vs-vllm-serve" in labels
    assert ax.get_xscale() == "log"
    plt.close(fig)


# -- print size and legibility (issue 27: overlapping ticks, nine series, a figure over the footer,
# a tree too small to read on paper) --

SEARCHED_USERS = (1, 2, 4, 8, 16, 18, 19, 20, 32)  # the grid and a cliff search's probes
NINE = ("vllm", "vllm-as-shipped", "vllm-fp32", "ollama", "llamacpp-serial", "llamacpp-f32-32", "llamacpp-bf16-32",
        "llamacpp-q8_0-32", "llamacpp-slots-4")  # fmt: skip


def _saved_size_in(fig: Figure) -> tuple[float, float]:
    """Width and height in inches of the PNG `save_figure` would write (tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    width, height = struct.unpack(">II", buf.getvalue()[16:24])
    return width / 100, height / 100


def _overlaps(boxes: list[Bbox]) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes) if i < j and a.overlaps(b)]


@pytest.mark.parametrize("size", [(6.5, 3.6), (3.2, 2.4)], ids=["full width", "small multiple"])
def test_user_tick_labels_do_not_overlap(size: tuple[float, float]) -> None:
    levels = pd.concat(
        [_study()[0].iloc[:1].assign(concurrency=u, output_tok_s=10.0 * u, level_key=f"k{u}") for u in SEARCHED_USERS]
    )
    fig, ax = plt.subplots(figsize=size)
    plot_throughput(ax, levels)
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    assert _overlaps([t.get_window_extent(renderer) for t in labels]) == []
    # the grid's levels keep their labels; every measured count keeps a tick (the probes a minor one)
    assert {1.0, 2.0, 4.0, 8.0, 16.0, 32.0} <= {float(x) for x in ax.get_xticks()}
    assert set(SEARCHED_USERS) == {*ax.get_xticks(), *ax.get_xticks(minor=True)}
    plt.close(fig)


def test_sparse_ticks_prefer_powers_of_two() -> None:
    kept, dropped = sparse_ticks([1, 3, 16, 18, 19, 20, 32], 0.4)
    assert kept == [1.0, 3.0, 16.0, 32.0] and dropped == [18.0, 19.0, 20.0]


def _fidelity_rows() -> pd.DataFrame:
    rows = json.loads(FIDELITY_JSON.read_text())["rows"]
    return pd.DataFrame(rows)[["pair", "slots", "concurrency", "tok_s_ratio", "ttft_p50_ratio"]]


def test_serving_overhead_small_multiples_keep_six_series_and_the_legend_off_the_data() -> None:
    fidelity = _fidelity_rows()
    assert fidelity.groupby(["pair", "slots"], dropna=False).ngroups > 6  # the stored benchmark: 8 lines
    set_style()
    fig = overhead_figure(fidelity)
    fig.tight_layout()
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == fidelity["pair"].nunique()
    for ax in panels:
        series = [line for line in ax.get_lines() if not str(line.get_label()).startswith("_")]
        assert 1 <= len(series) <= 6
        legend = ax.get_legend()
        assert legend is not None
        box = legend.get_window_extent()
        points = [ax.transData.transform(xy) for line in series for xy in line.get_xydata()]  # type: ignore[union-attr]
        assert not any(box.contains(x, y) for x, y in points), ax.get_title()
    width, height = _saved_size_in(fig)
    assert height * PRINT_WIDTH_IN / width <= PRINT_HEIGHT_IN - 1.0
    plt.close(fig)


def test_timeline_of_nine_engines_fits_one_page() -> None:
    res = fake_results(1, engines=NINE, users=SEARCHED_USERS, mixed_users=(4,), failed=None)
    set_style()
    fig = timeline_figure(res, "chat")
    width, height = _saved_size_in(fig)
    # printed at the text width, with room for its caption below it on the page
    assert height * PRINT_WIDTH_IN / width <= PRINT_HEIGHT_IN - 1.0
    assert len([ax for ax in fig.axes if ax.axison]) == 9
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    plt.close(fig)


def test_decision_tree_is_readable_on_paper() -> None:
    levels, requests, *_ = _study()
    judge = SloJudge({"ttft_s": 100.0, "tpot_s": 10.0}, {"ttft_s": 50.0, "tpot_s": 50.0}, level=0.8)
    pooled = pool_repeats(levels, requests, judge)
    tree = build_tree(pooled[pooled["level_set"] == "chat"], judge, pooled[pooled["level_set"] == "mixed"])
    set_style()
    fig = tree_figure(tree)
    width, _ = _saved_size_in(fig)
    scale = PRINT_WIDTH_IN / width  # the PDF prints every figure at its text width
    fig.canvas.draw()
    texts = [t for t in fig.findobj(Text) if isinstance(t, Text) and t.get_visible() and t.get_text().strip()]
    assert "Rule: " + tree.criterion[:40] in " ".join(t.get_text().replace("\n", " ") for t in texts)
    small = [(t.get_text()[:30], t.get_fontsize()) for t in texts if float(t.get_fontsize()) * scale < 7.0]
    assert small == []
    # no box or label runs into another
    boxes = []
    for t in texts:
        patch = t.get_bbox_patch()
        boxes.append(patch.get_window_extent() if patch is not None else t.get_window_extent())
    assert _overlaps(boxes) == []
    plt.close(fig)

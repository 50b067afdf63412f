"""The decision tree drawn with matplotlib only: question boxes, engine-coloured leaves, edge labels."""

from __future__ import annotations

import textwrap

from matplotlib.axes import Axes

from cliffbench.decide.tree import DecisionNode, DecisionTree, Leaf
from cliffbench.report.figures.style import NEUTRAL, Colour, engine_palette, shade

__all__ = ["plot_decision_tree"]


def _leaves(node: DecisionNode | Leaf) -> int:
    return 1 if isinstance(node, Leaf) else sum(_leaves(c) for _, c in node.branches)


def _depth(node: DecisionNode | Leaf) -> int:
    return 0 if isinstance(node, Leaf) else 1 + max(_depth(c) for _, c in node.branches)


def _tree_engines(node: DecisionNode | Leaf) -> list[str]:
    if isinstance(node, Leaf):
        return [node.engine] if node.engine else []
    return [e for _, c in node.branches for e in _tree_engines(c)]


def _draw_node(
    ax: Axes, node: DecisionNode | Leaf, x: float, y_top: float, pal: dict[str, Colour]
) -> tuple[float, float]:
    """Draw ``node`` with its leaves from ``y_top`` downwards (one unit each); return its anchor."""
    y = y_top - (_leaves(node) - 1) / 2.0
    if isinstance(node, Leaf):
        head = node.engine or "no recommendation"
        verdict = textwrap.shorten(node.verdict, 110, placeholder="...")
        text = head + "\n" + textwrap.fill(verdict, 46)
        colour = shade(pal[node.engine], 0.55) if node.engine else NEUTRAL
        ax.text(
            x,
            y,
            text,
            ha="left",
            va="center",
            fontsize=6,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "0.3"},
        )
        return x, y
    ax.text(
        x,
        y,
        textwrap.fill(node.question, 18),
        ha="center",
        va="center",
        fontsize=7,
        bbox={"boxstyle": "round,pad=0.5", "facecolor": "white", "edgecolor": "0.2"},
    )
    top = y_top
    for label, child in node.branches:
        cx, cy = _draw_node(ax, child, x + 1.0, top, pal)
        ax.annotate(
            "", xy=(cx, cy), xytext=(x + 0.25, y), arrowprops={"arrowstyle": "-|>", "color": "0.4", "linewidth": 0.8}
        )
        ax.text(
            x + 0.55,
            y + (cy - y) * 0.6,
            label,
            ha="center",
            va="center",
            fontsize=6,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
        )
        top -= _leaves(child)
    return x - 0.25, y


def plot_decision_tree(ax: Axes, tree: DecisionTree) -> None:
    """The decision tree with matplotlib only: question boxes, engine-coloured leaves, edge labels."""
    if not isinstance(tree, DecisionTree):
        raise ValueError(f"plot_decision_tree: expected a DecisionTree, got {type(tree).__name__}")
    engines = [e.removesuffix(" (long documents)") for e in tree.thresholds]
    pal = engine_palette([*engines, *_tree_engines(tree.root)])
    n = _leaves(tree.root)
    _draw_node(ax, tree.root, 0.0, float(n - 1), pal)
    ax.set_xlim(-0.5, _depth(tree.root) + 1.6)
    ax.set_ylim(-0.8, n - 0.2)
    ax.axis("off")
    ax.set_title(f"Which engine? (SLO: {tree.slo_text})")

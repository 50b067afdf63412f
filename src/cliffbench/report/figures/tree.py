"""The decision tree drawn with matplotlib only: question boxes, engine-coloured leaves, edge labels.

Drawn for paper: the figure is as wide as the PDF's text box (`PRINT_WIDTH_IN`), so it prints at
its own size, and no text is below 7.5 pt (the report's minimum is 7 pt; the margin absorbs the
tight-bounding-box crop). Positions are in inches of the figure (`tree_figsize`), so a box is as
large as its wrapped text and one leaf's slot is tall enough for four lines of it.
"""

from __future__ import annotations

import textwrap

from matplotlib.axes import Axes

from cliffbench.decide.tree import DecisionNode, DecisionTree, Leaf
from cliffbench.report.figures.style import NEUTRAL, PRINT_WIDTH_IN, Colour, engine_palette, shade

__all__ = ["TREE_MIN_FONT_PT", "plot_decision_tree", "tree_figsize"]

TREE_MIN_FONT_PT = 7.5
_LEAF_PT = 8.0
_QUESTION_PT = 8.5
_SLOT_IN = 0.78  # one leaf: a bold engine line and up to three wrapped lines at 8 pt, with padding
_HEADER_IN = 0.75  # the title and the rule, above the first leaf
_QUESTION_X_IN = (0.62, 2.2)  # centre of the question boxes at depth 0 and 1
_QUESTION_HALF_IN = 0.5  # at most half the width of a question box (13 characters at 8.5 pt, padded)
_QUESTION_WRAP = 13
_BUS_IN = 0.13  # from a question box to the vertical line its branches leave from
_LABEL_IN = 1.35  # from that line to a leaf: room for the widest label, "any number of users"
_CHAR_IN = 0.062  # mean width of a DejaVu Sans character at 8 pt, to wrap a leaf to its column


def _leaves(node: DecisionNode | Leaf) -> int:
    return 1 if isinstance(node, Leaf) else sum(_leaves(c) for _, c in node.branches)


def _depth(node: DecisionNode | Leaf) -> int:
    return 0 if isinstance(node, Leaf) else 1 + max(_depth(c) for _, c in node.branches)


def _tree_engines(node: DecisionNode | Leaf) -> list[str]:
    if isinstance(node, Leaf):
        return [node.engine] if node.engine else []
    return [e for _, c in node.branches for e in _tree_engines(c)]


def _half_width(question: str) -> float:
    """Half the width of a question's box, in inches (its longest wrapped line, and the padding)."""
    longest = max(len(line) for line in textwrap.wrap(question, _QUESTION_WRAP))
    return min(_QUESTION_HALF_IN, longest * _CHAR_IN * _QUESTION_PT / _LEAF_PT / 2 + 0.06)


def tree_figsize(tree: DecisionTree) -> tuple[float, float]:
    """Width and height (inches) that print `tree` at its own size on the report's page."""
    return PRINT_WIDTH_IN, _HEADER_IN + _SLOT_IN * _leaves(tree.root) + 0.1


class _Layout:
    def __init__(self, ax: Axes, tree: DecisionTree, pal: dict[str, Colour]) -> None:
        self.ax = ax
        self.pal = pal
        self.n = _leaves(tree.root)
        depth = _depth(tree.root)
        self.leaf_x = _QUESTION_X_IN[min(depth, len(_QUESTION_X_IN)) - 1] + _QUESTION_HALF_IN + _BUS_IN + _LABEL_IN
        self.wrap = max(24, int((PRINT_WIDTH_IN - self.leaf_x - 0.2) / _CHAR_IN))

    def y(self, slot: float) -> float:
        """The centre of leaf slot `slot` (0 at the top), in inches from the bottom."""
        return _SLOT_IN * (self.n - slot - 0.5)

    def leaf(self, leaf: Leaf, slot: float) -> tuple[float, float]:
        head = leaf.engine or "no recommendation"
        body = leaf.summary or textwrap.shorten(leaf.verdict, 3 * self.wrap, placeholder="...")
        lines = textwrap.wrap(body, self.wrap)[:3]
        colour = shade(self.pal[leaf.engine], 0.55) if leaf.engine else NEUTRAL
        y = self.y(slot)
        self.ax.text(
            self.leaf_x,
            y,
            head + "\n" + "\n".join(lines),
            ha="left",
            va="center",
            fontsize=_LEAF_PT,
            linespacing=1.25,
            bbox={"boxstyle": "round,pad=0.35", "facecolor": colour, "edgecolor": "0.3"},
        )
        return self.leaf_x, y

    def node(self, node: DecisionNode | Leaf, depth: int, first_slot: float) -> tuple[float, float]:
        """Draw `node` with its leaves from slot `first_slot` down; return its anchor (a leaf box's left
        edge, a question box's centre)."""
        if isinstance(node, Leaf):
            return self.leaf(node, first_slot)
        x = _QUESTION_X_IN[depth]
        y = self.y(first_slot + (_leaves(node) - 1) / 2.0)
        self.ax.text(
            x,
            y,
            textwrap.fill(node.question, _QUESTION_WRAP),
            ha="center",
            va="center",
            fontsize=_QUESTION_PT,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "0.2"},
        )
        # an elbow per branch: from the box to a vertical line, then along the child's row to it,
        # the branch's label above that last stretch, where no other branch runs
        bus = x + _QUESTION_HALF_IN + _BUS_IN
        right = x + _half_width(node.question)
        ys = []
        slot = first_slot
        for label, child in node.branches:
            cx, cy = self.node(child, depth + 1, slot)
            end = cx - (_half_width(child.question) if isinstance(child, DecisionNode) else 0.0) - 0.04
            self.ax.annotate(
                "", xy=(end, cy), xytext=(bus, cy), arrowprops={"arrowstyle": "-|>", "color": "0.4", "linewidth": 0.8}
            )
            self.ax.text(bus + 0.06, cy + 0.03, label, ha="left", va="bottom", fontsize=_LEAF_PT)
            ys.append(cy)
            slot += _leaves(child)
        self.ax.plot([right, bus], [y, y], color="0.4", linewidth=0.8)
        self.ax.plot([bus, bus], [min(ys), max(ys)], color="0.4", linewidth=0.8)
        return x, y


def plot_decision_tree(ax: Axes, tree: DecisionTree) -> None:
    """The decision tree, its SLO and the rule it recommends by; for a figure of `tree_figsize`."""
    if not isinstance(tree, DecisionTree):
        raise ValueError(f"plot_decision_tree: expected a DecisionTree, got {type(tree).__name__}")
    engines = [e.removesuffix(" (long documents)") for e in tree.thresholds]
    pal = engine_palette([*engines, *_tree_engines(tree.root)])
    layout = _Layout(ax, tree, pal)
    layout.node(tree.root, 0, 0.0)
    height = tree_figsize(tree)[1]
    top = _SLOT_IN * layout.n
    ax.text(
        0.0,
        top + _HEADER_IN - 0.05,
        f"Which engine? SLO: {tree.slo_text}",
        ha="left",
        va="top",
        fontsize=9.5,
        fontweight="bold",
    )
    ax.text(
        0.0,
        top + _HEADER_IN - 0.3,
        textwrap.fill(f"Rule: {tree.criterion}", 118),
        ha="left",
        va="top",
        fontsize=TREE_MIN_FONT_PT,
        color="0.25",
    )
    ax.set_xlim(0.0, PRINT_WIDTH_IN)
    ax.set_ylim(-0.1, height - 0.1)
    ax.axis("off")

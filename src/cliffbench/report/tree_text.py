"""The decision tree as indented plain text (`cliffbench recommend` and notebook 20)."""

from __future__ import annotations

from cliffbench.decide.tree import DecisionNode, DecisionTree, Leaf

__all__ = ["render_tree_text"]


def _render(node: DecisionNode | Leaf, indent: str, lines: list[str]) -> None:
    if isinstance(node, Leaf):
        for ev in node.evidence:
            lines.append(f"{indent}  . {ev}")
        return
    lines.append(f"{indent}{node.question}")
    for label, child in node.branches:
        if isinstance(child, Leaf):
            lines.append(f"{indent}  [{label}] -> {child.engine or 'no recommendation'}: {child.verdict}")
            _render(child, indent + "    ", lines)
        else:
            lines.append(f"{indent}  [{label}]")
            _render(child, indent + "    ", lines)


def render_tree_text(tree: DecisionTree) -> str:
    """Indented plain-text rendering (the CLI's ``cliffbench recommend``)."""
    lines = [f"SLO: {tree.slo_text} (interval decides; failed requests count as misses)", f"rule: {tree.criterion}"]
    lines.append("cliffs:")
    lines += [f"  {e}: {c.text()}" for e, c in tree.cliffs.items()]
    _render(tree.root, "", lines)
    return "\n".join(lines)

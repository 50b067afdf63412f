"""The constraint tree on paper: the reader's path and leaf (Markdown or plain text), and the leaves
of the example readers side by side."""

from __future__ import annotations

from cliffbench.decide.constraints import (
    ConstraintPath,
    MeasuredStudy,
    constraint_tree,
    example_readers,
)
from cliffbench.decide.matrix import MatrixData, MatrixParams, load_matrix

__all__ = ["constraint_markdown", "constraint_text", "readers_markdown"]


def _lines(path: ConstraintPath, data: MatrixData, md: bool) -> list[str]:
    b = (lambda s: f"**{s}**") if md else (lambda s: s)
    i = (lambda s: f"*{s}*") if md else (lambda s: s)
    name = {o: opt.name for o, opt in data.options.items()}
    c = path.constraints
    out = [
        f"{b('Your answers')}: prompts {c.data}; GPU {c.gpu}; ops team {'yes' if c.ops_team else 'no'}; "
        f"traffic {c.traffic_class}, {c.users} peak users.",
        "",
    ]
    for k, step in enumerate(path.steps, 1):
        head = f"{k}. {i(step.question)} {b(step.answer)}"
        if step.note:
            head += f" ({step.note})"
        if not step.ruled_out:
            out.append(head + f": nothing ruled out; {len(step.left)} option(s) left.")
            continue
        out.append(head + f": rules out {len(step.ruled_out)}, leaves {len(step.left)}.")
        for o, why in step.ruled_out.items():
            out.append(f"    - {name[o]}: {why}")
    out.append("")
    if path.leaf is None:
        out.append(f"{b('Leaf')}: none. {path.verdict}")
        return out
    cost = path.cost_text + (" per 1M output tokens" if path.cost_text.startswith("$") else "")
    out.append(f"{b('Leaf: ' + path.leaf_name)}, cost at your profile {cost} ({path.cost_note}). {path.verdict}.")
    if path.alternatives:
        nxt = "; ".join(f"{n} {s:.2f}, {cost_}" for _, n, s, cost_ in path.alternatives[:3])
        out.append(f"Next in the matrix among the options left: {nxt}.")
    return out


def constraint_markdown(path: ConstraintPath, data: MatrixData | None = None) -> str:
    """The reader's path through the tree, each rule with the cell or level it rests on, and the leaf."""
    return "\n".join(_lines(path, data or load_matrix(), md=True))


def constraint_text(path: ConstraintPath, data: MatrixData | None = None) -> str:
    """As constraint_markdown, for a terminal."""
    return "\n".join(_lines(path, data or load_matrix(), md=False))


def readers_markdown(base: MatrixParams, study: MeasuredStudy | None = None, data: MatrixData | None = None) -> str:
    """The example readers (decide.constraints.example_readers) and the leaf each reaches."""
    data = data or load_matrix()
    lines = [
        "| reader | ruled out by the constraints | by the measured cliffs | leaf | cost / 1M output at the profile |",
        "|---|---|---|---|---|",
    ]
    for label, reader in example_readers().items():
        path = constraint_tree(reader, base, data, study)
        by_rules = sum(len(s.ruled_out) for s in path.steps[:-1])
        by_cliffs = len(path.steps[-1].ruled_out)
        lines.append(f"| {label} | {by_rules} | {by_cliffs} | {path.leaf_name} | {path.cost_text} |")
    return "\n".join(lines)

"""Two stored benchmark results (bench/store/bench_record.py) compared number by number, as `compare`
compares two studies' levels: B/A with the exact distribution-free interval of `decide.shift` from
each number's repeats, a verdict, and a regression where a number is shown slower beyond the
tolerance (`cliffbench compare-bench A.json B.json`)."""

from __future__ import annotations

from cliffbench.bench.store.bench_record import BenchmarkRecord
from cliffbench.config import InputError
from cliffbench.decide.shift import shift_interval, shift_verdict

__all__ = ["compare_records"]


def compare_records(
    a: BenchmarkRecord, b: BenchmarkRecord, tolerance: float = 0.1, confidence: float = 0.95
) -> tuple[list[str], list[str]]:
    """(lines to print, regressions). Numbers pair by name; the machines and code of both head the
    lines, and a number only one side has is named."""
    if not 0 < tolerance < 1:
        raise InputError(f"--tolerance: must be in (0, 1), got {tolerance}")
    if not 0 < confidence < 1:
        raise InputError(f"--confidence: must be in (0, 1), got {confidence}")
    if a.benchmark != b.benchmark:
        raise InputError(f"benchmark: A is {a.benchmark!r}, B is {b.benchmark!r}: not the same benchmark")
    lines = [
        f"A: {a.benchmark} {a.date}, git {a.git_sha[:12]}, {a.cpu.get('model', '?')}, load {a.loadavg_before}",
        f"B: {b.benchmark} {b.date}, git {b.git_sha[:12]}, {b.cpu.get('model', '?')}, load {b.loadavg_before}",
    ]
    for field in ("model", "usable_cpus", "flags"):
        if a.cpu.get(field) != b.cpu.get(field):
            lines.append(f"differs: cpu.{field}: {a.cpu.get(field)} -> {b.cpu.get(field)}")
    nb = {n.name: n for n in b.numbers}
    regressions = []
    for n in a.numbers:
        other = nb.pop(n.name, None)
        if other is None:
            lines.append(f"{n.name}: only in A")
            continue
        iv = shift_interval([(n.values, other.values)], confidence, widest_if_short=True)
        verdict = shift_verdict(iv, n.higher_is_better)
        lines.append(f"{n.name}: A {n.text()}, B {other.text()}: B/A {iv.text()} {verdict}")
        beyond = iv.ratio < 1 - tolerance if n.higher_is_better else iv.ratio > 1 / (1 - tolerance)
        if verdict == "slower" and beyond:
            regressions.append(f"{n.name} {iv.text()}")
    lines += [f"{name}: only in B" for name in nb]
    return lines, regressions

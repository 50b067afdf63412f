"""Two runs of the same study side by side: does each headline number of run A lie inside the
interval run B prints for it?

Headline numbers: every engine-vs-engine ratio of the three comparisons (median of paired
repeats; B's interval is its range over paired repeats) and every engine's output tok/s at the
lowest and highest user count (median over repeats; B's interval is its range over repeats).

    .venv/bin/python tools/compare_runs.py RESULTS_A RESULTS_B [--study default] [--out FILE]

RESULTS_A and RESULTS_B are results folders (each holding <study>/levels/...), e.g. a copy of
data/results taken before the second run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cliffbench.audit.claims import load_claims
from cliffbench.bench.metrics.repeats import SloJudge, pool_repeats
from cliffbench.bench.store.levels import load_results
from cliffbench.config import PROJECT_ROOT
from cliffbench.report.data import ReportData
from cliffbench.report.sections.common import measured_levels
from cliffbench.report.sections.comparisons import Comparison, comparisons


def _data(root: Path, study: str) -> ReportData:
    res = load_results(study, root)
    claims = load_claims(PROJECT_ROOT / "data" / "published" / "claims.csv")
    return ReportData(study, res, claims, levels=pool_repeats(res.levels, res.requests, SloJudge.of(res.study.slo)))


def rows(a: ReportData, b: ReportData) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def key(c: Comparison) -> tuple[str, ...]:
        # the fastest engine of a family may differ between runs: best of each pairs by its users
        return (c.kind, str(c.users)) if c.kind == "best of each" else (c.kind, str(c.users), c.vllm, c.llamacpp)

    cb = {key(c): c for c in comparisons(b)}
    for c in comparisons(a):
        other = cb.get(key(c))
        if other is None:
            continue
        r = other.ratio
        names = f"{c.vllm} / {c.llamacpp}"
        if (other.vllm, other.llamacpp) != (c.vllm, c.llamacpp):
            names += f" (B: {other.vllm} / {other.llamacpp})"
        out.append(
            {
                "number": f"{c.label} {c.users} users: {names}",
                "a": c.ratio.median,
                "a_lo": c.ratio.lo,
                "a_hi": c.ratio.hi,
                "b": r.median,
                "b_lo": r.lo,
                "b_hi": r.hi,
                "inside": bool(r.lo <= c.ratio.median <= r.hi),
            }
        )
    la, lb = measured_levels(a), measured_levels(b)
    users = sorted(set(la["concurrency"]) & set(lb["concurrency"]))
    for u in (users[0], users[-1]) if users else ():
        for eng in sorted(set(la["engine"]) & set(lb["engine"])):
            ra = la[(la["engine"] == eng) & (la["concurrency"] == u)]
            rb = lb[(lb["engine"] == eng) & (lb["concurrency"] == u)]
            if ra.empty or rb.empty:
                continue
            x, y = ra.iloc[0], rb.iloc[0]
            out.append(
                {
                    "number": f"{eng} {int(u)} users: output tok/s",
                    "a": float(x.output_tok_s),
                    "a_lo": float(x.output_tok_s_min),
                    "a_hi": float(x.output_tok_s_max),
                    "b": float(y.output_tok_s),
                    "b_lo": float(y.output_tok_s_min),
                    "b_hi": float(y.output_tok_s_max),
                    "inside": bool(y.output_tok_s_min <= x.output_tok_s <= y.output_tok_s_max),
                }
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_a", type=Path)
    p.add_argument("results_b", type=Path)
    p.add_argument("--study", default="default")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    da, db = _data(a.results_a, a.study), _data(a.results_b, a.study)
    table = rows(da, db)
    for r in table:
        mark = "inside" if r["inside"] else "OUTSIDE"
        print(
            f"{r['number']:<62} A {r['a']:8.3g} ({r['a_lo']:.3g}-{r['a_hi']:.3g})   "
            f"B {r['b']:8.3g} ({r['b_lo']:.3g}-{r['b_hi']:.3g})   {mark}"
        )
    n_in = sum(r["inside"] for r in table)
    print(f"{n_in} of {len(table)} numbers of run A lie inside run B's interval")
    if a.out:
        meta = {
            "a": {"root": str(a.results_a), "created_at": da.results.manifest.get("created_at")},
            "b": {"root": str(a.results_b), "created_at": db.results.manifest.get("created_at")},
        }
        a.out.write_text(json.dumps({"runs": meta, "rows": table, "inside": n_in, "total": len(table)}, indent=2))


if __name__ == "__main__":
    main()

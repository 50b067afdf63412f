"""Which phase of a level the report's numbers come from: the steady window, said in words, and
the transient (ramp and drain) set beside it at each engine's heaviest load."""

from __future__ import annotations

import pandas as pd

from cliffbench.bench.metrics.phases import STEADY_SHARE
from cliffbench.bench.store.levels import ok_levels
from cliffbench.report.data import ReportData
from cliffbench.report.names import engine_names
from cliffbench.report.sections.common import fmt
from cliffbench.trace import Source, record

__all__ = ["steady_sentence", "steady_table"]


def steady_sentence(data: ReportData | None = None) -> str:
    """What the steady window is, in words (its share of users read from the method's own constant),
    and, where the study's levels stopped at their window's end, how many drain requests that cut."""
    share = record(f"{100 * STEADY_SHARE:g}", Source("cliffbench.bench.metrics.phases", "STEADY_SHARE", cited=True))
    text = (
        "Every latency, throughput and verdict in the body is taken over each level's steady window. Users start "
        "spread over about one request's duration. The window runs from the last user's first request until fewer "
        f"than {share}% of the users are left, and a request counts when it was sent and answered inside it. The "
        "ramp before the window and the drain after it are the transient, reported apart below."
    )
    levels = data.results.levels if data is not None else pd.DataFrame()
    stopped = float(pd.to_numeric(levels["n_stopped"], errors="coerce").fillna(0).sum()) if "n_stopped" in levels else 0
    if stopped > 0:
        n = fmt(stopped, 4, Source("levels", "n_stopped (sum over every level)"))
        text += (
            " Each level stopped where its window ended, as no verdict reads what runs after it. "
            f"The {n} requests still running then were aborted and are stored as stopped."
        )
    return text


# (label, steady column, transient column, digits): the transient's columns are `transient_<name>`
_ROWS = (
    ("TTFT p90 (s)", "ttft_s_p90", "transient_ttft_s_p90", 2),
    ("TPOT p50 (s)", "tpot_s_p50", "transient_tpot_s_p50", 2),
    ("output tok/s", "output_tok_s", "transient_output_tok_s", 3),
)


def steady_table(data: ReportData, level_set: str = "chat") -> str:
    """Per engine at its highest user count: the steady window's TTFT p90, TPOT p50 and output tok/s
    against the transient's (medians over repeats), and how many requests each phase held."""
    lv = ok_levels(data.results.levels, level_set)
    if lv.empty or "steady_start_s" not in lv:
        return "No level of this study stored its phases (it was measured before steady windows existed)."
    names = engine_names(data)
    top = lv.loc[lv.groupby("engine")["concurrency"].transform("max") == lv["concurrency"]]
    head = (
        "| engine | users | "
        + " | ".join(f"{r[0]}, steady / transient" for r in _ROWS)
        + " | requests steady / ramp / drain |"
    )
    lines = [head, "|" + "---|" * (len(_ROWS) + 3)]
    for eng, g in top.groupby("engine", sort=True):
        users = int(g["concurrency"].iloc[0])
        cells = []
        for _, steady, transient, digits in _ROWS:
            pair = []
            for col in (steady, transient):
                v = float(pd.to_numeric(g[col], errors="coerce").median()) if col in g else float("nan")
                pair.append(fmt(v, digits, Source("levels", f"{col} (median over repeats)", f"{eng} {users} users")))
            cells.append(" / ".join(pair))
        counts = " / ".join(
            fmt(float(g[c].sum()), 3, Source("levels", f"{c} (sum over repeats)", f"{eng} {users} users"))
            for c in ("n_steady", "n_ramp", "n_drain")
        )
        users_txt = fmt(float(users), 3, Source("study", "concurrency", str(eng)))
        lines.append(f"| {names.get(str(eng), str(eng))} | {users_txt} | " + " | ".join(cells) + f" | {counts} |")
    return "\n".join(lines)

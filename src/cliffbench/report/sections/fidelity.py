"""How closely the in-process engines track the real servers (benchmarks/fidelity.py's results)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cliffbench.report.data import ReportData
from cliffbench.report.sections.common import fmt

__all__ = ["fidelity_sentence"]


def fidelity_sentence(data: ReportData) -> str:
    """How closely the in-process engines track the real servers (benchmarks/fidelity.py)."""
    if data.fidelity is None:
        return "No fidelity benchmark stored (run `benchmarks/fidelity.py`)."
    fidelity = data.fidelity.data
    df = pd.DataFrame(fidelity["rows"])
    tol = float(fidelity.get("tolerance", 0.10))
    parts = []
    for pair, g in df.groupby("pair", sort=False):
        tok, ttft = g["tok_s_ratio"], g["ttft_p50_ratio"]
        inside = int(((tok - 1).abs().le(tol) & (ttft - 1).abs().le(tol)).sum())
        parts.append(
            f"{pair}: output tok/s ratio {fmt(tok.min())}-{fmt(tok.max())}, TTFT p50 ratio "
            f"{fmt(ttft.min())}-{fmt(ttft.max())} ({inside}/{len(g)} levels within +-{tol:.0%}; "
            f"greedy text identical at {int(g['same_text'].sum())}/{len(g)})"
        )
    text = (
        f"In-process engine vs the real server it stands for (`benchmarks/results/{data.fidelity.name}`, "
        f"{fidelity.get('threads', '?')} compute thread(s) per side; ratio = in-process / server, same model "
        "file, workload and threads; the client shares the server's cores): " + "; ".join(parts) + "."
    )
    control = df[df["pair"].astype(str).str.startswith("control")]
    if len(control):
        spread = float((control["tok_s_ratio"] - 1).abs().max())
        text += (
            f" The control pair runs the in-process engine against itself: its ratios stray up to "
            f"{spread:.0%} from 1, the noise floor of these short runs on this machine, so a gap inside "
            "that spread is not evidence that an engine differs from its server."
        )
    repeats = data.fidelity_repeats
    return text + (_repeats_sentence(repeats.data) if repeats is not None else "")


def _repeats_sentence(repeats: dict[str, Any]) -> str:
    """One level of the fidelity benchmark run again, as is and with server options changed."""
    runs = pd.DataFrame(repeats["runs"])
    plain = runs[runs["variant"].str.startswith("default")]
    first = runs.iloc[0]
    server_tok_s = pd.Series([float(r["tok_s"]) for r in runs["server"]], index=runs.index)
    steady = runs[server_tok_s >= 0.85 * server_tok_s.max()]
    changed = runs.drop(index=plain.index)
    return (
        f" The level with the largest gap ({first['pair']}, N={first['slots']}, {first['concurrency']} users) "
        f"was run {len(runs)} times in all: as is {len(plain)} times, tok/s ratio "
        f"{fmt(plain['tok_s_ratio'].min())}-{fmt(plain['tok_s_ratio'].max())}, the server alone "
        f"{fmt(server_tok_s[plain.index].min())}-{fmt(server_tok_s[plain.index].max())} tok/s; with "
        f"server options changed ({', '.join(changed['variant'].unique())}) "
        f"{fmt(changed['tok_s_ratio'].min())}-{fmt(changed['tok_s_ratio'].max())}. The same configuration "
        "drifts between runs minutes apart by more than any option moves it. In the runs where the "
        f"server ran within 15% of its best ({len(steady)} of {len(runs)}), the in-process engine is "
        f"x{fmt(steady['tok_s_ratio'].min())}-x{fmt(steady['tok_s_ratio'].max())} the server's tok/s."
    )

"""A measured level's records as the tidy tables the store keeps: requests, tokens, memory."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cliffbench.bench.load.driver import MEMORY_COLUMNS, LevelRun
from cliffbench.bench.metrics.level import add_request_metrics

__all__ = ["level_tables"]


def level_tables(run: LevelRun) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(requests, tokens, memory) of one level run; `queue_s` from the engine's scheduling stamp,
    `user` the closed-loop user that sent each request (-1: open loop)."""
    rows, toks = [], []
    for r in run.records:
        t = r.token_times_s
        rows.append(
            {
                "request_id": r.request_id,
                "warmup": r.warmup,
                "user": r.user,
                "status": r.status,
                "error": r.error,
                "prompt_tokens": r.prompt_tokens,
                "cached_tokens": r.cached_tokens,
                "max_tokens": r.max_tokens,
                "output_tokens": len(t),
                "t_submit_s": r.t_submit_s,
                "t_first_s": t[0] if t else np.nan,
                "t_end_s": t[-1] if t else np.nan,
                "t_done_s": r.t_done_s,
                "queue_s": r.t_scheduled_s - r.t_submit_s,
            }
        )
        toks.append(pd.DataFrame({"request_id": r.request_id, "k": np.arange(len(t)), "t_s": t}))
    requests = add_request_metrics(pd.DataFrame(rows))
    tokens = pd.concat(toks, ignore_index=True) if toks else pd.DataFrame(columns=["request_id", "k", "t_s"])
    memory = pd.DataFrame(run.memory, columns=MEMORY_COLUMNS)
    return requests, tokens, memory

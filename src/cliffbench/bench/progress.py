"""Progress of a running study: the reporter interface the sweep calls, and the notebook's bars."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from cliffbench.bench.loadgen import RequestRecord
from cliffbench.bench.store import LevelInfo

__all__ = ["LiveStats", "Reporter", "TqdmReporter"]


class Reporter(Protocol):
    def level_started(self, key: str, n_requests: int) -> None: ...
    def request_done(self, record: RequestRecord) -> None: ...
    def level_finished(self, info: LevelInfo) -> None: ...
    def level_skipped(self, key: str) -> None: ...


class LiveStats:
    """Running TTFT p50 and output tok/s of one level's measured requests, for progress bars.
    (Display only: the stored summaries come from `metrics.summarize_level`.)"""

    def __init__(self) -> None:
        self.ttfts_s: list[float] = []
        self.tokens = 0
        self.t0_s: float | None = None
        self.t1_s = 0.0

    def add(self, record: RequestRecord) -> None:
        if record.warmup or record.status != "ok":
            return
        self.ttfts_s.append(record.token_times_s[0] - record.t_submit_s)
        self.tokens += record.output_tokens
        self.t0_s = record.t_submit_s if self.t0_s is None else min(self.t0_s, record.t_submit_s)
        self.t1_s = max(self.t1_s, record.token_times_s[-1])

    def text(self) -> str:
        if not self.ttfts_s or self.t0_s is None or self.t1_s <= self.t0_s:
            return ""
        return f"TTFT p50 {np.median(self.ttfts_s):.3f}s  {self.tokens / (self.t1_s - self.t0_s):.1f} tok/s"


class TqdmReporter:
    """Progress for notebooks: a tqdm bar per level with live TTFT p50 and output tok/s."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.live = LiveStats()

    def level_started(self, key: str, n_requests: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=n_requests, desc=key, leave=False)
        self.live = LiveStats()

    def request_done(self, record: RequestRecord) -> None:
        self.live.add(record)
        if self.bar is not None:
            self.bar.set_postfix_str(self.live.text())
            self.bar.update(1)

    def level_finished(self, info: LevelInfo) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        from tqdm.auto import tqdm

        s = info.summary
        state = "ok" if info.status == "ok" else f"FAILED: {info.error.splitlines()[0][:200]}"
        tqdm.write(
            f"{info.level_key}: {state} {s.get('output_tok_s', float('nan')):.1f} tok/s, "
            f"TTFT p50 {s.get('ttft_s_p50', float('nan')):.3f}s"
        )

    def level_skipped(self, key: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(f"{key}: stored, skipped")

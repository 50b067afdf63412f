"""Why the cliff is where it is: each request's latency split into waiting for admission, prefill
and decode from the engine's own timestamps, and the engine's sampled state, named at the cliff.

Per request (client clock, engine timestamps joined by the load generator): `queue_s` runs from
submission to the engine first scheduling the request (vLLM's SCHEDULED event, llama.cpp's slot
assignment, the fake's admission), prefill from there to the first token, decode from the first
token to the last. The memory sampler records the engine's running and waiting sequences during
the level. At an engine's cliff the metric that broke names the mechanism:

- TTFT broke and the queue holds most of it: admission is the limit (all slots busy, or the
  scheduler's batch full): "queue wait is 84% of TTFT at 8 users: 4 slots, 3.6 requests waiting".
- TTFT broke and prefill holds most of it: prompt processing competes for the cores (with long
  documents in the level set: their prefill blocks the short requests behind them).
- TPOT broke: each decode step serves a bigger batch: "TPOT grows x3.1 from 1 to 8 users:
  batch-bound".
- Sequences were preempted: the KV pool is full, and evicted sequences are recomputed.
- Requests failed: the engine refused or dropped them (a queue limit's 503, a timeout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.bench.search.bracket import CliffFound
from cliffbench.bench.store.levels import Results
from cliffbench.decide.tree import engine_cliff_details

__all__ = ["CliffCause", "EngineCliff", "cliff_cause", "latency_components", "queue_estimates", "study_cliffs"]

_KEYS = ["engine", "level_set", "concurrency"]


def latency_components(res: Results, level_set: str) -> pd.DataFrame:
    """One row per engine x users of `level_set`, pooled over repeats: mean `queue_s`, `prefill_s`
    and `decode_s` of the successful requests, their share of TTFT, failed requests, and the
    engine's mean running and waiting sequences from the memory sampler."""
    r = res.requests
    r = r[(r["level_set"] == level_set) & ~r["warmup"].astype(bool)] if len(r) else r
    if r.empty:
        return pd.DataFrame(columns=[*_KEYS, "queue_s", "prefill_s", "decode_s"])
    r = r[r["status"] != "stopped"]  # drain requests the level stopped at its window's end: no outcome
    r = r.assign(failed=r["status"] != "ok")
    ok = r[~r["failed"]].copy()
    ok["queue_source"] = np.where(ok["queue_s"].notna(), "engine", "")
    est = queue_estimates(res.memory, ok, level_set)
    if len(est):
        ok = ok.merge(est, on="level_key", how="left")
        fill = ok["queue_s"].isna() & ok["queue_est_s"].notna()
        # one mean wait for every request of the level, never more than the request's own TTFT
        ok.loc[fill, "queue_s"] = np.minimum(ok.loc[fill, "queue_est_s"], ok.loc[fill, "ttft_s"])
        ok.loc[fill, "queue_source"] = ok.loc[fill, "queue_method"]
    ok["queue_s"] = ok["queue_s"].clip(lower=0)
    ok["prefill_s"] = (ok["ttft_s"] - ok["queue_s"]).clip(lower=0)
    ok["decode_s"] = (ok["e2e_s"] - ok["ttft_s"]).clip(lower=0)
    out = ok.groupby(_KEYS)[["queue_s", "prefill_s", "decode_s", "ttft_s", "tpot_s"]].mean()
    out["tpot_p50_s"] = ok.groupby(_KEYS)["tpot_s"].median()
    out["queue_share"] = ok.groupby(_KEYS)["queue_s"].sum() / ok.groupby(_KEYS)["ttft_s"].sum()
    out["queue_source"] = ok.groupby(_KEYS)["queue_source"].first()
    out["n"] = r.groupby(_KEYS).size()
    out["n_failed"] = r.groupby(_KEYS)["failed"].sum()
    m = res.memory
    if len(m) and "live_seqs" in m:
        m = m[m["level_set"] == level_set]
        out["running"] = m.groupby(_KEYS)["live_seqs"].mean()
        out["waiting"] = m.groupby(_KEYS)["waiting"].mean()
        if "state_source" in m:
            out["state_source"] = m.groupby(_KEYS)["state_source"].first()
        if {"steps", "decode_seqs", "preemptions"} <= set(m.columns):
            # the counters are cumulative per engine: a level's share is last minus first sample
            counters = m.groupby([*_KEYS, "level_key"])[["steps", "decode_seqs", "preemptions"]]
            per = counters.max() - counters.min()
            tot = per.groupby(level=list(range(len(_KEYS)))).sum()
            out["step_batch"] = (tot["decode_seqs"] / tot["steps"].where(tot["steps"] > 0)).astype(float)
            out["preemptions"] = tot["preemptions"]
    first_error = r[r["failed"]].groupby(_KEYS)["error"].first() if r["failed"].any() else None
    out = out.reset_index()
    if first_error is not None:
        out = out.merge(first_error.rename("first_error").reset_index(), on=_KEYS, how="left")
    return out.sort_values(_KEYS).reset_index(drop=True)


def queue_estimates(memory: pd.DataFrame, ok: pd.DataFrame, level_set: str) -> pd.DataFrame:
    """Per level whose engine was scraped over HTTP (`state_source` 'metrics'): its mean queue
    wait, `queue_est_s`, which no request of a served engine carries. From vLLM's queue-time
    histogram where the server has one (its sum over its count, both as deltas over the level);
    else by Little's law: the time-averaged number of requests waiting over the rate at which the
    level completed requests. `queue_method` names which ('histogram' or 'little')."""
    cols = ["level_key", "queue_est_s", "queue_method"]
    if memory.empty or "state_source" not in memory:
        return pd.DataFrame(columns=cols)
    m = memory[(memory["level_set"] == level_set) & (memory["state_source"] == "metrics")]
    rows = []
    for key, g in m.groupby("level_key"):
        g = g.sort_values("t_s")
        d_count = float(g["queue_wait_count"].iloc[-1] - g["queue_wait_count"].iloc[0])
        d_sum = float(g["queue_wait_sum_s"].iloc[-1] - g["queue_wait_sum_s"].iloc[0])
        if d_count > 0 and math.isfinite(d_sum):
            rows.append((key, max(d_sum, 0.0) / d_count, "histogram"))
            continue
        done = int((ok["level_key"] == key).sum())
        span_s = float(g["t_s"].iloc[-1] - g["t_s"].iloc[0])
        if done and span_s > 0:
            rows.append((key, float(g["waiting"].mean()) / (done / span_s), "little"))
    return pd.DataFrame(rows, columns=cols)


_ESTIMATED = {
    "histogram": "estimated from the server's /metrics: its queue-time histogram over the level",
    "little": "estimated from the server's /metrics: mean requests waiting over the completion rate, Little's law",
}


@dataclass(frozen=True)
class CliffCause:
    engine: str
    mechanism: str  # 'queue', 'prefill', 'decode', 'kv', 'failures', 'none' (no cliff in range)
    text: str


def _ms(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def _users(n: float) -> str:
    return f"{n:g} user" + ("" if n == 1 else "s")


def _row(comp: pd.DataFrame, engine: str, users: float | None) -> pd.Series | None:
    if users is None:
        return None
    hit = comp[(comp["engine"] == engine) & (comp["concurrency"] == users)]
    return None if hit.empty else hit.iloc[0]


def cliff_cause(
    comp: pd.DataFrame,
    pooled: pd.DataFrame,
    engine: str,
    meets_up_to: float | None,
    first_miss: float | None,
    judge: SloJudge,
    slots: int | None = None,
    long_documents: bool = False,
) -> CliffCause:
    """The mechanism behind `engine`'s cliff between `meets_up_to` and `first_miss` users, from
    `latency_components` and the pooled, judged levels (`pool_repeats` with `judge`)."""
    mine = comp[comp["engine"] == engine]
    if mine.empty:
        return CliffCause(engine, "none", "no successful request to decompose")
    low = mine.iloc[0]
    if first_miss is None:
        top = mine.iloc[-1]
        return CliffCause(
            engine,
            "none",
            f"no cliff up to {top['concurrency']:g} users: there, TTFT averages {_ms(top['ttft_s'])} "
            f"(queue {top['queue_share']:.0%} of it) and TPOT p50 is {_ms(top['tpot_p50_s'])}, "
            f"x{top['tpot_p50_s'] / low['tpot_p50_s']:.1f} its value at {_users(low['concurrency'])}",
        )
    at = _row(comp, engine, first_miss)
    before = _row(comp, engine, meets_up_to)
    judged = pooled[(pooled["engine"] == engine) & (pooled["concurrency"] == first_miss)]
    broke = [
        m
        for m in judge.thresholds
        if not judged.empty and str(judged.iloc[0].get(f"slo_{m}_verdict", "misses")) != "meets"
    ]
    where = f"at {first_miss:g} users"
    if at is None or at["n_failed"] > at["n"] / 2:
        n_failed = int(at["n_failed"]) if at is not None else 0
        n = int(at["n"]) if at is not None else 0
        err = str(at.get("first_error", "") or "") if at is not None else ""
        return CliffCause(
            engine,
            "failures",
            f"{n_failed} of {n} requests failed {where}" + (f": {err.splitlines()[0][:120]}" if err else ""),
        )
    slo_txt = " and ".join(judge.label(m) for m in broke) or f"the SLO ({judge.text()})"
    preempted = float(at.get("preemptions", 0) or 0)
    if preempted > 0:
        return CliffCause(
            engine,
            "kv",
            f"{slo_txt} breaks {where}: the KV pool is full: {preempted:.0f} sequences preempted (evicted and "
            f"recomputed) during the level",
        )
    if "ttft_s" in broke or not broke:
        share = float(at["queue_share"])
        waiting = float(at.get("waiting", math.nan))
        running = float(at.get("running", math.nan))
        state = (
            f"{running:.1f} running and {waiting:.1f} waiting on average"
            if not (math.isnan(running) or math.isnan(waiting))
            else "engine state not sampled"
        )
        if str(at.get("state_source", "")) == "none":
            state = "no server state: the server has no /metrics"
        how = _ESTIMATED.get(str(at.get("queue_source", "")))
        if how:  # a served engine's requests carry no queue time: the level's mean is an estimate
            state += f"; queue wait {how}"
        if share >= 0.5:
            if slots and running >= 0.9 * slots:
                cap = "its one slot busy" if slots == 1 else f"all {slots} slots busy"
            elif slots and running >= 0.6 * slots:
                # a slot freed is taken at the engine's next step, so the mean stays under the count
                cap = f"its {slots} slots busy most of the time"
            else:
                cap = "requests held back by the engine's scheduler"
            prev = f" (at {meets_up_to:g}: {before['queue_share']:.0%})" if before is not None else ""
            return CliffCause(
                engine,
                "queue",
                f"{slo_txt} breaks {where}: queue wait is {share:.0%} of TTFT{prev}, {cap} ({state})",
            )
        prefill = float(at["prefill_s"])
        grew = f", x{prefill / before['prefill_s']:.1f} its value at {meets_up_to:g}" if before is not None else ""
        why = (
            "long documents' prefill blocks the short requests behind them"
            if long_documents
            else "prompt processing of the batch competes with decoding for the cores"
        )
        return CliffCause(
            engine,
            "prefill",
            f"{slo_txt} breaks {where}: prefill is {1 - share:.0%} of TTFT ({_ms(prefill)} on average{grew}): "
            f"{why} ({state})",
        )
    tpot = float(at["tpot_p50_s"])
    ratio = tpot / float(low["tpot_p50_s"]) if low["tpot_p50_s"] > 0 else math.nan
    step = float(at.get("step_batch", np.nan))
    running = float(at.get("running", np.nan))
    batch = (
        f" ({step:.1f} sequences per step on average)"
        if not math.isnan(step)
        else (f" (mean batch {running:.1f})" if not math.isnan(running) else "")
    )
    return CliffCause(
        engine,
        "decode",
        f"{slo_txt} breaks {where}: TPOT p50 is {_ms(tpot)}, x{ratio:.1f} its value at {_users(low['concurrency'])}"
        f": each decode step serves a bigger batch{batch}: batch-bound",
    )


@dataclass(frozen=True)
class EngineCliff:
    """An engine's cliff in one level set: from its search where one ran, else the grid's bracket."""

    engine: str
    meets_up_to: float | None
    first_miss: float | None
    source: str  # 'search' or 'grid'
    text: str


def study_cliffs(pooled: pd.DataFrame, level_set: str, searches: Sequence[CliffFound]) -> dict[str, EngineCliff]:
    """Engine -> its cliff in `level_set`: the searched interval where a search ran (its own SLO,
    named in `text`), else the bracket of the grid's pooled verdicts (`decide.tree`)."""
    lv = pooled[pooled["level_set"] == level_set] if len(pooled) else pooled
    out: dict[str, EngineCliff] = {}
    for engine, c in engine_cliff_details(lv).items():
        lo = c.meets_up_to if c.meets_up_to > 0 else None
        out[engine] = EngineCliff(engine, lo, c.first_miss, "grid", c.text())
    for s in searches:
        if s.level_set == level_set:
            out[s.engine] = EngineCliff(s.engine, s.meets_up_to, s.first_miss, "search", s.text())
    return out

"""The seed post's numbers as data/published/claims.csv records them, and where they came from.

Nothing here types a published number: the seed's rows are its source's rows of the claims frame
(`cliffbench.audit.claims.load_claims`), and a row *traces* to another source's row with the same
engine, metric, concurrency and value (claims.csv's notes record such a match for the seed's
25-32-user throughputs; `traced_to` finds it in the data). A traced row recorded on other hardware
than the seed states was relabelled, so a comparison takes a source that measured on the stated
hardware instead (`comparable_pair`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import pandas as pd

from cliffbench.audit.claims import DEFAULT_PRECISION, find_model
from cliffbench.audit.roofline import decode_ceiling_tok_s
from cliffbench.config import fmt_number as fmt
from cliffbench.hardware import HARDWARE

__all__ = [
    "OLLAMA_SLOTS",
    "SEED_HIGH_USERS",
    "SEED_SOURCE_ID",
    "SEED_TAIL_CLAIMS",
    "ClaimPair",
    "Published",
    "claim",
    "comparable_pair",
    "seed_pair",
    "seed_users",
    "stated_ceiling",
    "trace_text",
    "traced_to",
]

SEED_SOURCE_ID = "CPLT_CLAIM"  # data/published/sources.csv, kind "seed": the post under review
# the seed's table heading "2. 25–32 concurrent users" (shared/seed); claims.csv records 32, the upper end
SEED_HIGH_USERS = (25, 32)
# One Ollama slot count for every shape: Ollama's default parallelism as documented at v0.9.2, the version
# Red Hat measured (RH2025, the only A100 comparison of the two engines; version per secondary summaries).
# The v0.9.2 FAQ: "The default will auto-select either 4 or 1 based on available memory" (an A100 40GB has
# the memory for 4); the code of that version (server/sched.go, `defaultParallel = 2` since v0.6.7) tried
# 2 and then 1 first, and v0.10.0 made the default 1 (shared/research/published_numbers.md, "Ollama"). So 4
# is the most generous default of the seed's era; the seed's own Ollama was "tuned for parallelism".
OLLAMA_SLOTS = 4
# the seed's TTFTs name no percentile: "~28 ms", "stable at ~95 ms" read as typical values (p50), but
# "spikes past 290 ms" is "a lower bound on spikes, not a typical value" (claims.csv notes): a tail, p99
SEED_TAIL_CLAIMS = frozenset({"cplt-c32-ollama-ttft"})


@dataclass(frozen=True)
class Published:
    """One row of the claims frame."""

    claim_id: str
    source_id: str
    engine: str
    hardware: str
    model: str
    precision: str
    concurrency: int | str
    metric: str
    value: float
    unit: str
    notes: str

    @property
    def si(self) -> float:
        """The value in seconds (latencies) or tok/s."""
        return self.value / 1000 if self.unit == "ms" else self.value

    def text(self) -> str:
        return f"{fmt(self.value)} {self.unit}"

    def served_precision(self) -> str:
        """The claim's precision, else the one the audit assumes for its engine (claims.py)."""
        if self.precision != "unknown":
            return self.precision
        return next((p for k, (p, _) in DEFAULT_PRECISION.items() if k in self.engine.lower()), "bf16")


def _rows(claims: pd.DataFrame) -> list[Published]:
    names = [f.name for f in fields(Published)]
    return [Published(**{k: r[k] for k in names}) for r in claims.to_dict("records")]


def claim(
    claims: pd.DataFrame, engine: str, metric: str, concurrency: int | str | None = None, source: str = SEED_SOURCE_ID
) -> Published | None:
    """The first row of `source` for `engine` and `metric` at `concurrency` (None: any)."""
    for p in _rows(claims):
        if (p.source_id, p.engine, p.metric) == (source, engine, metric) and concurrency in (None, p.concurrency):
            return p
    return None


def seed_users(claims: pd.DataFrame) -> int:
    """The seed's high load as claims.csv records it (the upper end of its 25-32 users)."""
    users = [int(p.concurrency) for p in _rows(claims) if p.source_id == SEED_SOURCE_ID and p.concurrency != "unknown"]
    return max(users, default=SEED_HIGH_USERS[1])


def traced_to(claims: pd.DataFrame, p: Published) -> Published | None:
    """Another source's row with `p`'s engine, metric, concurrency and value: where the number came from."""
    same = ("engine", "metric", "concurrency", "value")
    return next(
        (q for q in _rows(claims) if q.source_id != p.source_id and all(getattr(q, k) == getattr(p, k) for k in same)),
        None,
    )


def trace_text(claims: pd.DataFrame, p: Published | None) -> str:
    """'; cplt-c32-vllm-tps = SPH2026's sph-vllm-tps, hardware 'unknown'' where `p` traces to another row."""
    t = traced_to(claims, p) if p else None
    return f"; {p.claim_id} = {t.source_id}'s {t.claim_id}, hardware '{t.hardware}'" if p and t else ""


def stated_ceiling(claims: pd.DataFrame, precision: str, batch: int) -> float:
    """Decode ceiling (tok/s) of the setup the seed states (hardware and model of its high-load vLLM
    row) at `precision` and `batch`; NaN where claims.csv leaves either unknown."""
    p = claim(claims, "vllm", "output_tok_s_total", seed_users(claims))
    hw, m = (HARDWARE.get(p.hardware), find_model(p.model)) if p else (None, None)
    return decode_ceiling_tok_s(hw, m, precision, batch) if hw and m else math.nan


@dataclass(frozen=True)
class ClaimPair:
    """vLLM's and Ollama's value of one metric from one source; `relabelled` holds the rows they trace
    to that were recorded on other hardware than the source states."""

    vllm: Published
    ollama: Published
    relabelled: tuple[Published, ...] = ()

    @property
    def ratio(self) -> float:
        """vLLM / Ollama."""
        return self.vllm.si / self.ollama.si if self.ollama.si else math.nan

    @property
    def users(self) -> int | None:
        c = self.vllm.concurrency
        return int(c) if c != "unknown" else None

    def cite(self) -> str:
        """'vLLM 793 tok/s, Ollama 41 tok/s: RH2025 on a100-40gb (rh-vllm-peak-tps, rh-ollama-peak-tps)',
        plus where relabelled values came from."""
        v, o = self.vllm, self.ollama
        text = f"vLLM {v.text()}, Ollama {o.text()}: {v.source_id} on {v.hardware} ({v.claim_id}, {o.claim_id})"
        return text + (f"; {self.relabel_note()}" if self.relabelled else "")

    def relabel_note(self, quote: bool = True) -> str:
        """Where relabelled values came from, quoting the first such row's notes."""
        if not self.relabelled:
            return ""
        src, ids = self.relabelled[0], ", ".join(r.claim_id for r in self.relabelled)
        text = f"the same values as {src.source_id}'s {ids}, recorded on hardware '{src.hardware}', not "
        text += self.vllm.hardware
        return text + (f': "{src.notes.split(". ")[0]}"' if quote else "")


def _pair(claims: pd.DataFrame, metric: str, source: str, concurrency: int | str | None) -> ClaimPair | None:
    v, o = claim(claims, "vllm", metric, concurrency, source), claim(claims, "ollama", metric, concurrency, source)
    if v is None or o is None:
        return None
    traced = [t for t in (traced_to(claims, v), traced_to(claims, o)) if t is not None and t.hardware != v.hardware]
    rows = _rows(claims)
    return ClaimPair(v, o, tuple(sorted(traced, key=rows.index)))  # in file order


def seed_pair(claims: pd.DataFrame, metric: str = "output_tok_s_total") -> ClaimPair | None:
    """The seed's vLLM and Ollama rows of `metric` at its high load."""
    return _pair(claims, metric, SEED_SOURCE_ID, seed_users(claims))


def comparable_pair(claims: pd.DataFrame, metric: str) -> ClaimPair | None:
    """The published vLLM-vs-Ollama pair of `metric` to compare with: the seed's at its high load
    unless its values were relabelled from other hardware (or it has none), then the first other
    source (file order) with both engines on the hardware the seed states; else the seed's as it is."""
    seed = seed_pair(claims, metric)
    if seed is not None and not seed.relabelled:
        return seed
    hardware = next((p.hardware for p in _rows(claims) if p.source_id == SEED_SOURCE_ID), None)
    for source in dict.fromkeys(p.source_id for p in _rows(claims) if p.hardware == hardware):
        pair = _pair(claims, metric, source, None) if source != SEED_SOURCE_ID else None
        if pair is not None and pair.vllm.hardware == pair.ollama.hardware == hardware and not pair.relabelled:
            return pair
    return seed

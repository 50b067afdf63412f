"""Published numbers (data/published/claims.csv) and the audit of each against the physical
ceilings of its hardware and model (`cliffbench.audit.roofline`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from cliffbench.audit.roofline import (
    MODELS,
    ModelSize,
    Precision,
    kv_bytes_per_token,
    prefill_ceiling_tok_s,
    ttft_floor_s,
    weight_bytes,
)
from cliffbench.config import DATA_DIR, Spec, parse_spec, read_csv_specs
from cliffbench.hardware import HARDWARE, Hardware

CLAIMS_CSV = DATA_DIR / "published" / "claims.csv"
SOURCES_CSV = DATA_DIR / "published" / "sources.csv"


Metric = Literal["output_tok_s_total", "output_tok_s_per_user", "ttft_s", "ttft_s_p99", "itl_s_p99"]
_Unknown = Literal["unknown"]


class Claim(Spec):
    """One published number (a row of claims.csv)."""

    claim_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    source_id: str = Field(min_length=1)
    engine: str = Field(min_length=1)
    hardware: str
    model: str = Field(min_length=1)
    precision: Precision | _Unknown
    concurrency: PositiveInt | _Unknown
    metric: Metric
    value: float = Field(gt=0)
    unit: Literal["tok/s", "s", "ms"]
    prompt_tokens: PositiveInt | _Unknown
    output_tokens: PositiveInt | _Unknown
    notes: str = ""

    @field_validator("hardware")
    @classmethod
    def _known_hardware(cls, v: str) -> str:
        if v != "unknown" and v not in HARDWARE:
            raise ValueError(f"unknown hardware {v!r}; allowed: {', '.join(HARDWARE)}, unknown")
        return v

    @field_validator("unit")
    @classmethod
    def _unit_fits(cls, v: str, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if metric is not None and (v == "tok/s") != metric.startswith("output_tok_s"):
            raise ValueError(f"unit {v!r} does not fit metric {metric!r} (tok/s for throughput, s or ms for latency)")
        return v


class Source(Spec):
    """One row of sources.csv."""

    source_id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    published: str = Field(pattern=r"^(\d{4}-\d{2}-\d{2}|unknown)$")
    accessed_via: str = Field(min_length=1)
    kind: Literal["primary", "secondary", "seed"]


def load_claims(path: str | Path = CLAIMS_CSV) -> pd.DataFrame:
    """claims.csv validated row by row; InputError names the line and the field."""
    claims = read_csv_specs(Path(path), Claim, unique_key=True)
    return pd.DataFrame([c.model_dump() for c in claims], columns=list(Claim.model_fields))


def load_sources(path: str | Path = SOURCES_CSV) -> pd.DataFrame:
    """sources.csv validated row by row."""
    sources = read_csv_specs(Path(path), Source, unique_key=True)
    return pd.DataFrame([s.model_dump() for s in sources], columns=list(Source.model_fields))


# Precision an engine serves when a source does not say (the research note's reading). Ollama on
# the seed's A100 is one precision everywhere the report uses it (claims, shapes, ceilings): the
# one its sources state (RH2025's rows in claims.csv, FP16 GGUF), not the Q4_K_M of its default
# tag, so no page assumes a different Ollama from another.
DEFAULT_PRECISION = {
    "vllm": ("bf16", "vLLM serves the checkpoint dtype, bf16 for Llama 3.x"),
    "ollama": ("fp16", "the FP16 GGUF the one source stating Ollama's weights on the A100 names (RH2025)"),
    "llama.cpp": ("q4_k_m", "the usual GGUF, as Ollama's default tag"),
}


def find_model(name: str) -> ModelSize | None:
    key = name.lower().split("/")[-1].replace(" ", "-").removesuffix("-instruct")
    return MODELS.get(key)


def _tok_s(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def _compute_txt(hw: Hardware, m: ModelSize, p: str) -> str:
    peak = hw.compute_tflops(p)
    unit = "TOPS (int8)" if peak == hw.int8_tops and peak > hw.bf16_tflops else "TFLOP/s"
    rate = _tok_s(prefill_ceiling_tok_s(hw, m, p))
    return f"{peak:g} {unit} / {2 * m.n_params / 1e9:.2f} GFLOP per token = {rate} tok/s"


def _decode(hw: Hardware, m: ModelSize, p: str, batch: float, ctx: float | None) -> tuple[float, str]:
    """Decode ceiling with its arithmetic. batch=inf: the compute cap; ctx=None: the worst context,
    the KV cache filling memory (or the model's context length, if smaller)."""
    cap = prefill_ceiling_tok_s(hw, m, p)
    cap_txt = _compute_txt(hw, m, p)
    if math.isinf(batch):
        return cap, f"compute cap, any batch: {cap_txt}"
    w = weight_bytes(m, p)
    if ctx is None:
        longest = batch * (m.context_length or math.inf) * kv_bytes_per_token(m)
        kv = max(0.0, min(hw.memory_gib * 2**30 - w, longest))
        kv_txt = "KV filling memory" if kv < longest else f"KV of {batch:g} x {m.context_length} tok, the longest"
    else:
        kv, kv_txt = batch * ctx * kv_bytes_per_token(m), f"KV of {batch:g} x {ctx:g} tok"
    rate = hw.memory_bandwidth_gb_s * 1e9 / (w + kv) * batch
    per = "token" if batch == 1 else "step"
    bytes_txt = f"{w / 1e9:.2f} GB" if kv == 0 else f"({w / 1e9:.2f} GB weights + {kv / 1e9:.2f} GB {kv_txt})"
    text = f"{hw.memory_bandwidth_gb_s:g} GB/s / {bytes_txt} per {per}" + (f" x {batch:g}" if batch > 1 else "")
    text += f" = {_tok_s(rate)} tok/s"
    return (cap, f"{text}; compute caps it: {cap_txt}") if cap < rate else (rate, text)


def _judge(speed: float, upper: float, lower: float, unknown: list[str]) -> str:
    """Compare a claimed speed with the most generous (upper) and least generous (lower) ceiling."""
    if speed > upper * (1 + 1e-9):
        ratio = speed / upper
        return f"exceeds ceiling by x{ratio:.1f}" if ratio >= 1.1 else f"exceeds ceiling by x{ratio:.2f}"
    if speed <= lower * (1 + 1e-9):
        return "within ceiling"
    return f"cannot be checked: {' and '.join(unknown)} unknown"


def _audit(c: Claim) -> tuple[float, str, str]:
    hw, m = HARDWARE.get(c.hardware), find_model(c.model)
    if hw is None or m is None:
        why = [what for what, x in (("hardware", hw), ("model", m)) if x is None]
        return math.nan, f"cannot be checked: {' and '.join(why)} unknown", ""
    notes: list[str] = []
    p: str = c.precision
    if p == "unknown":
        guess = next((v for k, v in DEFAULT_PRECISION.items() if k in c.engine.lower()), None)
        if guess is None:
            return math.nan, "cannot be checked: precision unknown", ""
        p = guess[0]
        notes.append(f"precision unknown: {p} assumed ({guess[1]})")
    value_si = c.value / 1000 if c.unit == "ms" else c.value
    conc = None if c.concurrency == "unknown" else c.concurrency
    prompt = None if c.prompt_tokens == "unknown" else c.prompt_tokens
    output = None if c.output_tokens == "unknown" else c.output_tokens
    unknown = (["concurrency"] if conc is None else []) + (["lengths"] if None in (prompt, output) else [])

    if c.metric.startswith("ttft"):
        prefill = prefill_ceiling_tok_s(hw, m, p)
        notes.append(f"prefill {_compute_txt(hw, m, p)}")
        # a 1-token prompt gives the most generous floor, the longest prompt the model takes the strictest
        floor_min_s = ttft_floor_s(hw, m, p, prompt or 1)
        floor_max_s = ttft_floor_s(hw, m, p, prompt or m.context_length or math.inf)
        if prompt is None:
            notes.append(
                f"floor {floor_min_s * 1e3:.1f} ms for a 1-token prompt (one read of the weights); "
                f"{c.value:g} {c.unit} allows at most {value_si * prefill:,.0f} prompt tokens"
            )
        else:
            notes.append(f"floor {floor_min_s * 1e3:.1f} ms for a {prompt}-token prompt")
        return prefill, _judge(1 / value_si, 1 / floor_min_s, 1 / floor_max_s, ["prompt length"]), "; ".join(notes)

    ctx_lo = (prompt or 0) + (output or 0) / 2  # mean context while a request decodes
    ctx_hi = None if "lengths" in unknown else ctx_lo
    if c.metric == "output_tok_s_total":
        upper, up_txt = _decode(hw, m, p, conc or math.inf, ctx_lo)
        lower, lo_txt = _decode(hw, m, p, conc or 1, ctx_hi)
        speed = value_si
    else:  # per user: output tok/s, or 1 / ITL
        upper, up_txt = _decode(hw, m, p, conc or 1, ctx_lo)
        # an unknown batch could be large enough to starve every user: no lower bound
        lower, lo_txt = _decode(hw, m, p, conc, ctx_hi) if conc else (0.0, "none (batch unknown)")
        upper, lower = upper / (conc or 1), lower / (conc or 1)
        speed = value_si if c.metric == "output_tok_s_per_user" else 1 / value_si
        if c.metric == "itl_s_p99":
            notes.append(f"ITL {c.value:g} {c.unit} = {_tok_s(speed)} tok/s per user")
        if conc and conc > 1:
            notes.append(f"per user = total / {conc}")
    notes.append(up_txt if upper == lower else f"best case {up_txt}; worst case {lo_txt}")
    return upper, _judge(speed, upper, lower, unknown), "; ".join(notes)


def audit_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """`claims` (as load_claims returns) with ceiling_tok_s, verdict and arithmetic added.

    Unknowns are bracketed: a claim above the most generous ceiling (shortest context, largest
    batch) is "exceeds ceiling"; one below the least generous (KV filling memory, batch 1) is
    "within ceiling"; in between it depends on what the source left out: "cannot be checked".
    """
    results = []
    for i, r in enumerate(claims[list(Claim.model_fields)].to_dict("records")):
        # re-validated: a frame may be built by hand, not only by load_claims
        row = {k: v.item() if isinstance(v, np.generic) else v for k, v in r.items()}
        results.append(_audit(parse_spec(Claim, row, prefix=f"claims row {i} ({row.get('claim_id')}).")))
    out = claims.copy()
    out["ceiling_tok_s"] = [r[0] for r in results]
    out["verdict"] = [r[1] for r in results]
    out["arithmetic"] = [r[2] for r in results]
    return out

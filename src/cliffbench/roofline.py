"""Physical ceilings of LLM serving, and an audit of published numbers against them.

A decode step reads every weight once, plus the KV cache of every running sequence, so output
tok/s <= bandwidth / bytes per step x batch; every token also costs ~2 FLOP per parameter, so no
batch beats peak FLOP/s / (2 x n_params). Attention FLOPs, activations and kernel efficiency are
left out on purpose: the results are upper bounds, so a published number above one is impossible
as stated, while one below it is only possible. One deliberate exception: weights count every
parameter, as usually quoted, though a step reads one row of an untied input-embedding table
(Llama-3.1-8B: 0.53 of 8.03 B params), so an excess under ~x1.07 there is not proof.

`HARDWARE` holds datasheet numbers and `local_hardware()` measures this machine. `audit_claims(
load_claims())` checks data/published/claims.csv; data/published/README.md documents its schema.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field, PositiveInt, ValidationError, ValidationInfo, field_validator

from cliffbench.config import DATA_DIR, InputError, Spec, parse_spec

if TYPE_CHECKING:
    from cliffbench.models.manifest import ModelShapes

__all__ = [
    "BITS_PER_PARAM",
    "CLAIMS_CSV",
    "ENGINE_PRECISION",
    "HARDWARE",
    "MODELS",
    "SOURCES_CSV",
    "Claim",
    "Hardware",
    "Metric",
    "ModelSize",
    "Precision",
    "Source",
    "audit_claims",
    "decode_ceiling_tok_s",
    "kv_bytes_per_token",
    "kv_capacity_seqs",
    "load_claims",
    "load_sources",
    "local_hardware",
    "prefill_ceiling_tok_s",
    "probe_matmul_tflops",
    "probe_memory_bandwidth_gb_s",
    "ttft_floor_s",
    "weight_bytes",
]

CLAIMS_CSV = DATA_DIR / "published" / "claims.csv"
SOURCES_CSV = DATA_DIR / "published" / "sources.csv"

Precision = Literal["bf16", "fp16", "fp32", "q8_0", "q4_k_m", "q4_1"]
# Average bits per weight over the whole file: GGUF k-quants mix block types (Q4_K_M keeps some
# tensors at Q6_K), so 4.85 is an average; Q8_0 and Q4_1 add one or two fp16 scales per 32 weights.
BITS_PER_PARAM: dict[str, float] = {"bf16": 16, "fp16": 16, "fp32": 32, "q8_0": 8.5, "q4_k_m": 4.85, "q4_1": 5.0}
_QUANTISED = ("q8_0", "q4_k_m", "q4_1")
# what engines call a precision (vLLM dtypes, GGUF variants) -> the names above
ENGINE_PRECISION: dict[str, str] = {
    "q4_1": "q4_1",
    "f16": "fp16",
    "f32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "float32": "fp32",
}


class Hardware(Spec):
    """One accelerator's peaks. TFLOP/s are dense (no 2:4 sparsity), as GEMMs of LLMs run."""

    name: str
    memory_bandwidth_gb_s: float = Field(gt=0)
    bf16_tflops: float = Field(gt=0, description="dense bf16 tensor peak, fp32 accumulate")
    fp32_tflops: float | None = Field(None, gt=0, description="non-tensor fp32 peak")
    int8_tops: float | None = Field(None, gt=0, description="dense int8 tensor peak")
    memory_gib: float = Field(gt=0)
    source: str
    note: str = ""

    def compute_tflops(self, precision: str) -> float:
        """The highest peak a model of `precision` could run its matmuls at. Generous on purpose:
        llama.cpp multiplies quantised weights as int8 (MMQ), and an engine may upcast to fp32."""
        peaks = [self.bf16_tflops, self.fp32_tflops or 0.0]
        if precision in _QUANTISED:
            peaks.append(self.int8_tops or 0.0)
        return max(peaks)


_A100 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
_H100 = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_ADA = "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
_PAGE = "https://www.nvidia.com/en-us/data-center/"
_CHECKED = "NVIDIA URL from memory, not fetched; values match third-party copies of its spec table"
HARDWARE: dict[str, Hardware] = {
    # rows in field order: name, GB/s, bf16 TF, fp32 TF, int8 TOPS, GiB, source, note
    str(row[0]): Hardware.model_validate(dict(zip(Hardware.model_fields, row, strict=True)))
    for row in (
        (
            "a100-40gb",
            1555,
            312,
            19.5,
            624,
            40,
            _A100,
            "SXM4 and PCIe 40GB share 1,555 GB/s and 312 TF (the research "
            "note's numbers); the PCIe card's 250 W cap can keep it below peak. URL from memory, not fetched",
        ),
        ("a100-80gb", 2039, 312, 19.5, 624, 80, _A100, "SXM4 (the 80GB PCIe card has 1,935 GB/s). Unsure: from memory"),
        ("h100-sxm", 3350, 989, 67, 1979, 80, _H100, "datasheet gives 1,979 TF bf16 with sparsity. " + _CHECKED),
        ("h100-pcie", 2000, 756, 51, 1513, 80, _H100, "datasheet gives 1,513 TF bf16 with sparsity. " + _CHECKED),
        ("h200", 4800, 989, 67, 1979, 141, _PAGE + "h200/", "SXM; H100 SXM compute; 141 GB as marketed. " + _CHECKED),
        ("l4", 300, 121, 30.3, 242.5, 24, _PAGE + "l4/", "datasheet 242 TF bf16 is with sparsity. " + _CHECKED),
        ("l40s", 864, 362, 91.6, 733, 48, _PAGE + "l40s/", "datasheet gives 733 TF bf16 with sparsity. " + _CHECKED),
        (
            "rtx-4090",
            1008,
            165.2,
            82.6,
            660.6,
            24,
            _ADA,
            "bf16/fp16 tensor with fp32 accumulate, the GeForce rate "
            "engines get (fp16 accumulate: 330 TF). " + _CHECKED.replace("NVIDIA", "Ada whitepaper"),
        ),
    )
}


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# float64 elements per inner step: three 256 KiB slices stay in L2, so the second pass of the triad
# (a += b after a = s*c) hits cache and DRAM sees the 3 arrays STREAM counts.
_BLOCK = 1 << 15
_F64 = npt.NDArray[np.float64]


def _triad(a: _F64, b: _F64, c: _F64, scalar: float, lo: int, hi: int) -> None:
    for i in range(lo, hi, _BLOCK):
        j = min(i + _BLOCK, hi)
        np.multiply(c[i:j], scalar, out=a[i:j])
        np.add(a[i:j], b[i:j], out=a[i:j])


def _best_s(step: Callable[[], object], runs: int) -> float:
    step()  # warm-up: page faults, thread start-up and BLAS dispatch stay out of the timing
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    # the best run, as STREAM reports: other load only slows a run down, and a ceiling is an upper bound
    return min(times)


def probe_memory_bandwidth_gb_s(size_mb: float = 256, runs: int = 5) -> float:
    """STREAM-like triad a = b + s*c on float64 arrays of `size_mb` MB each, split over one thread
    per usable core (numpy releases the GIL); best of `runs`, counting 3 arrays x 8 B per element."""
    if size_mb <= 0 or runs < 1:
        raise InputError(f"size_mb/runs: need size_mb > 0 and runs >= 1, got {size_mb} and {runs}")
    n = max(int(size_mb * 1e6) // 8, _BLOCK)
    a, b, c = np.zeros(n), np.full(n, 1.0), np.full(n, 2.0)  # filled, so every page is mapped before timing
    edges = np.linspace(0, n, _threads() + 1).astype(int)
    chunks = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
    with ThreadPoolExecutor(len(chunks)) as pool:
        seconds = _best_s(lambda: list(pool.map(lambda ch: _triad(a, b, c, 3.0, *ch), chunks)), runs)
    return 3 * n * 8 / seconds / 1e9


_MATMUL_DTYPES = ("float32", "float64", "bfloat16", "float16")


def probe_matmul_tflops(dtype: str = "float32", n: int = 2048, runs: int = 3) -> float:
    """Dense n x n matmul rate (2n^3 FLOP per product), best of `runs`: numpy for float32/64,
    torch for bfloat16/float16 (numpy has no bf16)."""
    if dtype not in _MATMUL_DTYPES:
        raise InputError(f"dtype: {dtype!r} is not one of {', '.join(_MATMUL_DTYPES)}")
    if n < 1 or runs < 1:
        raise InputError(f"n/runs: need n >= 1 and runs >= 1, got {n} and {runs}")
    step: Callable[[], object]
    if dtype in ("float32", "float64"):
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
        step = lambda: x @ y  # noqa: E731
    else:
        try:
            import torch
        except ImportError:
            raise InputError(f"dtype: {dtype} needs torch, which is not installed") from None
        tx, ty = (torch.randn(n, n, dtype=getattr(torch, dtype)) for _ in range(2))
        step = lambda: torch.matmul(tx, ty)  # noqa: E731
    return 2 * n**3 / _best_s(step, runs) / 1e12


def local_hardware(size_mb: float = 256, n: int = 2048, runs: int = 3) -> Hardware:
    """This machine as a `Hardware` ("local"), from the probes; bf16 falls back to fp32 without torch."""
    import psutil

    fp32 = probe_matmul_tflops("float32", n, runs)
    try:
        bf16, how = probe_matmul_tflops("bfloat16", n, runs), "torch bf16 matmul"
    except InputError:
        bf16, how = fp32, "no torch: fp32 rate"
    return Hardware(
        name="local",
        memory_bandwidth_gb_s=probe_memory_bandwidth_gb_s(size_mb, runs),
        bf16_tflops=bf16,
        fp32_tflops=fp32,
        memory_gib=psutil.virtual_memory().total / 2**30,
        source="measured by cliffbench.roofline probes",
        note=f"triad {size_mb:g} MB x3 on {_threads()} threads; {n}x{n} matmul; bf16: {how}; best of {runs}; "
        f"load average {os.getloadavg()[0]:.1f} while probing",
    )


class ModelSize(Spec):
    """What the ceilings need of a model. `context_length` bounds one sequence's KV cache."""

    name: str
    n_params: int = Field(gt=0)
    n_layers: int = Field(gt=0)
    n_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    context_length: int | None = Field(None, gt=0)

    @classmethod
    def from_shapes(cls, shapes: ModelShapes, name: str = "prepared") -> ModelSize:
        """The size of a prepared model, from its manifest's shapes."""
        fields = ("n_params", "n_layers", "n_kv_heads", "head_dim", "hidden_size")
        return cls(name=name, context_length=shapes.context_length or None, **{k: getattr(shapes, k) for k in fields})


MODELS: dict[str, ModelSize] = {
    m.name: m
    for m in (
        # exact counts from the published configs (8.03e9 and 1.24e9 as usually quoted)
        ModelSize(
            name="llama-3.1-8b",
            n_params=8_030_261_248,
            n_layers=32,
            n_kv_heads=8,
            head_dim=128,
            hidden_size=4096,
            context_length=131_072,
        ),
        ModelSize(
            name="llama-3.2-1b",
            n_params=1_235_814_400,
            n_layers=16,
            n_kv_heads=8,
            head_dim=64,
            hidden_size=2048,
            context_length=131_072,
        ),
        ModelSize(
            name="smollm2-135m",
            n_params=134_515_008,
            n_layers=30,
            n_kv_heads=3,
            head_dim=64,
            hidden_size=576,
            context_length=8192,
        ),
    )
}


def weight_bytes(model: ModelSize, precision: str) -> float:
    """Bytes of all weights at `precision` (one of BITS_PER_PARAM)."""
    if precision not in BITS_PER_PARAM:
        raise InputError(f"precision: {precision!r} is not one of {', '.join(BITS_PER_PARAM)}")
    return model.n_params * BITS_PER_PARAM[precision] / 8


def kv_bytes_per_token(model: ModelSize, dtype_bytes: int = 2) -> int:
    """KV-cache bytes one token occupies: K and V, every layer, every KV head."""
    return 2 * model.n_layers * model.n_kv_heads * model.head_dim * dtype_bytes


def prefill_ceiling_tok_s(hw: Hardware, model: ModelSize, precision: str = "bf16") -> float:
    """Tokens/s no batch can beat: peak FLOP/s / (2 FLOP x n_params) per token."""
    return hw.compute_tflops(precision) * 1e12 / (2 * model.n_params)


def decode_ceiling_tok_s(
    hw: Hardware, model: ModelSize, precision: str, batch: int = 1, context_tokens: float = 0
) -> float:
    """Output tok/s of `batch` sequences of `context_tokens` each: one step reads the weights and
    every sequence's KV cache (bf16) and yields `batch` tokens; capped by the compute ceiling."""
    if batch < 1 or context_tokens < 0:
        raise InputError(f"batch/context_tokens: need batch >= 1 and context >= 0, got {batch}, {context_tokens}")
    step_bytes = weight_bytes(model, precision) + batch * context_tokens * kv_bytes_per_token(model)
    return min(hw.memory_bandwidth_gb_s * 1e9 / step_bytes * batch, prefill_ceiling_tok_s(hw, model, precision))


def ttft_floor_s(hw: Hardware, model: ModelSize, precision: str, prompt_tokens: float) -> float:
    """Shortest possible time to first token: the prompt's FLOPs at peak, and at least one read of
    every weight."""
    bandwidth_s = weight_bytes(model, precision) / (hw.memory_bandwidth_gb_s * 1e9)
    return max(bandwidth_s, prompt_tokens / prefill_ceiling_tok_s(hw, model, precision))


def kv_capacity_seqs(
    hw: Hardware,
    model: ModelSize,
    precision: str,
    context_tokens: int,
    reserve_fraction: float = 0.1,
    kv_dtype_bytes: int = 2,
) -> int:
    """Sequences of `context_tokens` whose KV cache fits beside the weights, keeping
    `reserve_fraction` of memory for activations and the runtime."""
    if context_tokens < 1 or not 0 <= reserve_fraction < 1:
        raise InputError(f"context_tokens/reserve_fraction: got {context_tokens}, {reserve_fraction}")
    free = hw.memory_gib * 2**30 * (1 - reserve_fraction) - weight_bytes(model, precision)
    return max(0, int(free // (context_tokens * kv_bytes_per_token(model, kv_dtype_bytes))))


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


_Row = TypeVar("_Row", bound=Spec)


def _read_rows(path: Path, cls: type[_Row]) -> list[_Row]:
    if not path.is_file():
        raise InputError(f"{path.name}: file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, want = list(reader.fieldnames or []), list(cls.model_fields)
        if missing := [c for c in want if c not in header]:
            raise InputError(f"{path.name}: missing column(s) {', '.join(missing)}")
        if extra := [c for c in header if c not in want]:
            raise InputError(f"{path.name}: unknown column(s) {', '.join(extra)}")
        rows: list[_Row] = []
        seen: dict[str, int] = {}
        for raw in reader:
            key = raw.get(want[0]) or "?"
            where = f"{path.name} line {reader.line_num} ({want[0]} {key})"
            if None in raw or None in raw.values():
                raise InputError(f"{where}: row: wrong number of fields for the header")
            try:
                row = cls.model_validate(raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                field = str(err["loc"][0]) if err["loc"] else "row"
                msg = str(err["msg"]).replace("Value error, ", "")
                # a `X | Literal["unknown"]` field reports its first branch only: name the other
                if any(e["loc"][:1] == (field,) and "unknown" in str(e["loc"][1:]) for e in exc.errors()):
                    msg += ", or 'unknown'"
                raise InputError(f"{where}: {field}: {msg}") from None
            if key in seen:
                raise InputError(f"{where}: {want[0]}: repeats line {seen[key]}")
            seen[key] = reader.line_num
            rows.append(row)
    return rows


def load_claims(path: str | Path = CLAIMS_CSV) -> pd.DataFrame:
    """claims.csv validated row by row; InputError names the line and the field."""
    claims = _read_rows(Path(path), Claim)
    return pd.DataFrame([c.model_dump() for c in claims], columns=list(Claim.model_fields))


def load_sources(path: str | Path = SOURCES_CSV) -> pd.DataFrame:
    """sources.csv validated row by row."""
    sources = _read_rows(Path(path), Source)
    return pd.DataFrame([s.model_dump() for s in sources], columns=list(Source.model_fields))


# Precision an engine serves when a source does not say (the research note's reading).
_DEFAULT_PRECISION = {
    "vllm": ("bf16", "vLLM serves the checkpoint dtype, bf16 for Llama 3.x"),
    "ollama": ("q4_k_m", "Ollama's default llama3.1:8b tag is Q4_K_M"),
    "llama.cpp": ("q4_k_m", "the usual GGUF, as Ollama's default tag"),
}


def _find_model(name: str) -> ModelSize | None:
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
    hw, m = HARDWARE.get(c.hardware), _find_model(c.model)
    if hw is None or m is None:
        why = [what for what, x in (("hardware", hw), ("model", m)) if x is None]
        return math.nan, f"cannot be checked: {' and '.join(why)} unknown", ""
    notes: list[str] = []
    p: str = c.precision
    if p == "unknown":
        guess = next((v for k, v in _DEFAULT_PRECISION.items() if k in c.engine.lower()), None)
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

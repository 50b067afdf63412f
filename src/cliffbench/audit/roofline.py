"""Physical ceilings of LLM serving, and an audit of published numbers against them.

A decode step reads every weight once, plus the KV cache of every running sequence, so output
tok/s <= bandwidth / bytes per step x batch (the memory roof); every token also costs ~2 FLOP per
parameter plus its attention over the context (4 x layers x hidden x context FLOP), so output tok/s
<= FLOP/s / FLOP per token (the compute roof). The decode ceiling is the lower roof (`decode_roofs`
says which binds); the prefill ceiling counts the 2 FLOP per parameter only. Activations and kernel
efficiency are left out on purpose: the results are upper bounds, so a published number above one
is impossible as stated, while one below it is only possible. One deliberate exception: weights count every
parameter, as usually quoted, though a step reads one row of an untied input-embedding table
(Llama-3.1-8B: 0.53 of 8.03 B params), so an excess under ~x1.07 there is not proof.

`cliffbench.hardware.HARDWARE` holds datasheet numbers and `cliffbench.bench.probes` measures this
machine; `cliffbench.audit.claims` checks published numbers against these ceilings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from cliffbench.config import InputError, Spec
from cliffbench.hardware import Hardware

if TYPE_CHECKING:
    from cliffbench.models.manifest import ModelShapes

__all__ = [
    "BITS_PER_PARAM",
    "MODELS",
    "DecodeRoofs",
    "ModelSize",
    "Precision",
    "decode_ceiling_tok_s",
    "decode_roofs",
    "decode_step_flops",
    "kv_bytes_per_token",
    "kv_capacity_seqs",
    "prefill_ceiling_tok_s",
    "ttft_floor_s",
    "weight_bytes",
]


Precision = Literal["bf16", "fp16", "fp32", "q8_0", "q4_k_m", "q4_1"]
# Average bits per weight over the whole file: GGUF k-quants mix block types (Q4_K_M keeps some
# tensors at Q6_K), so 4.85 is an average; Q8_0 and Q4_1 add one or two fp16 scales per 32 weights.
BITS_PER_PARAM: dict[str, float] = {"bf16": 16, "fp16": 16, "fp32": 32, "q8_0": 8.5, "q4_k_m": 4.85, "q4_1": 5.0}


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


def decode_step_flops(model: ModelSize, batch: int = 1, context_tokens: float = 0) -> float:
    """FLOPs of one decode step of `batch` sequences at `context_tokens` each: per sequence, 2 per
    parameter (the weight matmuls) plus attention's two products over the context, q.K and p.V, of
    2 FLOP x hidden_size (taken as heads x head_dim) per cached token in every layer."""
    return batch * (2 * model.n_params + 2 * 2 * model.n_layers * context_tokens * model.hidden_size)


@dataclass(frozen=True)
class DecodeRoofs:
    """The two decode ceilings of one batch, in output tok/s; `tflops` is the matmul rate the
    compute roof used."""

    memory_tok_s: float
    compute_tok_s: float
    tflops: float

    @property
    def ceiling_tok_s(self) -> float:
        return min(self.memory_tok_s, self.compute_tok_s)

    @property
    def binding(self) -> Literal["memory", "compute"]:
        """The lower roof (memory on a tie)."""
        return "memory" if self.memory_tok_s <= self.compute_tok_s else "compute"


def decode_roofs(
    hw: Hardware,
    model: ModelSize,
    precision: str,
    batch: int = 1,
    context_tokens: float = 0,
    tflops: float | None = None,
) -> DecodeRoofs:
    """Both roofs of `batch` sequences of `context_tokens` each, per step of `batch` tokens:
    memory = bandwidth / (weights + every sequence's bf16 KV cache) x batch; compute = FLOP/s /
    `decode_step_flops` x batch. FLOP/s: `tflops` where given (a rate probed for the precision),
    else the datasheet's `hw.compute_tflops(precision)`."""
    if batch < 1 or context_tokens < 0:
        raise InputError(f"batch/context_tokens: need batch >= 1 and context >= 0, got {batch}, {context_tokens}")
    if tflops is not None and not tflops > 0:
        raise InputError(f"tflops: need a rate > 0, got {tflops}")
    rate = hw.compute_tflops(precision) if tflops is None else tflops
    step_bytes = weight_bytes(model, precision) + batch * context_tokens * kv_bytes_per_token(model)
    return DecodeRoofs(
        memory_tok_s=hw.memory_bandwidth_gb_s * 1e9 / step_bytes * batch,
        compute_tok_s=rate * 1e12 / decode_step_flops(model, batch, context_tokens) * batch,
        tflops=rate,
    )


def decode_ceiling_tok_s(
    hw: Hardware, model: ModelSize, precision: str, batch: int = 1, context_tokens: float = 0
) -> float:
    """Output tok/s of `batch` sequences of `context_tokens` each: the lower of `decode_roofs` at
    the datasheet's compute peak."""
    return decode_roofs(hw, model, precision, batch, context_tokens).ceiling_tok_s


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

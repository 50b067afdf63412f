"""Roofline arithmetic, the published-claims CSVs, the claim audit and the local probes (tiny sizes)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cliffbench.audit.claims import CLAIMS_CSV, Claim, audit_claims, load_claims, load_sources
from cliffbench.audit.roofline import (
    MODELS,
    ModelSize,
    decode_ceiling_tok_s,
    decode_roofs,
    decode_step_flops,
    kv_bytes_per_token,
    kv_capacity_seqs,
    prefill_ceiling_tok_s,
    ttft_floor_s,
    weight_bytes,
)
from cliffbench.bench.probes import local_hardware, probe_matmul_tflops, probe_memory_bandwidth_gb_s
from cliffbench.config import InputError
from cliffbench.hardware import HARDWARE, Hardware
from cliffbench.models.manifest import ModelShapes

A100 = HARDWARE["a100-40gb"]
LLAMA8B = MODELS["llama-3.1-8b"]


def test_single_stream_ceiling_a100_llama8b_bf16() -> None:
    assert decode_ceiling_tok_s(A100, LLAMA8B, "bf16") == pytest.approx(1555e9 / (8.03e9 * 2), rel=1e-3)
    assert decode_ceiling_tok_s(A100, LLAMA8B, "bf16") == pytest.approx(96.8, abs=0.1)


def test_kv_bytes_and_weight_bytes() -> None:
    assert kv_bytes_per_token(LLAMA8B) == 131_072
    assert kv_bytes_per_token(LLAMA8B, dtype_bytes=1) == 65_536
    assert weight_bytes(LLAMA8B, "bf16") == 2 * LLAMA8B.n_params
    assert weight_bytes(LLAMA8B, "q8_0") == pytest.approx(LLAMA8B.n_params * 8.5 / 8)
    assert weight_bytes(LLAMA8B, "q4_k_m") < weight_bytes(LLAMA8B, "q4_1") < weight_bytes(LLAMA8B, "q8_0")
    with pytest.raises(InputError, match="precision"):
        weight_bytes(LLAMA8B, "int3")


def test_batch_ceiling_grows_then_compute_caps() -> None:
    rates = [decode_ceiling_tok_s(A100, LLAMA8B, "bf16", batch=b) for b in (1, 2, 8, 32, 128)]
    assert rates == sorted(rates) and rates[-1] > rates[0] * 50
    cap = prefill_ceiling_tok_s(A100, LLAMA8B)
    assert cap == pytest.approx(312e12 / (2 * LLAMA8B.n_params))
    assert decode_ceiling_tok_s(A100, LLAMA8B, "bf16", batch=100_000) == pytest.approx(cap)
    # KV reads only lower the ceiling
    assert decode_ceiling_tok_s(A100, LLAMA8B, "bf16", 32, 1024) < decode_ceiling_tok_s(A100, LLAMA8B, "bf16", 32)
    with pytest.raises(InputError, match="batch"):
        decode_ceiling_tok_s(A100, LLAMA8B, "bf16", batch=0)


TOY = ModelSize(name="toy", n_params=100_000_000, n_layers=10, n_kv_heads=2, head_dim=64, hidden_size=512)
TOY_CPU = Hardware(
    name="toy-cpu", memory_bandwidth_gb_s=20, bf16_tflops=1.0, fp32_tflops=0.25, memory_gib=16, source="test"
)


def test_decode_roofs_by_hand() -> None:
    # fp32 weights: 1e8 x 4 B = 400,000,000 B; KV per token: 2 x 10 layers x 2 heads x 64 x 2 B = 5,120 B
    assert decode_step_flops(TOY, 1, 100) == 2e8 + 4 * 10 * 100 * 512  # 202,048,000 FLOP per token
    # batch 32 at 100 tokens of context, at a probed 0.25 TFLOP/s:
    #   memory: 20e9 B/s / (400,000,000 + 32 x 100 x 5,120 = 416,384,000 B) x 32 = 1,537.05 tok/s
    #   compute: 0.25e12 / (32 x 202,048,000 = 6,465,536,000 FLOP) x 32 = 1,237.33 tok/s -> compute binds
    roofs = decode_roofs(TOY_CPU, TOY, "fp32", batch=32, context_tokens=100, tflops=0.25)
    assert roofs.memory_tok_s == pytest.approx(20e9 / 416_384_000 * 32)
    assert roofs.memory_tok_s == pytest.approx(1537.05, abs=0.01)
    assert roofs.compute_tok_s == pytest.approx(0.25e12 / 6_465_536_000 * 32)
    assert roofs.compute_tok_s == pytest.approx(1237.33, abs=0.01)
    assert roofs.binding == "compute" and roofs.ceiling_tok_s == roofs.compute_tok_s and roofs.tflops == 0.25
    # batch 1: memory 20e9 / 400,512,000 = 49.94 tok/s against compute 1,237.33 -> memory binds
    one = decode_roofs(TOY_CPU, TOY, "fp32", batch=1, context_tokens=100, tflops=0.25)
    assert one.binding == "memory" and one.ceiling_tok_s == pytest.approx(49.94, abs=0.01)
    assert one.compute_tok_s == pytest.approx(roofs.compute_tok_s)  # per-token FLOPs do not shrink with batch
    # without a probed rate the datasheet's generous peak (max of bf16 and fp32: 1.0) applies: 4,949 tok/s,
    # and memory binds at batch 32 too; decode_ceiling_tok_s is that min
    generous = decode_roofs(TOY_CPU, TOY, "fp32", batch=32, context_tokens=100)
    assert generous.tflops == 1.0 and generous.binding == "memory"
    assert decode_ceiling_tok_s(TOY_CPU, TOY, "fp32", 32, 100) == pytest.approx(generous.memory_tok_s)
    with pytest.raises(InputError, match="tflops"):
        decode_roofs(TOY_CPU, TOY, "fp32", tflops=0)


def test_ttft_floor_and_kv_capacity() -> None:
    # one read of the bf16 weights: 16.06 GB / 1555 GB/s
    assert ttft_floor_s(A100, LLAMA8B, "bf16", 1) == pytest.approx(2 * LLAMA8B.n_params / 1555e9)
    assert ttft_floor_s(A100, LLAMA8B, "bf16", 4096) == pytest.approx(4096 / prefill_ceiling_tok_s(A100, LLAMA8B))
    seqs = kv_capacity_seqs(A100, LLAMA8B, "bf16", context_tokens=4096)
    free = 40 * 2**30 * 0.9 - 2 * LLAMA8B.n_params
    assert seqs == int(free // (4096 * 131_072))
    assert kv_capacity_seqs(HARDWARE["l4"], MODELS["llama-3.1-8b"], "fp32", 4096) == 0


def test_model_size_from_shapes() -> None:
    shapes = ModelShapes(
        architecture="llama",
        n_layers=30,
        hidden_size=576,
        n_heads=9,
        n_kv_heads=3,
        head_dim=64,
        ffn_size=1536,
        vocab_size=49152,
        context_length=8192,
        n_params=134_515_008,
    )
    assert ModelSize.from_shapes(shapes, name="smollm2-135m") == MODELS["smollm2-135m"]


def test_claims_csv_schema_and_sources() -> None:
    claims = load_claims()
    sources = load_sources()
    assert len(claims) >= 15 and claims["claim_id"].is_unique
    assert set(claims["source_id"]) <= set(sources["source_id"])
    with CLAIMS_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            Claim.model_validate(row)


def test_seed_single_user_throughput_exceeds_ceiling() -> None:
    audit = audit_claims(load_claims()).set_index("claim_id")
    for claim_id in ("cplt-c1-ollama-tps", "cplt-c1-vllm-tps"):
        assert audit.loc[claim_id, "value"] in (420, 510)
        assert str(audit.loc[claim_id, "verdict"]).startswith("exceeds ceiling by x")
    assert audit.loc["cplt-c1-vllm-tps", "ceiling_tok_s"] == pytest.approx(96.8, abs=0.1)
    assert "1555 GB/s / 16.06 GB per token = 96.8 tok/s" in str(audit.loc["cplt-c1-vllm-tps", "arithmetic"])
    assert audit.loc["mus-vllm-c1-tps", "verdict"] == "within ceiling"
    assert audit.loc["cplt-c32-vllm-tps", "verdict"] == "cannot be checked: lengths unknown"
    assert str(audit.loc["sph-vllm-tps", "verdict"]).startswith("cannot be checked: hardware")
    assert audit["verdict"].str.match(r"^(within ceiling|exceeds ceiling by x[\d.]+|cannot be checked: .+)$").all()


def _row(**change: str) -> dict[str, str]:
    row = {
        "claim_id": "t1",
        "source_id": "S",
        "engine": "vllm",
        "hardware": "a100-40gb",
        "model": "llama-3.1-8b",
        "precision": "bf16",
        "concurrency": "1",
        "metric": "ttft_s",
        "value": "20",
        "unit": "ms",
        "prompt_tokens": "100",
        "output_tokens": "unknown",
        "notes": "",
    }
    return row | change


def _write(tmp_path: Path, *rows: dict[str, str]) -> Path:
    path = tmp_path / "claims.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"unit": "tok/min"}, "line 2 (claim_id t1): unit:"),
        ({"unit": "tok/s"}, "unit: unit 'tok/s' does not fit metric 'ttft_s'"),
        ({"hardware": "a100-41gb"}, "hardware: unknown hardware 'a100-41gb'"),
        ({"concurrency": "many"}, "concurrency:"),
        ({"metric": "tps"}, "metric:"),
    ],
)
def test_bad_claim_row_one_line(tmp_path: Path, change: dict[str, str], needle: str) -> None:
    with pytest.raises(InputError) as exc:
        load_claims(_write(tmp_path, _row(**change)))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_bad_claims_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="repeats line 2"):
        load_claims(_write(tmp_path, _row(), _row()))
    with pytest.raises(InputError, match="unknown column"):
        load_claims(_write(tmp_path, _row() | {"extra": "1"}))
    with pytest.raises(InputError, match="file not found"):
        load_claims(tmp_path / "none.csv")
    frame = load_claims()
    frame.loc[0, "unit"] = "tok/min"  # a frame edited by hand is validated again
    with pytest.raises(InputError, match=r"claims row 0 \(cplt-c1-ollama-tps\)\.unit"):
        audit_claims(frame)


def test_audit_known_lengths(tmp_path: Path) -> None:
    rows = [
        _row(claim_id="fast-ttft", value="5"),  # below one read of the weights (10.3 ms)
        _row(claim_id="ok-ttft", value="20"),
        _row(
            claim_id="batch",
            metric="output_tok_s_total",
            unit="tok/s",
            value="2000",
            concurrency="32",
            prompt_tokens="1024",
            output_tokens="128",
        ),
        _row(claim_id="itl", metric="itl_s_p99", unit="ms", value="5", concurrency="1", output_tokens="100"),
        _row(claim_id="nohw", hardware="unknown"),
    ]
    audit = audit_claims(load_claims(_write(tmp_path, *rows))).set_index("claim_id")
    assert audit.loc["fast-ttft", "verdict"] == "exceeds ceiling by x2.1"
    assert audit.loc["ok-ttft", "verdict"] == "within ceiling"
    assert audit.loc["batch", "verdict"] == "within ceiling"  # ceiling ~2,400 at 32 x 1088 tokens
    assert audit.loc["batch", "ceiling_tok_s"] == pytest.approx(
        decode_ceiling_tok_s(A100, LLAMA8B, "bf16", 32, 1024 + 64)
    )
    assert str(audit.loc["itl", "verdict"]).startswith("exceeds ceiling")  # 200 tok/s per user > 97
    assert audit.loc["nohw", "verdict"] == "cannot be checked: hardware unknown"


@pytest.mark.slow  # runs the probes (and imports torch for the bf16 matmul)
def test_probes_positive_on_tiny_sizes() -> None:
    assert probe_memory_bandwidth_gb_s(size_mb=8, runs=1) > 0
    assert probe_matmul_tflops("float32", n=256, runs=1) > 0
    assert probe_matmul_tflops("int8", n=64, runs=1, budget_s=0.5) > 0  # torch._int_mm on this CPU
    with pytest.raises(InputError, match="dtype"):
        probe_matmul_tflops("int4", n=256, runs=1)
    hw = local_hardware(size_mb=8, n=256, runs=1)
    assert hw.name == "local" and hw.memory_bandwidth_gb_s > 0 and hw.bf16_tflops > 0 and hw.memory_gib > 0

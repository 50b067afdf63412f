"""Model-scale presets: Llama-3.2-1B and Llama-3.1-8B shapes with synthetic weights.

Serving cost depends on shapes, not on what the weights say, so a preset lets anyone reproduce the
published 8B setup (or a 1B one on a CPU) without downloading weights. vLLM gets a Hugging Face
folder with a generated `config.json` and no weights (it loads with `load_format="dummy"`);
llama.cpp gets GGUF files of the same shapes (F16 and Q4_1) filled with seeded random numbers.
The bundled SmolLM2 tokenizer supplies the vocabulary: its 49,152 tokens keep their ids and the
rest of Llama 3's 128,256 rows get placeholder tokens, so the embedding and output matrices have
their real size (at 1B they are a fifth of the parameters). Output is nonsense; cost is real.

Left out on purpose: llama.cpp's `rope_freqs` (Llama 3 RoPE scaling) tensor, which only changes
positions beyond 8k tokens and costs nothing measurable.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from cliffbench.config import MODELS_DIR, InputError
from cliffbench.files import atomic_dir, remove_stale

from .bundled import Progress, prepare_model
from .manifest import (
    DEFAULT_MODEL,
    MANIFEST_NAME,
    FileEntry,
    ModelManifest,
    ModelShapes,
    file_entry,
    forget_verified,
    mark_verified,
    model_dir,
    verify_model,
)

if TYPE_CHECKING:
    import gguf

__all__ = ["PRESETS", "SyntheticPreset", "estimate_bytes", "prepare_synthetic", "preset_shapes"]

_INIT_STD = 0.02  # the usual initialiser scale: activations stay finite through every layer
_PAD = "<|cliffbench_pad_{}|>"


class SyntheticPreset(BaseModel):
    """A published model's architecture (from its config.json)."""

    model_config = ConfigDict(frozen=True)

    name: str
    based_on: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int
    rope_scaling: dict[str, Any]

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def n_params(self) -> int:
        h, kv = self.hidden_size, self.num_key_value_heads * self.head_dim
        per_layer = 2 * h + 2 * h * h + 2 * h * kv + 3 * h * self.intermediate_size
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return embed + h + self.num_hidden_layers * per_layer


_LLAMA3_ROPE = {"high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}
PRESETS: dict[str, SyntheticPreset] = {
    p.name: p
    for p in (
        SyntheticPreset(
            name="llama-3.2-1b",
            based_on="https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json",
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            tie_word_embeddings=True,
            rope_theta=500000.0,
            rms_norm_eps=1e-5,
            max_position_embeddings=131072,
            rope_scaling={"factor": 32.0, **_LLAMA3_ROPE, "rope_type": "llama3"},
        ),
        SyntheticPreset(
            name="llama-3.1-8b",
            based_on="https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json",
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            tie_word_embeddings=False,
            rope_theta=500000.0,
            rms_norm_eps=1e-5,
            max_position_embeddings=131072,
            rope_scaling={"factor": 8.0, **_LLAMA3_ROPE, "rope_type": "llama3"},
        ),
    )
}

# GGUF variants a preset writes, with the names of llama.cpp's tensor type for 2-D weights and of the
# file type (names, not gguf's enums: gguf is imported where it is used, as in gguf_io)
_VARIANTS: dict[str, tuple[str, str]] = {"f16": ("F16", "MOSTLY_F16"), "q4_1": ("Q4_1", "MOSTLY_Q4_1")}


def _variant_types(variant: str) -> tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]:
    import gguf

    qtype, ftype = _VARIANTS[variant]
    return gguf.GGMLQuantizationType[qtype], gguf.LlamaFileType[ftype]


def _preset(name: str) -> SyntheticPreset:
    if name not in PRESETS:
        raise InputError(f"--preset: unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_shapes(name: str) -> ModelShapes:
    """The shapes of a preset, without preparing anything (for estimates and dry runs)."""
    p = _preset(name)
    return ModelShapes(
        architecture="llama",
        n_layers=p.num_hidden_layers,
        hidden_size=p.hidden_size,
        n_heads=p.num_attention_heads,
        n_kv_heads=p.num_key_value_heads,
        head_dim=p.head_dim,
        ffn_size=p.intermediate_size,
        vocab_size=p.vocab_size,
        context_length=p.max_position_embeddings,
        n_params=p.n_params(),
    )


def _tensors(p: SyntheticPreset) -> Iterator[tuple[str, tuple[int, ...]]]:
    """llama.cpp tensor names and numpy shapes (rows = output features), in file order."""
    h, kv, ffn = p.hidden_size, p.num_key_value_heads * p.head_dim, p.intermediate_size
    yield "token_embd.weight", (p.vocab_size, h)
    for i in range(p.num_hidden_layers):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", (h,)
        yield b + "attn_q.weight", (h, h)
        yield b + "attn_k.weight", (kv, h)
        yield b + "attn_v.weight", (kv, h)
        yield b + "attn_output.weight", (h, h)
        yield b + "ffn_norm.weight", (h,)
        yield b + "ffn_gate.weight", (ffn, h)
        yield b + "ffn_up.weight", (ffn, h)
        yield b + "ffn_down.weight", (h, ffn)
    yield "output_norm.weight", (h,)
    if not p.tie_word_embeddings:
        yield "output.weight", (p.vocab_size, h)


def estimate_bytes(name: str, variants: tuple[str, ...] = ("f16", "q4_1")) -> int:
    """Disk bytes the GGUF files of a preset take (the HF folder holds no weights)."""
    import gguf

    total = 0
    for name_, shape in _tensors(_preset(name)):
        n = int(np.prod(shape))
        for v in variants:
            qtype = _variant_types(v)[0] if len(shape) == 2 else gguf.GGMLQuantizationType.F32
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            total += n // block * size
        del name_
    return total


def _weights(index: int, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 1:  # RMSNorm gains: ones, as a trained model's are near 1
        return np.ones(shape, dtype=np.float32)
    rng = np.random.default_rng(index)  # one seed per tensor: files are reproducible byte for byte
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= _INIT_STD
    return out


def _padded_tokens(smol: gguf.GGUFReader, vocab: int) -> tuple[list[str], list[int]]:
    import gguf

    tokens_f = smol.get_field(gguf.Keys.Tokenizer.LIST)
    types_f = smol.get_field(gguf.Keys.Tokenizer.TOKEN_TYPE)
    if tokens_f is None or types_f is None:
        raise InputError(f"model: the {DEFAULT_MODEL} GGUF lacks a vocabulary; run 'cliffbench prepare-model --force'")
    tokens, types = list(tokens_f.contents()), [int(t) for t in types_f.contents()]
    n = len(tokens)
    tokens += [_PAD.format(i) for i in range(n, vocab)]
    types += [int(gguf.TokenType.USER_DEFINED)] * (vocab - n)
    return tokens, types


def _write_gguf(p: SyntheticPreset, smol_path: Path, dst: Path, variant: str, say: Progress) -> None:
    import gguf

    qtype, ftype = _variant_types(variant)
    smol = gguf.GGUFReader(smol_path, "r")
    w = gguf.GGUFWriter(dst, arch="llama")
    w.add_name(f"{p.name} (synthetic weights, cliffbench)")
    w.add_file_type(int(ftype))
    w.add_context_length(p.max_position_embeddings)
    w.add_embedding_length(p.hidden_size)
    w.add_block_count(p.num_hidden_layers)
    w.add_feed_forward_length(p.intermediate_size)
    w.add_head_count(p.num_attention_heads)
    w.add_head_count_kv(p.num_key_value_heads)
    w.add_rope_dimension_count(p.head_dim)
    w.add_rope_freq_base(p.rope_theta)
    w.add_layer_norm_rms_eps(p.rms_norm_eps)
    w.add_vocab_size(p.vocab_size)
    for kv in smol.fields.values():
        # the tokenizer travels verbatim except the two arrays that grow to the preset's vocabulary
        if not kv.name.startswith("tokenizer.") or kv.name in (
            gguf.Keys.Tokenizer.LIST,
            gguf.Keys.Tokenizer.TOKEN_TYPE,
        ):
            continue
        vt = kv.types[0]
        w.add_key_value(kv.name, kv.contents(), vt, sub_type=kv.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
    tokens, types = _padded_tokens(smol, p.vocab_size)
    w.add_token_list(tokens)
    w.add_token_types(types)

    specs = list(_tensors(p))
    for name, shape in specs:
        t = qtype if len(shape) == 2 else gguf.GGMLQuantizationType.F32
        if t == gguf.GGMLQuantizationType.F32:
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4, t)
        elif t == gguf.GGMLQuantizationType.F16:
            w.add_tensor_info(name, shape, np.dtype(np.float16), int(np.prod(shape)) * 2, t)
        else:
            byte_shape = gguf.quant_shape_to_byte_shape(shape, t)
            w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    t0 = time.perf_counter()
    for i, (name, shape) in enumerate(specs):
        data = _weights(i, shape)
        if len(shape) == 2:
            data = gguf.quants.quantize(data, qtype)
        w.write_tensor_data(np.ascontiguousarray(data))
        if i % 40 == 0 or i == len(specs) - 1:
            say(f"  {variant}: tensor {i + 1}/{len(specs)} ({name}) [{time.perf_counter() - t0:.0f} s]")
    w.close()


def _write_hf(p: SyntheticPreset, smol_hf: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "torch_dtype": "bfloat16",
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "head_dim": p.head_dim,
        "initializer_range": _INIT_STD,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "_cliffbench": f"synthetic weights: load with load_format='dummy'; shapes of {p.based_on}",
        # without it, transformers suspects a Mistral tokenizer and warns on every load
        "transformers_version": metadata.version("transformers"),
        **p.model_dump(exclude={"name", "based_on"}),
    }
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tok = json.loads((smol_hf / "tokenizer.json").read_text())
    vocab: dict[str, int] = tok["model"]["vocab"]
    n = max(vocab.values()) + 1
    for i in range(n, p.vocab_size):  # the same placeholders as the GGUF, so both engines agree
        vocab[_PAD.format(i)] = i
    (dst / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    for extra in ("tokenizer_config.json", "chat_template.jinja"):
        if (smol_hf / extra).is_file():
            shutil.copy2(smol_hf / extra, dst / extra)


def prepare_synthetic(
    name: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
    models_dir: Path | None = None,
    variants: tuple[str, ...] = ("f16", "q4_1"),
) -> ModelManifest:
    """Prepare `data/models/<preset>/`: an HF folder without weights and GGUF files of `variants`.

    Idempotent like `prepare_model`; needs the bundled model (its tokenizer), which it prepares.
    Checks free disk space first: the 8B preset's two GGUF files take about 21 GB.
    """
    p = _preset(name)
    for v in variants:
        if v not in _VARIANTS:
            raise InputError(f"variants: unknown GGUF variant {v!r}; allowed: {', '.join(_VARIANTS)}")
    say = progress or (lambda _s: None)
    root = (models_dir or MODELS_DIR).resolve()
    final = model_dir(name, root)
    remove_stale(root, name)
    if not force and (final / MANIFEST_NAME).exists():
        try:
            manifest = verify_model(name, models_dir=root)
        except InputError as exc:
            say(f"{exc}; preparing again")
        else:
            missing = [v for v in variants if f"gguf/model-{v}.gguf" not in manifest.files]
            if not missing:
                say(f"{name}: already prepared, every sha256 matches")
                return manifest
            say(f"{name}: preparing again to add {', '.join(missing)}")
    smol = prepare_model(DEFAULT_MODEL, models_dir=root, progress=say)
    need = estimate_bytes(name, variants)
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if need * 1.05 > free:
        raise InputError(f"--preset: {name} needs {need / 1e9:.1f} GB on disk, {free / 1e9:.1f} GB free under {root}")
    forget_verified(final)
    t0 = time.perf_counter()
    with atomic_dir(final) as tmp:
        (tmp / "gguf").mkdir()
        _write_hf(p, smol.hf_dir, tmp / "hf")
        for v in variants:
            say(f"{name}: writing synthetic {v.upper()} GGUF ({p.n_params() / 1e9:.2f} B params)")
            _write_gguf(p, smol.gguf_path("q4_1"), tmp / "gguf" / f"model-{v}.gguf", v, say)
        say(f"{name}: hashing files [{time.perf_counter() - t0:.0f} s]")
        files: dict[str, FileEntry] = {
            f.relative_to(tmp).as_posix(): file_entry(f) for f in sorted(tmp.rglob("*")) if f.is_file()
        }
        manifest = ModelManifest(
            name=name,
            source=f"synthetic: shapes of {p.based_on}, seeded random weights, {DEFAULT_MODEL} vocabulary",
            created_at=datetime.now(UTC),
            files=files,
            shapes=preset_shapes(name),
            versions={"gguf": metadata.version("gguf")},
            synthetic=True,
        )
        (tmp / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    say(f"{name}: prepared in {final} [{time.perf_counter() - t0:.0f} s]")
    return mark_verified(manifest.bind(final))

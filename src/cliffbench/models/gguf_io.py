"""GGUF helpers: read model shapes and the chat template, and write a dequantised F32 copy.

The F32 copy gives llama.cpp the same weights precision as the fp32 Hugging Face export that vLLM
serves, so engine comparisons are not confounded by quantisation. The copy follows the approach of
gguf's own `gguf_new_metadata.py` script: copy every key/value with its declared types, declare all
tensor infos, then stream the tensor data one tensor at a time (peak memory: one tensor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np

__all__ = ["gguf_chat_template", "gguf_fields", "gguf_shape_fields", "write_f32_gguf"]


def gguf_fields(path: Path, keys: list[str] | None = None) -> dict[str, Any]:
    """Key/value metadata of a GGUF file (all keys, or only `keys`), as Python values."""
    reader = gguf.GGUFReader(path, "r")
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if keys is None or name in keys:
            out[name] = field.contents()
    return out


def gguf_chat_template(path: Path) -> str | None:
    """The chat template stored in a GGUF file, if any."""
    value = gguf_fields(path, [gguf.Keys.Tokenizer.CHAT_TEMPLATE]).get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    return value if isinstance(value, str) else None


def gguf_shape_fields(path: Path) -> dict[str, Any]:
    """The architecture hyper-parameters of a GGUF file, in ModelShapes' field names.

    `n_params` counts elements of every tensor; a tied output layer has no tensor of its own, so it
    matches a Hugging Face state dict without `lm_head.weight`.
    """
    reader = gguf.GGUFReader(path, "r")

    def get(key: str) -> Any:
        field = reader.get_field(key)
        return field.contents() if field is not None else None

    arch = get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str):
        raise ValueError(f"{path}: GGUF metadata lacks general.architecture")

    def arch_int(key: str) -> int | None:
        value = get(f"{arch}.{key}")
        return int(value) if value is not None else None

    n_layers = arch_int("block_count")
    hidden = arch_int("embedding_length")
    n_heads = arch_int("attention.head_count")
    if n_layers is None or hidden is None or n_heads is None:
        raise ValueError(f"{path}: GGUF metadata lacks {arch}.block_count/embedding_length/head_count")
    n_kv_heads = arch_int("attention.head_count_kv") or n_heads
    # key_length is only written when the head size is not hidden / heads (e.g. Gemma).
    head_dim = arch_int("attention.key_length") or hidden // n_heads
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    vocab = arch_int("vocab_size") or (len(tokens.data) if tokens is not None else 0)
    return {
        "architecture": arch,
        "n_layers": n_layers,
        "hidden_size": hidden,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "head_dim": head_dim,
        "ffn_size": arch_int("feed_forward_length") or 0,
        "vocab_size": vocab,
        "context_length": arch_int("context_length") or 0,
        "n_params": sum(int(t.n_elements) for t in reader.tensors),
    }


def _numpy_shape(tensor: gguf.ReaderTensor) -> tuple[int, ...]:
    # GGUF lists dimensions fastest-first (ne0 = row length); numpy wants them slowest-first.
    return tuple(int(d) for d in reversed(tensor.shape.tolist()))


def write_f32_gguf(src: Path, dst: Path) -> int:
    """Copy `src` to `dst` with every quantised/half tensor dequantised to F32.

    Metadata is copied verbatim except `general.file_type`, which is set to ALL_F32 so tools do not
    report the source quantisation. Returns the number of tensors converted.
    """
    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch is None:
        raise ValueError(f"{src}: GGUF metadata lacks general.architecture")
    writer = gguf.GGUFWriter(dst, arch=str(arch.contents()), endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = int(alignment.contents())

    for field in reader.fields.values():
        # GGUF.* are virtual (header) fields; the writer adds general.architecture itself.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.ALL_F32)
        writer.add_key_value(field.name, value, val_type, sub_type=sub_type)

    keep = (gguf.GGMLQuantizationType.F32,)
    converted = 0
    for tensor in reader.tensors:
        shape = _numpy_shape(tensor)
        nbytes = int(np.prod(shape, dtype=np.int64)) * 4
        writer.add_tensor_info(
            tensor.name, shape, np.dtype(np.float32), nbytes, gguf.GGMLQuantizationType.F32
        )

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        shape = _numpy_shape(tensor)
        if tensor.tensor_type in keep:
            data = np.asarray(tensor.data, dtype=np.float32).reshape(shape)
        else:
            data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
            data = data.reshape(shape)
            converted += 1
        # Both branches yield native-order float32; the writer swaps if the file is big-endian.
        writer.write_tensor_data(np.ascontiguousarray(data))
    writer.close()
    return converted

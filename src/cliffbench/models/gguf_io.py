"""GGUF helpers: read model shapes and the chat template, and write a dequantised F32 copy.

The F32 copy gives llama.cpp the same weights precision as the fp32 Hugging Face export that vLLM
serves, so engine comparisons are not confounded by quantisation. The copy follows the approach of
gguf's own `gguf_new_metadata.py` script: copy every key/value with its declared types, declare all
tensor infos, then stream the tensor data one tensor at a time (peak memory: one tensor).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import gguf

__all__ = ["GgufHeader", "gguf_chat_template", "gguf_shape_fields", "read_gguf_header", "write_f32_gguf"]

# gguf is imported where it is used, not here: the package's own import pulls in mistral_common and
# jsonschema (about 3 s of CPU), which every `cliffbench` start and test session paid for nothing.


@cache
def _scalar_formats() -> dict[gguf.GGUFValueType, str]:
    """struct formats of GGUF's scalar value types (little-endian; big-endian files are not supported)."""
    import gguf

    t = gguf.GGUFValueType
    return {
        t.UINT8: "<B",
        t.INT8: "<b",
        t.UINT16: "<H",
        t.INT16: "<h",
        t.UINT32: "<I",
        t.INT32: "<i",
        t.FLOAT32: "<f",
        t.BOOL: "<?",
        t.UINT64: "<Q",
        t.INT64: "<q",
        t.FLOAT64: "<d",
    }


@dataclass
class GgufHeader:
    """Scalars and strings of a GGUF header; arrays only by length (the vocabulary is ~100k
    strings: gguf.GGUFReader takes seconds to index them, this scan takes milliseconds)."""

    values: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    small_arrays: dict[str, list[Any]] = field(default_factory=dict)
    tensor_elements: list[int] = field(default_factory=list)


def read_gguf_header(path: Path) -> GgufHeader:
    """Scan the key/values and tensor infos of a GGUF file (v2/v3) without touching tensor data."""
    import gguf

    scalar = _scalar_formats()
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos = 0

        def unpack(fmt: str) -> Any:
            nonlocal pos
            (value,) = struct.unpack_from(fmt, buf, pos)
            pos += struct.calcsize(fmt)
            return value

        def string() -> str:
            nonlocal pos
            n = unpack("<Q")
            pos += n
            return bytes(buf[pos - n : pos]).decode("utf-8", errors="replace")

        if buf[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file (bad magic)")
        pos = 4
        version = unpack("<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: unsupported GGUF version {version}")
        n_tensors, n_kv = unpack("<Q"), unpack("<Q")
        header = GgufHeader()
        for _ in range(n_kv):
            key = string()
            vtype = gguf.GGUFValueType(unpack("<I"))
            if vtype == gguf.GGUFValueType.STRING:
                header.values[key] = string()
            elif vtype != gguf.GGUFValueType.ARRAY:
                header.values[key] = unpack(scalar[vtype])
            else:
                sub = gguf.GGUFValueType(unpack("<I"))
                n = unpack("<Q")
                header.array_lengths[key] = n
                if sub == gguf.GGUFValueType.STRING:
                    for _ in range(n):
                        pos += 8 + struct.unpack_from("<Q", buf, pos)[0]
                elif sub in scalar:
                    fmt = scalar[sub]
                    if n <= 1024:  # per-layer hyper-parameters; skip token-sized arrays
                        header.small_arrays[key] = list(struct.unpack_from(f"<{n}{fmt[1]}", buf, pos))
                    pos += n * struct.calcsize(fmt)
                else:
                    raise ValueError(f"{path}: nested GGUF arrays are not supported ({key})")
        for _ in range(n_tensors):
            string()
            n_dims = unpack("<I")
            dims = struct.unpack_from(f"<{n_dims}Q", buf, pos)
            pos += 8 * n_dims + 4 + 8  # dims, then the type and the data offset
            header.tensor_elements.append(int(np.prod(dims, dtype=np.int64)))
        return header


def gguf_chat_template(path: Path) -> str | None:
    """The chat template stored in a GGUF file, if any."""
    import gguf

    value = read_gguf_header(path).values.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    return value if isinstance(value, str) else None


def gguf_shape_fields(path: Path) -> dict[str, Any]:
    """The architecture hyper-parameters of a GGUF file, in ModelShapes' field names.

    `n_params` counts elements of every tensor; a tied output layer has no tensor of its own, so it
    matches a Hugging Face state dict without `lm_head.weight`.
    """
    import gguf

    header = read_gguf_header(path)
    arch = header.values.get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str):
        raise ValueError(f"{path}: GGUF metadata lacks general.architecture")

    def arch_int(key: str) -> int | None:
        name = f"{arch}.{key}"
        if name in header.small_arrays:  # per-layer values (e.g. OpenELM): the largest bounds memory
            return int(max(header.small_arrays[name], default=0)) or None
        value = header.values.get(name)
        return int(value) if value is not None else None

    n_layers = arch_int("block_count")
    hidden = arch_int("embedding_length")
    n_heads = arch_int("attention.head_count")
    if n_layers is None or hidden is None or n_heads is None:
        raise ValueError(f"{path}: GGUF metadata lacks {arch}.block_count/embedding_length/head_count")
    n_kv_heads = arch_int("attention.head_count_kv") or n_heads
    # key_length is only written when the head size is not hidden / heads (e.g. Gemma).
    head_dim = arch_int("attention.key_length") or hidden // n_heads
    vocab = arch_int("vocab_size") or header.array_lengths.get(gguf.Keys.Tokenizer.LIST, 0)
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
        "n_params": sum(header.tensor_elements),
    }


def _numpy_shape(tensor: gguf.ReaderTensor) -> tuple[int, ...]:
    # GGUF lists dimensions fastest-first (ne0 = row length); numpy wants them slowest-first.
    return tuple(int(d) for d in reversed(tensor.shape.tolist()))


def write_f32_gguf(src: Path, dst: Path) -> int:
    """Copy `src` to `dst` with every quantised/half tensor dequantised to F32.

    Metadata is copied verbatim except `general.file_type`, which is set to ALL_F32 so tools do not
    report the source quantisation. Returns the number of tensors converted.
    """
    import gguf

    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch is None:
        raise ValueError(f"{src}: GGUF metadata lacks general.architecture")
    writer = gguf.GGUFWriter(dst, arch=str(arch.contents()), endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = int(alignment.contents())

    for kv in reader.fields.values():
        # GGUF.* are virtual (header) fields; the writer adds general.architecture itself.
        if kv.name == gguf.Keys.General.ARCHITECTURE or kv.name.startswith("GGUF."):
            continue
        val_type = kv.types[0]
        sub_type = kv.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        value = kv.contents()
        if kv.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.ALL_F32)
        writer.add_key_value(kv.name, value, val_type, sub_type=sub_type)

    keep = (gguf.GGMLQuantizationType.F32,)
    converted = 0
    for tensor in reader.tensors:
        shape = _numpy_shape(tensor)
        nbytes = int(np.prod(shape, dtype=np.int64)) * 4
        writer.add_tensor_info(tensor.name, shape, np.dtype(np.float32), nbytes, gguf.GGMLQuantizationType.F32)

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

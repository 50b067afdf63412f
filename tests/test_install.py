"""The installed environment: vLLM imports beside the CPU torch, the tokenizer loads offline."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

import pytest


@pytest.mark.slow  # a fresh interpreter importing vLLM and torch: seconds
def test_import_vllm_in_fresh_interpreter() -> None:
    # a fresh process: transformers imports torchvision/torchaudio whenever they are installed
    code = "import vllm, torch; print(vllm.__version__, torch.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == "0.32.0"


def test_cuda_side_packages_removed() -> None:
    for name in ("torchvision", "torchaudio", "torchcodec"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed and breaks `import vllm`"


def test_tokenizer_loads_from_prepared_folder(model: Any) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model.hf_dir))
    ids = tok.encode("The capital of France is", add_special_tokens=False)
    assert tok.decode(ids) == "The capital of France is"
    assert tok.chat_template and "<|im_start|>" in tok.chat_template

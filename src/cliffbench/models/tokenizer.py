"""Tokenizers: a model's own (Hugging Face folder) and a fake one that needs no files.

Workloads are built in token ids, so prompts are exact; the fake tokenizer (one token per
character) lets the fast test tier build the same workloads without a prepared model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from cliffbench.config import InputError
from cliffbench.models.resolve import resolve_model
from cliffbench.models.spec import ModelSpec

__all__ = ["CharTokenizer", "HfTokenizer", "Tokenizer", "model_tokenizer"]


class Tokenizer(Protocol):
    """The two calls a workload needs; a Hugging Face tokenizer satisfies it."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class HfTokenizer:
    """A prepared model's Hugging Face tokenizer, without special tokens."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(str(path))
        self._tok.model_max_length = 1 << 30  # the corpus is tokenized whole, once; no model sees it

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids)))


class CharTokenizer:
    """One token per character: deterministic, lossless, and needs no files (study `tokenizer: fake`)."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(i) for i in ids)


def model_tokenizer(models: Iterable[ModelSpec]) -> HfTokenizer:
    """The Hugging Face tokenizer of the first model that has a folder for one."""
    for m in models:
        hf_dir, _, _ = resolve_model(m)
        if hf_dir is not None:
            return HfTokenizer(hf_dir)
    raise InputError("engines: no engine has a Hugging Face folder to take the tokenizer from")

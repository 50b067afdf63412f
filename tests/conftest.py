"""Shared fixtures: the prepared bundled model, its tokenizer, and one vLLM engine per session."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from cliffbench.config import StudySpec, VllmSpec


@pytest.fixture(scope="session")
def model() -> Any:
    from cliffbench.models import prepare_model

    return prepare_model()


@pytest.fixture(scope="session")
def tokenizer(model: Any) -> Any:
    from cliffbench.sweep import load_tokenizer

    return load_tokenizer(StudySpec(name="t", engines=[{"kind": "llamacpp-serial"}]))


@pytest.fixture(scope="session")
def prompts(tokenizer: Any) -> list[list[int]]:
    texts = [
        "The capital of France is",
        "Once upon a time, in a small village by the sea,",
        "The three primary colours are",
        "To make a cup of tea, first",
    ]
    return [tokenizer.encode(t) for t in texts]


VLLM_TEST_SPEC = VllmSpec(dtype="float32", max_model_len=512, kv_cache_gib=0.5, max_num_seqs=32)


@pytest.fixture(scope="session")
def vllm_session(model: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """The one vLLM start of the test session, on a loop of its own that tests drive."""
    from cliffbench.engines import make_engine

    loop = asyncio.new_event_loop()
    engine = make_engine(VLLM_TEST_SPEC)
    loop.run_until_complete(engine.start())
    try:
        yield loop, engine
    finally:
        loop.run_until_complete(engine.stop())
        loop.close()


def deliverable_sigint() -> None:
    """`preexec_fn` for a CLI the test will Ctrl-C: a shell's background job (`cmd &` without job
    control, e.g. CI wrappers) ignores SIGINT, the child inherits that, and Python then installs
    no KeyboardInterrupt handler; the SIGINT under test would be dropped and the CLI never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

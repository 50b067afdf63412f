"""Shared fixtures: the prepared bundled model, its tokenizer, and one vLLM engine per session."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cliffbench.bench.study import StudySpec
from cliffbench.engines.specs import VllmSpec


@pytest.fixture(scope="session")
def model() -> Any:
    from cliffbench.models import prepare_model

    return prepare_model()


@pytest.fixture(scope="session")
def tokenizer(model: Any) -> Any:
    from cliffbench.bench.plan import study_tokenizer

    return study_tokenizer(StudySpec(name="t", engines=[{"kind": "llamacpp-serial"}]))


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


def engine_on_own_loop(spec: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """Body of a fixture that starts one engine on a loop of its own, which tests drive, and
    stops it (and closes the loop) at teardown."""
    from cliffbench.engines import make_engine

    loop = asyncio.new_event_loop()
    engine = make_engine(spec)
    loop.run_until_complete(engine.start())
    try:
        yield loop, engine
    finally:
        loop.run_until_complete(engine.stop())
        loop.close()


@pytest.fixture(scope="session")
def vllm_session(model: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """The one vLLM start of the test session."""
    yield from engine_on_own_loop(VLLM_TEST_SPEC)


def _deliverable_sigint() -> None:
    # A shell's background job (`cmd &` without job control, e.g. CI wrappers) ignores SIGINT; the
    # child inherits that and Python then installs no KeyboardInterrupt handler, so a Ctrl-C under
    # test would be dropped and the CLI never stop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m cliffbench.cli ARGS` in the background, stdout and stderr merged into one text
    pipe, able to receive the signals the test sends it whatever launched the test run."""
    return subprocess.Popen(
        [sys.executable, "-m", "cliffbench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_deliverable_sigint,
        env=env,
    )

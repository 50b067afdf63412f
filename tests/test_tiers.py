"""The tiers' guard (tests/conftest.py): a test without the `engine` marker that touches the
prepared model, builds a real engine or starts a managed server fails at once; `fake` engines and
files elsewhere stay allowed (these tests are unmarked, so the guard is on while they run). A test
marked `engine` but not `vllm` may use the model but not start vLLM. Tests are marked by the
conftest's fixtures they use, not by a fixture's name."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from cliffbench.config import MODELS_DIR
from cliffbench.engines import make_engine
from cliffbench.engines.servers import ManagedServer
from cliffbench.engines.specs import FakeSpec, LlamaCppSerialSpec, ServerSpec, VllmSpec

REFUSED = pytest.fail.Exception  # pytest's own failure: no `except Exception` in the code swallows it


def test_the_model_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(REFUSED, match=r"it reads .*data/models.* mark the test `engine`"):
        (MODELS_DIR / "anything.json").open()
    with pytest.raises(REFUSED, match="the prepared model"):
        (MODELS_DIR / "smollm2-135m" / "manifest.json").read_bytes()  # refused, prepared or not
    (tmp_path / "models").mkdir()
    assert list((tmp_path / "models").iterdir()) == []  # another folder is fine


def test_real_engines_and_servers_are_refused() -> None:
    for spec in (VllmSpec(), LlamaCppSerialSpec()):
        with pytest.raises(REFUSED, match=f"it builds a real {spec.kind} engine"):
            make_engine(spec)
    with pytest.raises(REFUSED, match="it starts a llama-cpp-python server"):
        asyncio.run(ManagedServer(ServerSpec(kind="llama-cpp-python")).start())
    assert make_engine(FakeSpec()).describe()["kind"] == "fake"


@pytest.mark.engine
def test_an_engine_test_may_read_the_model_but_not_start_vllm() -> None:
    with contextlib.suppress(FileNotFoundError):  # not refused, whether the model is prepared or not
        (MODELS_DIR / "smollm2-135m" / "manifest.json").read_bytes()
    with pytest.raises(REFUSED, match="it builds a real vllm engine; mark the test `vllm`"):
        make_engine(VllmSpec())
    with pytest.raises(REFUSED, match=r"it starts `vllm serve`; mark the test `vllm`"):
        asyncio.run(ManagedServer(ServerSpec(kind="vllm")).start())


@pytest.fixture
def model() -> str:
    """A fixture of this module's own called `model`: it shadows the prepared model (tests/conftest.py)."""
    return "a name only"


def test_a_fixture_named_model_of_a_module_does_not_mark_its_tests(model: str, request: pytest.FixtureRequest) -> None:
    # marked by the fixture, not its name: a test of the conftest's `model` would be `engine` (and
    # this one deselected from the fast tier, or failing this check in the full run)
    assert model == "a name only"
    assert request.node.get_closest_marker("engine") is None

"""The fast tier's guard (tests/conftest.py): a test without the `engine` marker that touches the
prepared model, builds a real engine or starts a managed server fails at once; `fake` engines and
files elsewhere stay allowed. (This test is itself unmarked, so the guard is on while it runs.)"""

from __future__ import annotations

import asyncio
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
def test_a_marked_test_is_not_guarded() -> None:
    from tests import conftest

    assert conftest._guard is None

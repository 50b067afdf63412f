"""Published engine defaults (data/published/engine_defaults.csv), the presets built from them, and
the llama.cpp engines' queue limit: no engine, no model."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import yaml

from cliffbench.bench.spec.study import StudySpec, load_study
from cliffbench.config import InputError
from cliffbench.engines import RequestRejected, defaults
from cliffbench.engines.base import GenRequest
from cliffbench.engines.defaults import (
    ENGINE_DEFAULTS_CSV,
    PRESETS,
    default_value,
    load_engine_defaults,
    parse_version,
    preset_spec,
)
from cliffbench.engines.llamacpp import LlamaCppEngine, queue_full
from cliffbench.engines.slot_reuse import Pending, Slot
from cliffbench.engines.specs import LlamaCppSerialSpec, LlamaCppSlotsSpec, VllmSpec


def _edited_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> Path:
    text = ENGINE_DEFAULTS_CSV.read_text()
    assert text.count(old) == 1, old
    p = tmp_path / "engine_defaults.csv"
    p.write_text(text.replace(old, new))
    monkeypatch.setattr(defaults, "ENGINE_DEFAULTS_CSV", p)
    return p


def _study(engines: list[Any]) -> StudySpec:
    return StudySpec.model_validate({"name": "s", "engines": engines})


def test_the_csv_loads_with_the_published_values() -> None:
    rows = load_engine_defaults()
    assert {r.engine for r in rows} == {"ollama", "llama-server", "vllm"}
    assert all(r.source_url.startswith("https://") for r in rows)
    assert default_value("ollama", "num_parallel") == 1
    assert default_value("ollama", "num_parallel", "0.10.0") == 1
    assert default_value("ollama", "num_parallel", "v0.9.7-rc0") == "2|1"
    assert default_value("ollama", "num_parallel", "0.6.7") == "2|1"
    assert default_value("ollama", "num_parallel", "0.6.6") == "4|1"
    assert default_value("ollama", "max_queue") == 512
    assert default_value("llama-server", "slots") == 4
    assert default_value("llama-server", "slots", "2025-06-01") == 1
    assert default_value("llama-server", "kv_unified") is True
    assert default_value("llama-server", "max_queue") is None
    assert default_value("vllm", "prefix_caching") is True


def test_versions_compare_number_by_number() -> None:
    assert parse_version("0.10") == parse_version("0.10.0") > parse_version("0.9.9")
    assert parse_version("2025-10-23") > parse_version("2025-6-30")
    with pytest.raises(ValueError, match="expected dotted numbers"):
        parse_version("b6xxx")


def test_a_version_no_row_covers_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"no ollama num_parallel row covers version 0\.1\.0"):
        default_value("ollama", "num_parallel", "0.1.0")
    with pytest.raises(InputError, match="version 'b6800': expected dotted numbers"):
        default_value("llama-server", "slots", "b6800")
    with pytest.raises(InputError, match="no row for ollama nothing; known: "):
        default_value("ollama", "nothing")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_a_valid_spec(name: str) -> None:
    spec = _study([{"preset": name}]).engines[0]
    assert (spec.name, spec.preset, spec.kind) == (name, name, preset_spec(name)["kind"])


def test_the_presets_say_what_the_csv_says() -> None:
    ollama, old, server, vllm = _study(
        [
            {"preset": "ollama-0.10+"},
            {"preset": "ollama-0.2-0.6"},
            {"preset": "llama-server-default"},
            {"preset": "vllm-default"},
        ]
    ).engines
    assert isinstance(ollama, LlamaCppSerialSpec) and ollama.max_queue == 512
    assert isinstance(old, LlamaCppSlotsSpec) and (old.slots, old.kv_unified, old.max_queue) == (4, False, None)
    assert isinstance(server, LlamaCppSlotsSpec) and (server.slots, server.kv_unified) == (4, True)
    assert isinstance(vllm, VllmSpec) and vllm.enable_prefix_caching
    # prompt reuse as shipped: llama-server's cache_prompt (PR #10501) and 0.10 similarity (PR #15913),
    # Ollama's runner; an Ollama release the CSV has no row for keeps the kit's default (off)
    assert (server.cache_prompt, server.slot_prompt_similarity) == (True, 0.10)
    assert ollama.cache_prompt and not old.cache_prompt
    assert default_value("llama-server", "slot_prompt_similarity", "2025-06-01") == 0.5
    assert default_value("llama-server", "cache_prompt", "2024-06-01") is False


def test_a_preset_follows_an_edited_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _edited_csv(tmp_path, monkeypatch, "ollama,max_queue,512,", "ollama,max_queue,64,")
    assert preset_spec("ollama-0.10+")["max_queue"] == 64
    _edited_csv(tmp_path, monkeypatch, "ollama,num_parallel,1,", "ollama,num_parallel,3,")
    spec = _study([{"preset": "ollama-0.10+"}]).engines[0]
    assert isinstance(spec, LlamaCppSlotsSpec) and (spec.slots, spec.kv_unified, spec.max_queue) == (3, False, 512)


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("ollama,num_parallel,1,>=0.10.0,", "ollama,num_parallel,1,~0.10,", "line 2 (engine ollama): versions: "),
        (
            "ollama,num_parallel,1,>=0.10.0,2025-07-08,",
            "ollama,num_parallel,1,>=0.10.0,July,",
            "line 2 (engine ollama): since",
        ),
        ("ollama,max_queue,512,>=0.10.0,", "olama,max_queue,512,>=0.10.0,", "line 5 (engine olama): engine: "),
        (
            "ollama,max_queue,512,>=0.10.0,",
            "ollama,num_parallel,512,>=0.12.0,",
            "line 5 (ollama num_parallel): versions",
        ),
    ],
)
def test_a_bad_row_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, needle: str
) -> None:
    path = _edited_csv(tmp_path, monkeypatch, old, new)
    with pytest.raises(InputError) as exc:
        load_engine_defaults(path)
    msg = str(exc.value)
    assert msg.startswith("engine_defaults.csv line") and needle in msg and "\n" not in msg
    with pytest.raises(InputError, match=r"engine_defaults\.csv line"):
        preset_spec("ollama-0.10+")


def test_an_unknown_preset_lists_the_allowed_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'ollama'; allowed: ollama-0\.10\+, "):
        preset_spec("ollama")
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({"engines": [{"kind": "fake"}, {"preset": "ollama"}]}))
    with pytest.raises(InputError) as exc:
        load_study(p)
    msg = str(exc.value)
    assert msg.startswith("study.engines: entry 1: unknown preset 'ollama'; allowed: ") and "\n" not in msg
    assert all(name in msg for name in PRESETS)


def test_a_preset_kind_override_must_match() -> None:
    with pytest.raises(ValueError, match="builds kind 'llamacpp-serial', not 'vllm'"):
        preset_spec("ollama-0.10+", kind="vllm")


def test_a_study_yaml_names_a_preset_with_overrides(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(
        "engines:\n  - {preset: ollama-0.10+, label: ollama}\n  - {preset: llama-server-default, ctx_per_slot: 512}\n"
    )
    spec = load_study(p)
    ollama, server = spec.engines
    assert isinstance(ollama, LlamaCppSerialSpec)
    assert (ollama.name, ollama.preset, ollama.max_queue) == ("ollama", "ollama-0.10+", 512)
    assert isinstance(server, LlamaCppSlotsSpec) and (server.ctx_per_slot, server.slots) == (512, 4)
    # stored with its kind, an entry is taken as written: the stored study keeps what it ran with
    assert StudySpec.model_validate(yaml.safe_load(spec.to_yaml())) == spec


def test_a_stored_preset_entry_does_not_read_the_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = {"kind": "llamacpp-serial", "preset": "ollama-0.10+", "label": "ollama-0.10+", "max_queue": 7}
    monkeypatch.setattr(defaults, "ENGINE_DEFAULTS_CSV", Path("/nonexistent.csv"))
    spec = _study([stored]).engines[0]
    assert isinstance(spec, LlamaCppSerialSpec) and spec.max_queue == 7


# -- the queue limit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queued", "free", "limit", "full"),
    [
        (0, 0, None, False),
        (10**6, 0, None, False),
        (0, 0, 0, True),
        (1, 1, 0, True),
        (0, 1, 0, False),
        (2, 1, 1, True),
        (3, 0, 4, False),
    ],
)
def test_queue_full(queued: int, free: int, limit: int | None, full: bool) -> None:
    assert queue_full(queued, free, limit) is full


def _engine(spec: LlamaCppSerialSpec | LlamaCppSlotsSpec, queued: int, busy: int) -> LlamaCppEngine:
    """A llama.cpp engine's request side only (no model, no worker): `queued` waiting requests and
    `busy` occupied slots."""
    eng = object.__new__(LlamaCppEngine)
    eng.spec, eng.name = spec, spec.name
    eng.n_slots, per_slot, eng.kv_unified = spec.slot_layout()
    eng.n_ctx, eng.n_ctx_seq = eng.n_slots * per_slot, per_slot
    eng._cv, eng._stopping, eng._crashed = threading.Condition(), False, ""
    eng._thread = threading.current_thread()  # stands in for a running worker
    eng._slots = [Slot(seq_id=i) for i in range(eng.n_slots)]
    waiting = [Pending(GenRequest(i, (1, 2), 1), lambda item: None) for i in range(queued + busy)]
    for slot, job in zip(eng._slots, waiting[:busy], strict=False):
        slot.job = job
    eng._queue = deque(waiting[busy:])
    return eng


async def _submit(eng: LlamaCppEngine) -> int:
    stream = eng.stream(GenRequest(99, (1, 2), 1))
    task = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    if task.done():
        task.result()  # raises what the engine raised
    queued = len(eng._queue)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # the cancellation ends the stream (its `finally` marks the job cancelled)
    return queued


def test_the_serial_engine_rejects_past_max_queue() -> None:
    spec = LlamaCppSerialSpec(max_queue=2)
    assert asyncio.run(_submit(_engine(spec, queued=1, busy=1))) == 2  # queued behind the running one
    with pytest.raises(RequestRejected, match="2 requests already wait"):
        asyncio.run(_submit(_engine(spec, queued=2, busy=1)))
    # a free slot takes the head of the queue: it is not waiting
    assert asyncio.run(_submit(_engine(LlamaCppSlotsSpec(slots=2, max_queue=1), queued=2, busy=0))) == 3
    assert asyncio.run(_submit(_engine(LlamaCppSerialSpec(), queued=1000, busy=1))) == 1001

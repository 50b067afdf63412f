"""A study against an OpenAI-compatible server that misbehaves mid-study.

The server is a stub in this process (asyncio streams on a thread of its own, 127.0.0.1, a free
port; no aiohttp, which only vLLM pulls in): GET /v1/models, and POST /v1/completions streamed as
chunked SSE. The study's first level runs against a well-behaved server; then the server turns to
one fault and the second level runs against it:

- `stall`: two tokens, then nothing (the connection stays open)
- `garbage`: a stray line, one token, then an SSE event whose data is not JSON
- `endless`: tokens forever, never [DONE] (the kit asks for exactly max_tokens)
- `overlong`: twice the tokens asked for, with usage and [DONE]
- `close`: two tokens, then the connection is closed mid-stream

Each request ends in bounded time (request_timeout_s), each is recorded failed or timed out with its
reason, the level in which nothing succeeded is stored failed, the level before it stays intact, the
client leaves no connection open, and a plain re-run measures the failed level again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cliffbench.bench import sweep
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import LevelInfo, load_results
from tests.faults import (
    NO_RERUNS,
    Recorder,
    assert_nothing_left,
    leftovers,
    level_files,
    run_study_on_thread,
    snapshot,
)

pytestmark = pytest.mark.usefixtures("fixed_probe")

OUTPUT, REQUESTS, TIMEOUT_S = 10, 2, 1.0
# a hang guard, not a speed check: a study still running after this fails the test instead of
# hanging it (it takes about TIMEOUT_S + a second on a quiet machine)
LIMIT_S = 120.0
KEYS = ["stub__chat__c0001", "stub__chat__c0002"]  # the good level, then the faulty one
MODELS = json.dumps({"object": "list", "data": [{"id": "stub-model", "object": "model", "owned_by": "stub"}]})
TOKEN = {"choices": [{"index": 0, "text": "a", "finish_reason": None}]}
# mode -> (status of each request, what its error says)
FAULTS = {
    "stall": ("timeout", f"no completion within request_timeout_s={TIMEOUT_S}"),
    "garbage": ("failed", "EngineError: malformed SSE data (not JSON)"),
    "endless": ("timeout", f"no completion within request_timeout_s={TIMEOUT_S}"),
    "overlong": ("failed", f"engine returned {2 * OUTPUT} tokens, asked for exactly {OUTPUT}"),
    "close": ("failed", "EngineError: connection to http://127.0.0.1:"),
}


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(obj: Any) -> bytes:
    return _chunk(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")


def _usage(n: int) -> dict[str, Any]:
    return {"choices": [], "usage": {"prompt_tokens": 16, "completion_tokens": n, "total_tokens": 16 + n}}


DONE = _event(b"[DONE]") + b"0\r\n\r\n"  # the last event, then the end of the chunked body


class StubServer:
    """The stub OpenAI-compatible server. `mode` ('ok' or one of FAULTS) decides how the next
    completion is streamed; `max_tokens` keeps what each request asked for; `open` counts the
    completion connections the client has not closed yet."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.max_tokens: list[int] = []
        self.open = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="stub-openai-server")

    def __enter__(self) -> StubServer:
        self._thread.start()
        assert self._ready.wait(timeout=10), "the stub server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the stub server did not stop"

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._serve(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the client hung up
            except asyncio.CancelledError:
                pass  # the stub is stopping (a task of start_server's that ends cancelled is logged as an error)
            finally:
                writer.close()
                handlers.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()
            await asyncio.sleep(0.05)  # the transports' own close callbacks

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # keep-alive: GET /v1/models may come on the connection a completion reuses
            head = await reader.readuntil(b"\r\n\r\n")
            method, path = head.decode().split(" ")[:2]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length) if length else b""
            if method == "GET" and path == "/v1/models":
                writer.write(
                    f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(MODELS)}\r\n\r\n"
                    f"{MODELS}".encode()
                )
                await writer.drain()
                continue
            assert (method, path) == ("POST", "/v1/completions"), head
            n = int(json.loads(body)["max_tokens"])
            self.max_tokens.append(n)
            self.open += 1
            try:
                await self._stream(reader, writer, n)
            finally:
                self.open -= 1
            return

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        mode = self.mode
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            b"connection: close\r\n\r\n"
        )
        if mode == "ok":
            writer.write(b"".join(_event(TOKEN) for _ in range(n)) + _event(_usage(n)) + DONE)
        elif mode == "overlong":
            writer.write(b"".join(_event(TOKEN) for _ in range(2 * n)) + _event(_usage(2 * n)) + DONE)
        elif mode == "garbage":
            writer.write(_chunk(b"garbage line without a field\n") + _event(TOKEN))
            writer.write(_event(b'{"choices": [{"text": garbage') + DONE)
        elif mode in ("stall", "close"):
            writer.write(_event(TOKEN) + _event(TOKEN))
        await writer.drain()
        if mode == "stall":
            while await reader.read(1 << 16):  # nothing more is sent until the client hangs up
                pass
        elif mode == "endless":
            while not reader.at_eof():  # a token every 5 ms until the client hangs up
                writer.write(_event(TOKEN))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1 << 16), timeout=0.005)
        # "close": return without the end of the chunked body; the handler closes the connection


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer() as s:
        yield s


def _spec(url: str, model_dir: Path) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "http-faults",
            "tokenizer": "fake",
            "busy": NO_RERUNS,
            # the model the server serves, described by a config.json (no weights: nothing is loaded)
            "engines": [{"kind": "openai-http", "label": "stub", "url": url, "model": {"hf_path": str(model_dir)}}],
            "level_sets": [
                {
                    "name": "chat",
                    "workload": {"prompt": {"mean": 16}, "output": {"mean": OUTPUT}},
                    "load": {
                        "concurrency": [1, 2],
                        "requests_per_level": REQUESTS,
                        "warmup_requests": 0,
                        "request_timeout_s": TIMEOUT_S,
                    },
                }
            ],
        }
    )


def _model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "served-model"
    d.mkdir()
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "vocab_size": 256,
        "max_position_embeddings": 2048,
    }
    (d / "config.json").write_text(json.dumps(config))
    return d


def _wait_closed(server: StubServer, timeout_s: float = 5.0) -> int:
    end = time.monotonic() + timeout_s
    while server.open and time.monotonic() < end:
        time.sleep(0.02)
    return server.open


def _run_bounded(spec: StudySpec, root: Path, rec: Recorder, server: StubServer) -> None:
    """Run the study on a thread. A study still running after LIMIT_S fails the test instead of
    hanging it: the server is stopped (which ends every stream) first."""
    _, errors, thread = run_study_on_thread(spec, root, rec, LIMIT_S)
    if thread.is_alive():
        server.__exit__()
        thread.join(timeout=30)
        pytest.fail(f"the study against a {server.mode!r} server still ran after {LIMIT_S} s")
    if errors:
        raise errors[0]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_server_fault_fails_its_level_in_bounded_time_and_keeps_the_level_before(
    tmp_path: Path, server: StubServer, fault: str
) -> None:
    spec = _spec(server.url, _model_dir(tmp_path))
    levels = tmp_path / "http-faults" / "levels"
    good: dict[str, bytes] = {}

    def fault_after_first(info: LevelInfo) -> None:
        if info.level_key == KEYS[0]:
            good.update(level_files(levels / KEYS[0]))
            server.mode = fault

    before = snapshot()
    rec = Recorder(on_finished=fault_after_first)
    _run_bounded(spec, tmp_path, rec, server)
    assert [i.level_key for i in rec.finished] == KEYS
    assert server.max_tokens == [OUTPUT] * 2 * REQUESTS  # the kit asked for exactly OUTPUT tokens

    status, reason = FAULTS[fault]
    res = load_results("http-faults", root=tmp_path)
    assert not res.damaged and not leftovers(levels)
    lv = res.levels.set_index("level_key")
    assert lv.loc[KEYS[0], "status"] == "ok" and lv.loc[KEYS[0], "n_ok"] == REQUESTS
    assert level_files(levels / KEYS[0]) == good  # the good level is left byte for byte
    # the faulty level: stored failed, with the first request's reason
    assert lv.loc[KEYS[1], "status"] == "failed"
    assert str(lv.loc[KEYS[1], "error"]).startswith(f"no request succeeded: {reason}")
    bad = res.requests[res.requests["level_key"] == KEYS[1]]
    assert len(bad) == REQUESTS and bad["status"].eq(status).all(), bad[["status", "error"]]
    assert bad["error"].str.startswith(reason).all(), bad["error"].tolist()
    if fault == "close":
        assert bad["error"].str.contains("lost mid-stream").all()
    # bounded: a stream that never ends is cut by the kit's watchdog, at its timeout and never
    # sooner (one that ends wrong fails on what the kit read: its status and error above)
    if status == "timeout":
        assert ((bad["t_done_s"] - bad["t_submit_s"]) >= TIMEOUT_S).all()
    # nothing left: no thread or process of the run, no connection the client kept open
    assert_nothing_left(*before)
    assert _wait_closed(server) == 0

    # the server is well again: a plain re-run measures the failed level, skips the good one
    server.mode = "ok"
    again = Recorder()
    sweep.run_study(spec, root=tmp_path, reporter=again)
    assert [i.level_key for i in again.finished] == KEYS[1:] and again.skipped == KEYS[:1]
    assert load_results("http-faults", root=tmp_path).levels["status"].eq("ok").all()
    assert level_files(levels / KEYS[0]) == good

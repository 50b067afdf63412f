"""The openai-http engine: against llama-cpp-python's real server on the bundled model, and (for the
error paths only) against a tiny raw-socket stub that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from cliffbench.bench.load.driver import run_level
from cliffbench.config import InputError, parse_spec
from cliffbench.engines import EngineError, GenRequest, make_engine
from cliffbench.engines.base import TokenEvent
from cliffbench.engines.http import OpenAIHttpEngine, cached_tokens_of
from cliffbench.engines.specs import OpenAIHttpSpec
from tests.conftest import engine_on_own_loop

# -- the real server --------------------------------------------------------------------------

LCP = OpenAIHttpSpec(server={"kind": "llama-cpp-python", "mirrors": {"kind": "llamacpp-serial", "n_ctx": 512}})


@pytest.fixture(scope="module")
def lcp_server(model: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, OpenAIHttpEngine]]:
    """llama-cpp-python's server, started once for this module, on a loop the tests drive."""
    for loop, engine in engine_on_own_loop(LCP):
        assert isinstance(engine, OpenAIHttpEngine)
        yield loop, engine


async def _collect(engine: Any, req: GenRequest) -> list[TokenEvent]:
    return [ev async for ev in engine.stream(req)]


def _req(i: int, ids: list[int], n: int, tokenizer: Any) -> GenRequest:
    return GenRequest(i, tuple(ids), max_tokens=n, prompt_text=tokenizer.decode(ids))


@pytest.mark.engine
def test_real_server_streams_exact_tokens(lcp_server: Any, prompts: list[list[int]], tokenizer: Any) -> None:
    loop, engine = lcp_server
    events = loop.run_until_complete(_collect(engine, _req(0, prompts[0], 48, tokenizer)))
    assert len(events) == 48  # min_tokens = max_tokens: the server may not stop at EOS
    times = [e.t_s for e in events]
    assert all(b >= a for a, b in itertools.pairwise(times))
    assert times[-1] - times[0] > 0.05  # streamed token by token, not delivered in one burst
    d = engine.describe()
    assert d["flavor"] == "llama-cpp-python" and "argv" in d["server"]
    # its server has no Prometheus endpoint: no server state, recorded as such, not an error
    assert d["server_metrics"] == "HTTP 404" and engine.memory().source == "none"


@pytest.mark.engine
def test_real_server_is_greedy_like_in_process(lcp_server: Any, prompts: list[list[int]], tokenizer: Any) -> None:
    """Same GGUF, greedy: the server's text is the in-process serial engine's text."""
    from cliffbench.engines.specs import LlamaCppSerialSpec

    loop, engine = lcp_server
    req = _req(1, prompts[0], 24, tokenizer)
    served = "".join(e.text for e in loop.run_until_complete(_collect(engine, req)))

    async def local() -> list[int]:
        eng = make_engine(LlamaCppSerialSpec(n_ctx=512))
        await eng.start()
        try:
            return [e.token_id for e in await _collect(eng, req)]
        finally:
            await eng.stop()

    text = tokenizer.decode(asyncio.run(local()))
    # Greedy is exact only up to a near-tie of two logits: the server and the in-process engine sum
    # in different orders (batch shapes), and on the AVX2 EPYC the 20th token flipped ("321" vs "311
    # million") where the Xeon agreed on all 24. The first half must agree token for token.
    common = os.path.commonprefix([served, text])  # noqa: RUF071 (a text prefix is what is compared)
    assert len(common) >= len(text) // 2, (served, text)


@pytest.mark.engine
def test_real_server_level_through_loadgen(lcp_server: Any, prompts: list[list[int]], tokenizer: Any) -> None:
    loop, engine = lcp_server
    reqs = [_req(i, p, 16, tokenizer) for i, p in enumerate(prompts)]
    run = loop.run_until_complete(run_level(engine, reqs, concurrency=2))
    assert [r.status for r in run.records] == ["ok"] * 4, [r.error for r in run.records]
    # llama-cpp-python's server serves one request at a time: the second user waits
    first = sorted(run.records, key=lambda r: r.token_times_s[0])
    assert first[1].token_times_s[0] > first[0].token_times_s[0]
    assert engine.stats["usage"] + engine.stats["chunks"] + engine.stats["tokenizer"] >= 4


@pytest.mark.engine
def test_real_server_chat_endpoint(lcp_server: Any, prompts: list[list[int]], tokenizer: Any) -> None:
    """/v1/chat/completions on the same real server: the chat template applied server-side, the
    role chunk skipped, and still exactly max_tokens tokens."""
    loop, served = lcp_server
    chat = make_engine(OpenAIHttpSpec(url=served.url, api="chat", flavor="llama-cpp-python"))
    assert isinstance(chat, OpenAIHttpEngine)

    async def main() -> list[TokenEvent]:
        await chat.start()
        try:
            return await _collect(chat, _req(0, prompts[1], 12, tokenizer))
        finally:
            await chat.stop()

    events = loop.run_until_complete(main())
    assert len(events) == 12
    assert "".join(e.text for e in events).strip()
    assert chat.stats["usage"] + chat.stats["chunks"] == 1 and chat.stats["tokenizer"] == 0


# -- error paths, against a stub ----------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _sse(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def _tok(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "text": text, "finish_reason": None}]}


MODELS = json.dumps({"data": [{"id": "stub", "owned_by": "stub"}]}).encode()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length) if length else b""
    return head.split(b" ")[1].decode(), body


def _response(status: str, body: bytes, ctype: str = "application/json", close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
    return (head + ("connection: close\r\n" if close else "") + "\r\n").encode() + body


def stub(behaviour: Callable[[int, str, bytes], bytes | None]) -> Handler:
    """A keep-alive HTTP/1.1 server. `behaviour(n, path, body)` returns the raw response bytes of
    the n-th completion request, or None to drop the connection without answering."""
    count = itertools.count()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                path, body = await _read_request(reader)
                if path.endswith("/models"):
                    writer.write(_response("200 OK", MODELS))
                    await writer.drain()
                    continue
                if path == "/metrics":  # a server without a Prometheus endpoint
                    writer.write(_response("404 Not Found", b"not found"))
                    await writer.drain()
                    continue
                raw = behaviour(next(count), path, body)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


@contextlib.asynccontextmanager
async def serving(handler: Handler, **spec: Any) -> AsyncIterator[OpenAIHttpEngine]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    engine = make_engine(OpenAIHttpSpec(url=f"http://127.0.0.1:{port}/v1", **spec))
    assert isinstance(engine, OpenAIHttpEngine)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
        srv.close()
        await srv.wait_closed()


REQ = GenRequest(0, (1, 2, 3), max_tokens=3, prompt_text="x")


def _sse_response(payload: bytes) -> bytes:
    return _response("200 OK", payload, "text/event-stream")


async def _outcome(handler: Handler, **spec: Any) -> tuple[list[TokenEvent] | str, dict[str, int]]:
    async with serving(handler, **spec) as engine:
        try:
            return await _collect(engine, REQ), engine.stats
        except EngineError as exc:
            return str(exc), engine.stats


def test_stub_happy_path_counts_from_usage() -> None:
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}}
    # two chunks for three tokens (the server merged two): the usage count wins
    ok = _sse_response(_sse([_tok("a"), _tok("bc"), usage]))
    events, stats = asyncio.run(_outcome(stub(lambda n, p, b: ok)))
    assert isinstance(events, list) and len(events) == 3 and stats["usage"] == 1


def test_request_body_asks_for_exact_length() -> None:
    seen: list[dict[str, Any]] = []
    ok = _sse_response(_sse([_tok("a"), _tok("b"), _tok("c")]))

    def record(n: int, path: str, body: bytes) -> bytes:
        seen.append({"path": path, **json.loads(body)})
        return ok

    asyncio.run(_outcome(stub(record), flavor="vllm", api_key_env="CLIFFBENCH_TEST_KEY"))
    assert seen[0]["path"] == "/v1/completions" and seen[0]["prompt"] == [1, 2, 3]
    assert seen[0]["ignore_eos"] is True and seen[0]["min_tokens"] == 3 and seen[0]["max_tokens"] == 3


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIFFBENCH_TEST_KEY", "sk-secret-value")


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (_response("401 Unauthorized", b'{"error": {"message": "invalid api key"}}'), "HTTP 401"),
        (_response("500 Internal Server Error", b"boom: out of memory", "text/plain"), "HTTP 500"),
        (_sse_response(_sse([_tok("a")], done=False)), "ended before [DONE] after 1 tokens"),
        (_sse_response(b"data: {not json\n\n"), "malformed SSE"),
        (_sse_response(b'data: {"error": {"message": "slot crashed"}}\n\n'), "slot crashed"),
    ],
    ids=["401", "500", "truncated", "malformed", "error-event"],
)
def test_stub_errors_are_clear_per_request(raw: bytes, expect: str) -> None:
    out, _ = asyncio.run(_outcome(stub(lambda n, p, b: raw)))
    assert isinstance(out, str) and expect in out, out
    if "HTTP" in expect:
        assert ("invalid api key" if "401" in expect else "boom") in out


def test_dropped_keepalive_is_retried_once_on_a_fresh_connection() -> None:
    ok = _sse_response(_sse([_tok("a"), _tok("b"), _tok("c")]))
    events, stats = asyncio.run(_outcome(stub(lambda n, p, b: None if n == 0 else ok)))
    assert isinstance(events, list) and len(events) == 3 and stats["retried"] == 1
    out, stats = asyncio.run(_outcome(stub(lambda n, p, b: None)))
    assert isinstance(out, str) and "closed before any response" in out and stats["retried"] == 1
    out, _ = asyncio.run(_outcome(stub(lambda n, p, b: None), retry_on_reset=False))
    assert isinstance(out, str) and "closed before any response" in out


def test_refused_connection_is_a_per_request_error() -> None:
    async def go() -> str:
        srv = await asyncio.start_server(stub(lambda n, p, b: None), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        engine = make_engine(OpenAIHttpSpec(url=f"http://127.0.0.1:{port}/v1", served_model="m", flavor="generic"))
        await engine.start()
        srv.close()
        await srv.wait_closed()  # nothing listens on the port any more
        try:
            await _collect(engine, REQ)
        except EngineError as exc:
            return str(exc)
        finally:
            await engine.stop()
        return "no error"

    assert "cannot connect" in asyncio.run(go())


def test_level_against_dead_server_fails_requests_not_the_level() -> None:
    async def go() -> list[str]:
        async with serving(stub(lambda n, p, b: None), retry_on_reset=False) as engine:
            run = await run_level(engine, [REQ] * 3, concurrency=2, request_timeout_s=10)
            return [r.status for r in run.records]

    assert asyncio.run(go()) == ["failed"] * 3


def test_bad_url_and_missing_key_are_input_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match=r"^engine\.url: must be an http"):
        parse_spec(OpenAIHttpSpec, {"url": "localhost:8000/v1"}, prefix="engine.")
    monkeypatch.delenv("CLIFFBENCH_TEST_KEY")
    spec = OpenAIHttpSpec(url="http://127.0.0.1:9/v1", api_key_env="CLIFFBENCH_TEST_KEY")
    with pytest.raises(InputError, match=r"^api_key_env: environment variable CLIFFBENCH_TEST_KEY is not set$"):
        asyncio.run(make_engine(spec).start())


def test_api_key_is_sent_but_never_described() -> None:
    auth: list[str] = []
    ok = _sse_response(_sse([_tok("a"), _tok("b"), _tok("c")]))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        auth.extend(ln.decode() for ln in head.split(b"\r\n") if ln.lower().startswith(b"authorization"))
        await stub(lambda n, p, b: ok)(_Replay(head, reader), writer)  # type: ignore[arg-type]

    async def go() -> str:
        async with serving(handle, api_key_env="CLIFFBENCH_TEST_KEY") as engine:
            await _collect(engine, REQ)
            return json.dumps(engine.describe())

    described = asyncio.run(go())
    assert auth and auth[0].endswith("Bearer sk-secret-value")
    assert "sk-secret-value" not in described and "CLIFFBENCH_TEST_KEY" in described


class _Replay:
    """A StreamReader that first gives back bytes already read."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader) -> None:
        self.buf, self.reader = head, reader

    async def readuntil(self, sep: bytes) -> bytes:
        if self.buf:
            out, self.buf = self.buf, b""
            return out
        return await self.reader.readuntil(sep)

    async def readexactly(self, n: int) -> bytes:
        return await self.reader.readexactly(n)


def test_chat_stream_skips_the_role_chunk() -> None:
    def chat(text: str | None, role: bool = False) -> dict[str, Any]:
        delta: dict[str, Any] = {"content": text} | ({"role": "assistant"} if role else {})
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    seen: list[str] = []
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
    ok = _sse_response(_sse([chat("", role=True), chat("a"), chat("b"), chat("c"), end]))

    def record(n: int, path: str, body: bytes) -> bytes:
        seen.append(path)
        return ok

    events, stats = asyncio.run(_outcome(stub(record), api="chat"))
    assert seen == ["/v1/chat/completions"]
    assert isinstance(events, list) and [e.text for e in events] == ["a", "b", "c"] and stats["chunks"] == 1


# -- cached prompt tokens, as each server tells them ------------------------------------------------

VLLM_USAGE = {
    "choices": [],
    "usage": {"prompt_tokens": 40, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 32}},
}
LLAMA_SERVER_END = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "timings": {"cache_n": 39}}
PLAIN_USAGE = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}}


@pytest.mark.parametrize(
    ("chunk", "cached"),
    [
        (VLLM_USAGE, 32),
        (LLAMA_SERVER_END, 39),
        ({"usage": {"prompt_tokens_details": {"cached_tokens": 0}}, "timings": {"cache_n": 5}}, 0),  # usage first
        ({"usage": {"prompt_tokens": 40, "prompt_tokens_details": None}}, None),  # vllm serve without the flag
        (PLAIN_USAGE, None),
        (_tok("a"), None),
        ({"timings": {"cache_n": True}}, None),  # not a count
        ({"timings": {"cache_n": -1}}, None),
    ],
)
def test_cached_tokens_of_a_chunk(chunk: dict[str, Any], cached: int | None) -> None:
    assert cached_tokens_of(chunk) == cached


@pytest.mark.parametrize(("last", "cached"), [(VLLM_USAGE, 32), (LLAMA_SERVER_END, 39), (PLAIN_USAGE, None)])
def test_cached_tokens_told_after_the_last_token_reach_the_request(last: dict[str, Any], cached: int | None) -> None:
    ok = _sse_response(_sse([_tok("a"), _tok("b"), _tok("c"), last]))
    events, _ = asyncio.run(_outcome(stub(lambda n, p, b: ok)))
    assert isinstance(events, list) and [e.text for e in events] == ["a", "b", "c"]
    assert events[-1].cached_tokens == cached  # None: unknown, never 0 (the driver keeps the last told)


def test_llama_server_body_carries_the_twins_prompt_reuse() -> None:
    def body(reuse: bool) -> dict[str, Any]:
        twin = {"kind": "llamacpp-slots", "cache_prompt": reuse}
        return OpenAIHttpEngine(OpenAIHttpSpec(server={"kind": "llama-server", "mirrors": twin}))._body(REQ)[1]

    assert body(True)["cache_prompt"] is True and body(False)["cache_prompt"] is False


def test_llama_server_token_ids_ride_in_its_logprobs() -> None:
    """With `n_probs` >= 1 each llama-server chunk carries its sampled token's id in logprobs: a
    session's next turn needs the answer's ids, which its text alone does not give back exactly."""

    def chunk(text: str, tok: int) -> dict[str, Any]:
        content = [{"id": tok, "token": text, "bytes": list(text.encode()), "logprob": -0.1, "top_logprobs": []}]
        return {"choices": [{"text": text, "index": 0, "logprobs": {"content": content}, "finish_reason": None}]}

    ok = _sse_response(_sse([chunk("a", 11), chunk("", 12), chunk("c", 13), LLAMA_SERVER_END]))
    events, _ = asyncio.run(_outcome(stub(lambda n, p, b: ok)))
    # the empty chunk (a character's bytes held back) is still one token, its id known
    assert isinstance(events, list) and [e.token_id for e in events] == [11, 12, 13]

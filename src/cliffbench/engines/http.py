"""`openai-http`: any OpenAI-compatible server, streamed over SSE with httpx.

One `TokenEvent` per generated token, stamped on arrival of the SSE chunk that carried it. A
chunk normally carries one token; where it carries several (vLLM's `token_ids`, or a chunk
held back for a multi-byte character) the events share its timestamp. The count of a request
comes from the server's `usage.completion_tokens`; without usage, from the chunks when they add
up to the exact length asked for, else from re-tokenizing the text (flagged in `stats`).

Prompt tokens the server served from its cache come from `usage.prompt_tokens_details.cached_tokens`
(OpenAI's field: vLLM with --enable-prompt-tokens-details, recent llama-server) or llama-server's
`timings.cache_n`, in whichever chunk carries them (usually the last); a server that sends neither
leaves them unknown (None), never 0. They ride on the token events, so the event of the last token
asked for is held until the stream ends (its timestamp is still taken on arrival).

Output length is made exact with each server's own fields (`flavor`): vLLM `ignore_eos` +
`min_tokens`, llama-server `ignore_eos`, llama-cpp-python `min_tokens`.

Kept-alive connections the server closed (llama-server does under load, FIELD_NOTES): when the
request fails before *any* byte of a response arrived, it is retried once on a fresh
connection (nothing was generated for it, so nothing is double-counted) and the retry is
counted in `stats["retried"]`; a failure after the first byte is a failed request.

The server's own state (running and waiting requests, KV use, preemptions, vLLM's queue-time
histogram) comes from its `/metrics`, scraped on a task of the engine's own while it runs
(engines/server_metrics.py); a server without one gives `memory()` the client's in-flight count.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from cliffbench.config import InputError
from cliffbench.engines.base import EngineError, GenRequest, KvMemory, RequestRejected, TokenEvent
from cliffbench.engines.server_metrics import MetricsScraper, metrics_url
from cliffbench.engines.specs import LlamaCppSpec, OpenAIHttpSpec

__all__ = ["OpenAIHttpEngine", "cached_tokens_of", "detect_flavor"]

# GET /v1/models "owned_by" of each server
_OWNERS = {"vllm": "vllm", "llamacpp": "llama-server", "me": "llama-cpp-python"}


def detect_flavor(models_json: dict[str, Any]) -> str:
    data = models_json.get("data") or [{}]
    return _OWNERS.get(str(data[0].get("owned_by", "")), "generic")


class _Retryable(Exception):
    """The connection failed before a single response byte: safe to resend on a fresh one."""


class OpenAIHttpEngine:
    def __init__(self, spec: OpenAIHttpSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.url = spec.url or ""
        self.flavor: str = spec.flavor if spec.flavor != "auto" else (spec.server.kind if spec.server else "auto")
        self.served_model = spec.served_model or ""
        self._server: Any = None
        self._client: Any = None
        self._headers: dict[str, str] = {}
        self._tokenizer: Any = None
        self._in_flight = 0
        self._scraper: MetricsScraper | None = None
        self._unreachable = ""  # the last connection refused, until a response comes again
        self.stats: dict[str, int] = {"usage": 0, "chunks": 0, "tokenizer": 0, "retried": 0}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        import httpx

        key = self.spec.api_key()  # before anything starts: a missing variable is bad input
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        if self.spec.server is not None:
            from cliffbench.engines.servers import ManagedServer

            self._server = ManagedServer(self.spec.server)
            self.url = await self._server.start()
        n = self.spec.max_connections
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            # no read timeout of its own: the load generator's request_timeout_s bounds a request
            timeout=httpx.Timeout(None, connect=self.spec.connect_timeout_s),
            headers=self._headers,
        )
        try:
            await self._discover()
            self._scraper = MetricsScraper(metrics_url(self.url))
            await self._scraper.start(self._headers)
        except BaseException:
            await self.stop()
            raise

    async def _discover(self) -> None:
        import httpx

        if self.served_model and self.flavor != "auto":
            return
        try:
            r = await self._client.get(f"{self.url}/models")
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.url}/models: {type(exc).__name__}: {exc}") from None
        if r.status_code != 200:
            raise EngineError(f"{self.url}/models: HTTP {r.status_code}: {_message(r.text)}")
        body = r.json()
        if self.flavor == "auto":
            self.flavor = detect_flavor(body)
        if not self.served_model:
            data = body.get("data") or []
            if not data:
                raise EngineError(f"{self.url}/models lists no model; set served_model")
            self.served_model = str(data[0]["id"])

    async def stop(self) -> None:
        scraper, self._scraper = self._scraper, None
        if scraper is not None:
            await scraper.stop()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {
            "kind": self.spec.kind,
            "url": self.url,
            "api": self.spec.api,
            "flavor": self.flavor,
            "served_model": self.served_model,
            "prompt_format": self._prompt_format(),
            "max_connections": self.spec.max_connections,
            "api_key_env": self.spec.api_key_env,  # the variable's name only, never its value
            "server_metrics": self._scraper.status if self._scraper is not None else "not started",
        }
        if self._server is not None:
            d["server"] = {"kind": self.spec.server.kind if self.spec.server else "", "argv": self._server.argv}
        return d

    def max_request_tokens(self) -> int:
        return self.spec.context_limit()

    def failure(self) -> str | None:
        """Why the engine can serve no more requests, or None: the server it started exited, or
        its server refused the last connection tried (and none answered since)."""
        if self._server is not None and not self._server.alive():
            return f"{self._server.spec.kind} server exited; log: {self._server.log_tail()}"
        return self._unreachable or None

    def memory(self) -> KvMemory:
        # the OpenAI API shows no server state: its /metrics does, where it has one
        if self._scraper is None:
            return KvMemory(reserved_bytes=0, live_bytes=0, live_seqs=self._in_flight, waiting=0, source="none")
        return self._scraper.memory(self._in_flight)

    # -- requests --------------------------------------------------------------------------
    def _prompt_format(self) -> str:
        if self.spec.prompt_format != "auto":
            return self.spec.prompt_format
        # llama-cpp-python's server takes only text prompts (types.py: Union[str, List[str]])
        return "text" if self.flavor in ("llama-cpp-python", "generic") else "token_ids"

    def _body(self, request: GenRequest) -> tuple[str, dict[str, Any]]:
        n = request.max_tokens
        body: dict[str, Any] = {
            "model": self.served_model,
            "max_tokens": n,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.spec.api == "chat":
            if not request.prompt_text:
                raise RequestRejected("api 'chat' needs the request's prompt text")
            body["messages"] = [{"role": "user", "content": request.prompt_text}]
            path = "/chat/completions"
        else:
            text = self._prompt_format() == "text"
            body["prompt"] = request.prompt_text if text else list(request.prompt_token_ids)
            path = "/completions"
        if self.flavor == "vllm":
            body.update(ignore_eos=True, min_tokens=n, return_token_ids=True)
        elif self.flavor == "llama-server":
            # its prompt reuse as the in-process twin's where the kit starts it; off (the kit's default)
            # for a server it does not (extra_body may turn it on)
            twin = self.spec.server.engine if self.spec.server else None
            reuse = isinstance(twin, LlamaCppSpec) and twin.cache_prompt
            body.update(ignore_eos=True, n_predict=n, cache_prompt=reuse)
        elif self.flavor == "llama-cpp-python":
            # its server defaults repeat_penalty to 1.1, which is not greedy decoding
            body.update(min_tokens=n, repeat_penalty=1.0)
        body.update(self.spec.extra_body)
        return path, body

    async def stream(self, request: GenRequest) -> AsyncIterator[TokenEvent]:
        if self._client is None:
            raise EngineError(f"{self.name} is not running")
        limit = self.max_request_tokens()
        if request.prompt_tokens + request.max_tokens > limit:
            raise RequestRejected(
                f"prompt ({request.prompt_tokens}) + max_tokens ({request.max_tokens}) exceeds the "
                f"{limit}-token context of {self.name}"
            )
        path, body = self._body(request)
        self._in_flight += 1
        try:
            attempts = 2 if self.spec.retry_on_reset else 1
            for attempt in range(attempts):
                try:
                    async for ev in self._once(path, body, request):
                        yield ev
                    return
                except _Retryable as exc:
                    if attempt + 1 == attempts:
                        raise EngineError(str(exc)) from None
                    self.stats["retried"] += 1
        finally:
            self._in_flight -= 1

    async def _once(self, path: str, body: dict[str, Any], request: GenRequest) -> AsyncIterator[TokenEvent]:
        import httpx

        url = self.url + path
        answered = False
        try:
            async with self._client.stream("POST", url, json=body) as r:
                # from here on the server has answered: a dropped connection is a failed request
                answered = True
                self._unreachable = ""
                if r.status_code != 200:
                    text = (await r.aread()).decode(errors="replace")
                    raise EngineError(f"HTTP {r.status_code} from {url}: {_message(text)}")
                async for ev in self._events(r, request):
                    yield ev
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self._unreachable = f"cannot connect to {url}: {exc or type(exc).__name__}"
            raise EngineError(self._unreachable) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if not answered:  # the pooled connection was dead before the status line
                raise _Retryable(f"connection to {url} closed before any response: {exc}") from None
            raise EngineError(f"connection to {url} lost mid-stream: {type(exc).__name__}: {exc}") from None
        except httpx.TimeoutException as exc:
            raise EngineError(f"timeout talking to {url}: {type(exc).__name__}") from None

    async def _events(self, r: Any, request: GenRequest) -> AsyncIterator[TokenEvent]:
        """Parse the SSE stream; yield token events; reconcile the count at the end."""
        emitted, usage_tokens, done = 0, None, False
        cached: int | None = None  # prompt tokens the server served from its cache (None: not told)
        tail: list[TokenEvent] = []  # the last token asked for (and any past it): sent once the stream ends
        text_parts: list[str] = []
        data_lines: list[str] = []
        t_last = time.perf_counter()
        async for line in r.aiter_lines():
            if line.startswith(":"):  # SSE comment / keep-alive ping
                continue
            if line.startswith("data:"):
                data_lines.append(line[5:].lstrip(" "))
                continue
            if line.strip() or not data_lines:
                continue  # "event:", "id:", "retry:" fields, or stray blank lines
            payload = "\n".join(data_lines)
            data_lines = []
            if payload.strip() == "[DONE]":
                done = True
                break
            chunk = _parse(payload)
            t_last = time.perf_counter()
            told = cached_tokens_of(chunk)
            cached = cached if told is None else told
            if chunk.get("usage"):
                usage_tokens = int(chunk["usage"].get("completion_tokens") or 0) or usage_tokens
            for choice in chunk.get("choices") or []:
                text, ids = _delta(choice, self.spec.api)
                text_parts.append(text)
                if ids is not None:
                    n = len(ids)
                elif text:
                    n = 1
                else:
                    # an empty completions chunk mid-stream is a token whose bytes are held back (a
                    # split character); a chat chunk without content is the role / end marker
                    n = int(self.spec.api == "completions" and choice.get("finish_reason") is None)
                for k in range(n):
                    emitted += 1
                    ev = TokenEvent(ids[k] if ids else -1, t_last, text=text if k == 0 else "", cached_tokens=cached)
                    if emitted < request.max_tokens:
                        yield ev
                    else:
                        tail.append(ev)
        if data_lines and not done:  # a final event without its blank line
            payload = "\n".join(data_lines)
            done = payload.strip() == "[DONE]"
        if not done:
            raise EngineError(f"SSE stream ended before [DONE] after {emitted} tokens (truncated response)")
        total = self._count(usage_tokens, emitted, request, "".join(text_parts))
        if total < emitted:
            raise EngineError(f"server reported {total} output tokens but streamed {emitted} chunks")
        for ev in tail:
            yield dataclasses.replace(ev, cached_tokens=cached)
        for _ in range(total - emitted):  # tokens that shared a chunk we could not split
            yield TokenEvent(-1, t_last, cached_tokens=cached)

    def _count(self, usage_tokens: int | None, emitted: int, request: GenRequest, text: str) -> int:
        if usage_tokens is not None:
            self.stats["usage"] += 1
            return usage_tokens
        if emitted == request.max_tokens:
            self.stats["chunks"] += 1
            return emitted
        self.stats["tokenizer"] += 1
        return len(self._tok().encode(text))

    def _tok(self) -> Any:
        if self._tokenizer is None:
            from cliffbench.models import resolve_model
            from cliffbench.models.tokenizer import HfTokenizer

            hf_dir, _, _ = resolve_model(self.spec.model)
            if hf_dir is None:
                raise InputError("model.hf_path: counting tokens without server usage needs a tokenizer folder")
            self._tokenizer = HfTokenizer(hf_dir)
        return self._tokenizer


def cached_tokens_of(chunk: dict[str, Any]) -> int | None:
    """Prompt tokens served from the server's cache as one SSE chunk tells them: OpenAI's
    `usage.prompt_tokens_details.cached_tokens`, else llama-server's `timings.cache_n`; None where
    the chunk tells neither (or not as a count)."""
    usage = chunk.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    timings = chunk.get("timings")
    for value in (
        details.get("cached_tokens") if isinstance(details, dict) else None,
        timings.get("cache_n") if isinstance(timings, dict) else None,
    ):
        # bool is an int to Python: a `true` is no count
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _parse(payload: str) -> dict[str, Any]:
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError:
        raise EngineError(f"malformed SSE data (not JSON): {payload[:120]!r}") from None
    if not isinstance(chunk, dict):
        raise EngineError(f"malformed SSE data (not an object): {payload[:120]!r}")
    if "error" in chunk:
        raise EngineError(f"server error in stream: {_message(json.dumps(chunk))}")
    return chunk


def _delta(choice: dict[str, Any], api: str) -> tuple[str, list[int] | None]:
    text = ((choice.get("delta") or {}).get("content") if api == "chat" else choice.get("text")) or ""
    ids = choice.get("token_ids")
    if not isinstance(ids, list):
        # llama-server streams a token's id only inside its logprobs (a request with `n_probs` >= 1):
        # one entry per token, `id` the sampled one
        content = (choice.get("logprobs") or {}).get("content")
        if isinstance(content, list) and content and all(isinstance(c, dict) and "id" in c for c in content):
            ids = [c["id"] for c in content]
    return str(text), [int(i) for i in ids] if isinstance(ids, list) else None


def _message(text: str) -> str:
    """The error message of an OpenAI-style error body, else the body's first 200 characters."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return " ".join(text.split())[:200] or "(empty body)"
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or err)[:200]
    return str(err)[:200]

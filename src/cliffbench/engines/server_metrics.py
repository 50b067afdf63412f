"""A served engine's own state, scraped from its Prometheus endpoint (`GET <root>/metrics`).

An `openai-http` engine cannot see inside the server through the OpenAI API. vLLM's server
always exposes `/metrics`; llama-server does with `--metrics` (the kit's launcher passes it);
llama-cpp-python's server has none. A `MetricsScraper` polls it on a task of its own every
`interval_s` while the engine runs, and keeps the latest reading as a `KvMemory`, the same state
sample the in-process engines give: running and waiting requests, the KV pool's use (a fraction:
a server reports no bytes), preemptions, and for vLLM the cumulative queue-time histogram (its
delta over a level gives that level's mean queue wait: per-request queue time is not observable
over HTTP). Names, by server (vLLM 0.32 `v1/metrics/loggers.py`, llama.cpp `server-context.cpp`):

- vLLM: `vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`
  (older: `vllm:gpu_cache_usage_perc`), `vllm:num_preemptions_total`, and the histogram
  `vllm:request_queue_time_seconds` (`_sum`, `_count`).
- llama-server: `llamacpp:requests_processing`, `llamacpp:requests_deferred` (waiting for a
  slot), `llamacpp:kv_cache_usage_ratio` (dropped by newer builds), `llamacpp:n_decode_total`
  and the gauge `llamacpp:n_busy_slots_per_decode` (their product: sequences decoded, summed).

Cumulative counters are kept monotone across a server restart (a counter that goes down has
been reset: what it had counted is carried over), so a level's delta never goes negative.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

from cliffbench.engines.base import KvMemory

__all__ = ["MetricsScraper", "ServerReading", "metrics_url", "parse_metrics"]

SCRAPE_INTERVAL_S = 0.3
SCRAPE_TIMEOUT_S = 2.0

_RUNNING = ("vllm:num_requests_running", "llamacpp:requests_processing")
_WAITING = ("vllm:num_requests_waiting", "llamacpp:requests_deferred")
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "llamacpp:kv_cache_usage_ratio")
_PREEMPT = ("vllm:num_preemptions_total", "vllm:num_preemptions")
_QUEUE_SUM = ("vllm:request_queue_time_seconds_sum",)
_QUEUE_COUNT = ("vllm:request_queue_time_seconds_count",)
_STEPS = ("llamacpp:n_decode_total",)
_BUSY_PER_STEP = ("llamacpp:n_busy_slots_per_decode",)
_COUNTERS = ("preemptions", "queue_sum_s", "queue_count", "steps", "decode_seqs")
_WANTED = frozenset((*_RUNNING, *_WAITING, *_KV, *_PREEMPT, *_QUEUE_SUM, *_QUEUE_COUNT, *_STEPS, *_BUSY_PER_STEP))


def _wanted_lines(text: str) -> str:
    """The sample lines of the metrics read here. vLLM's page holds ~1,000 lines of histogram
    buckets: parsed whole it takes ~15 ms of the event loop per scrape, this keeps it to ~1 ms. The
    comment lines go too: untyped samples parse to the same names and values."""
    keep = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in _WANTED:
                keep.append(line)
    return "\n".join(keep) + "\n"


@dataclass(frozen=True)
class ServerReading:
    """One parse of a /metrics page; None: the server does not expose that metric."""

    running: float | None = None
    waiting: float | None = None
    kv_usage: float | None = None
    preemptions: float | None = None
    queue_sum_s: float | None = None
    queue_count: float | None = None
    steps: float | None = None
    decode_seqs: float | None = None

    def known(self) -> bool:
        return self.running is not None or self.waiting is not None or self.kv_usage is not None


def _first(values: dict[str, float], names: tuple[str, ...]) -> float | None:
    return next((values[n] for n in names if n in values), None)


def parse_metrics(text: str) -> ServerReading:
    """The state in a Prometheus text page. Samples of one name are summed over their labels
    (vLLM labels each by model and engine index: a data-parallel server has several)."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(_wanted_lines(text)):
            for s in family.samples:
                if not math.isnan(s.value):
                    values[s.name] = values.get(s.name, 0.0) + float(s.value)
    except ValueError:
        return ServerReading()  # not a Prometheus page (a server's HTML 200 for any path)
    kv = _first(values, _KV)
    steps, busy = _first(values, _STEPS), _first(values, _BUSY_PER_STEP)
    return ServerReading(
        running=_first(values, _RUNNING),
        waiting=_first(values, _WAITING),
        kv_usage=None if kv is None else min(max(kv, 0.0), 1.0),
        preemptions=_first(values, _PREEMPT),
        queue_sum_s=_first(values, _QUEUE_SUM),
        queue_count=_first(values, _QUEUE_COUNT),
        steps=steps,
        decode_seqs=None if steps is None or busy is None else steps * busy,
    )


def metrics_url(base_url: str) -> str:
    """`http://h:p/v1` -> `http://h:p/metrics` (the endpoint sits at the server's root)."""
    root = base_url.rstrip("/")
    root = root.removesuffix("/v1")
    return f"{root}/metrics"


@dataclass
class _Monotone:
    """A cumulative counter made monotone across resets of the server's own."""

    last: float = 0.0
    carried: float = 0.0

    def update(self, raw: float) -> float:
        if raw < self.last:  # reset (the server restarted): keep what it had counted
            self.carried += self.last
        self.last = raw
        return self.carried + raw


@dataclass
class MetricsScraper:
    """Reads `url` once at start and, where that worked, every `interval_s` on a task of its own;
    `memory()` is the latest reading. `status`: 'waiting' (not read yet), 'ok', or why no server
    state is available ('HTTP 404', 'no known metrics', a connection error): then `memory()`
    holds only the client's in-flight count and says so (source 'none'); it is not an error. A
    reading that fails mid-level (the server died) keeps the last state until one succeeds."""

    url: str
    interval_s: float = SCRAPE_INTERVAL_S
    status: str = "waiting"
    scrapes: int = 0
    latest: ServerReading = field(default_factory=ServerReading)
    _counters: dict[str, _Monotone] = field(default_factory=lambda: {k: _Monotone() for k in _COUNTERS})
    _cumulative: dict[str, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _client: Any = None

    async def start(self, headers: dict[str, str]) -> None:
        """Read once (the state before any level), then poll on a task of its own. The scraper has
        a client of its own: a scrape never takes a connection from the load's pool."""
        import httpx

        self._client = httpx.AsyncClient(timeout=httpx.Timeout(SCRAPE_TIMEOUT_S), headers=headers)
        await self.scrape_once()
        if self.status == "ok":  # a server that has no /metrics at start will not grow one
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def scrape_once(self) -> None:
        """One GET and parse; any failure becomes `status` (the scrape never fails a level)."""
        try:
            r = await self._client.get(self.url)
        except Exception as exc:  # a dead server is the request path's to report
            self.status = f"{type(exc).__name__}"
            return
        if r.status_code != 200:
            self.status = f"HTTP {r.status_code}"
            return
        reading = parse_metrics(r.text)
        if not reading.known():
            self.status = "no known metrics"
            return
        self.scrapes += 1
        self.status = "ok"
        self.latest = reading
        for k in _COUNTERS:
            raw = getattr(reading, k)
            if raw is not None:
                self._cumulative[k] = self._counters[k].update(raw)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.scrape_once()

    def memory(self, in_flight: int) -> KvMemory:
        if self.scrapes == 0:
            return KvMemory(reserved_bytes=0, live_bytes=0, live_seqs=in_flight, waiting=0, source="none")
        s, c = self.latest, self._cumulative
        return KvMemory(
            reserved_bytes=0,
            live_bytes=0,
            live_seqs=round(s.running if s.running is not None else in_flight),
            waiting=round(s.waiting or 0),
            steps=round(c.get("steps", 0)),
            decode_seqs=round(c.get("decode_seqs", 0)),
            preemptions=round(c.get("preemptions", 0)),
            kv_usage=math.nan if s.kv_usage is None else s.kv_usage,
            queue_wait_sum_s=c.get("queue_sum_s", math.nan),
            queue_wait_count=round(c.get("queue_count", 0)),
            source="metrics",
        )

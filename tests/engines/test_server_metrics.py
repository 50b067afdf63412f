"""The /metrics scrape of a served engine: the parse of each server's page (the names as vLLM 0.32
and llama.cpp's server print them), counters kept monotone across a server restart, and the
scraper against a stub server (a page that changes, no endpoint, metrics missing). The real
servers are scraped in test_http.py, test_servers.py and test_vllm_serve.py."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from cliffbench.bench.load.driver import MEMORY_COLUMNS, run_level
from cliffbench.engines import GenRequest
from cliffbench.engines.server_metrics import MetricsScraper, metrics_url, parse_metrics
from tests.engines.test_http import _response, _sse, _sse_response, _tok, serving

VLLM_PAGE = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 7.0
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="0.3",model_name="m"} 4.0
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="m"} 10.0
vllm:request_queue_time_seconds_count{engine="0",model_name="m"} 10.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="m"} 4.5
"""

# llama.cpp's server (server-context.cpp): counters, then gauges; newer builds print no KV ratio
LLAMA_PAGE = """# HELP llamacpp:n_decode_total Total number of llama_decode() calls
# TYPE llamacpp:n_decode_total counter
llamacpp:n_decode_total 200
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 4
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 3
# TYPE llamacpp:n_busy_slots_per_decode gauge
llamacpp:n_busy_slots_per_decode 2.5
"""


def test_vllm_page_sums_labels_and_reads_the_queue_histogram() -> None:
    r = parse_metrics(VLLM_PAGE)
    assert (r.running, r.waiting, r.kv_usage, r.preemptions) == (4.0, 2.0, 0.25, 7.0)
    assert (r.queue_sum_s, r.queue_count) == (4.5, 10.0)
    older = parse_metrics(VLLM_PAGE.replace("kv_cache_usage_perc", "gpu_cache_usage_perc"))
    assert older.kv_usage == 0.25


def test_llama_server_page_gives_slots_queue_and_steps() -> None:
    r = parse_metrics(LLAMA_PAGE)
    assert (r.running, r.waiting, r.kv_usage) == (4.0, 3.0, None)
    assert (r.steps, r.decode_seqs) == (200.0, 500.0)
    assert parse_metrics(LLAMA_PAGE + "llamacpp:kv_cache_usage_ratio 0.5\n").kv_usage == 0.5


def test_page_without_known_metrics_or_not_prometheus() -> None:
    assert not parse_metrics("# TYPE other_metric gauge\nother_metric 1\n").known()
    assert not parse_metrics("<html><body>hello</body></html>").known()


def test_metrics_url_is_at_the_server_root() -> None:
    assert metrics_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://h:1/v1/") == "http://h:1/metrics"
    assert metrics_url("http://h:1") == "http://h:1/metrics"


class _Pages:
    """A client whose GET returns the next of `pages` (status, text)."""

    def __init__(self, pages: list[tuple[int, str]]) -> None:
        self.pages = pages

    async def get(self, url: str) -> Any:
        status, text = self.pages.pop(0)
        return type("R", (), {"status_code": status, "text": text})()


def test_counters_stay_monotone_across_a_server_restart() -> None:
    page = "vllm:num_requests_running 1\nvllm:num_preemptions_total {}\n"
    scraper = MetricsScraper("http://x/metrics")
    scraper._client = _Pages([(200, page.format(n)) for n in (5, 8, 2, 4)])  # reset after 8
    seen = []
    for _ in range(4):
        asyncio.run(scraper.scrape_once())
        seen.append(scraper.memory(0).preemptions)
    assert seen == [5, 8, 10, 12]


def test_missing_metrics_are_nan_or_zero_not_invented() -> None:
    scraper = MetricsScraper("http://x/metrics")
    scraper._client = _Pages([(200, "llamacpp:requests_processing 2\n"), (500, "boom")])
    asyncio.run(scraper.scrape_once())
    m = scraper.memory(in_flight=5)
    assert (m.source, m.live_seqs, m.waiting, m.preemptions) == ("metrics", 2, 0, 0)
    assert math.isnan(m.kv_usage) and math.isnan(m.queue_wait_sum_s)
    asyncio.run(scraper.scrape_once())  # a failed read mid-level keeps the last state
    assert scraper.status == "HTTP 500" and scraper.memory(5).live_seqs == 2


def test_no_metrics_endpoint_is_recorded_not_an_error() -> None:
    ok = _sse_response(_sse([_tok("a"), _tok("b"), _tok("c")]))

    async def go() -> tuple[str, set[str], list[int]]:
        from tests.engines.test_http import stub

        async with serving(stub(lambda n, p, b: ok)) as engine:
            reqs = [GenRequest(i, (1, 2), max_tokens=3, prompt_text="x") for i in range(3)]
            run = await run_level(engine, reqs, concurrency=2)
            states = {str(s[MEMORY_COLUMNS.index("state_source")]) for s in run.memory}
            return str(engine.describe()["server_metrics"]), states, [r.output_tokens for r in run.records]

    status, states, out = asyncio.run(go())
    assert status == "HTTP 404" and states == {"none"} and out == [3, 3, 3]


def _metrics_stub(pages: list[str], gate: asyncio.Event) -> Any:
    """A stub serving `pages` in turn at /metrics (the last one again), and completions that
    wait for `gate`: a level with requests in flight while the scraper reads."""
    from tests.engines.test_http import MODELS, _read_request

    served = iter(pages)
    last = [pages[0]]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                path, _ = await _read_request(reader)
                if path.endswith("/models"):
                    writer.write(_response("200 OK", MODELS))
                elif path == "/metrics":
                    last[0] = next(served, last[0])
                    writer.write(_response("200 OK", last[0].encode(), "text/plain"))
                else:
                    await gate.wait()
                    writer.write(_sse_response(_sse([_tok("a"), _tok("b")])))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


def test_scraped_state_reaches_the_level_memory_samples() -> None:
    busy = VLLM_PAGE.replace('num_preemptions_total{engine="0",model_name="m"} 7.0', "num_preemptions_total 9")
    idle = "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\nvllm:num_preemptions_total 7\n"

    async def go() -> list[tuple[Any, ...]]:
        gate = asyncio.Event()
        async with serving(_metrics_stub([idle, busy], gate)) as engine:
            engine._scraper.interval_s = 0.05  # type: ignore[union-attr]
            asyncio.get_running_loop().call_later(0.5, gate.set)
            reqs = [GenRequest(i, (1, 2), max_tokens=2, prompt_text="x") for i in range(2)]
            run = await run_level(engine, reqs, concurrency=2)
            return run.memory

    samples = asyncio.run(go())
    col = {c: i for i, c in enumerate(MEMORY_COLUMNS)}
    assert {s[col["state_source"]] for s in samples} == {"metrics"}
    assert max(s[col["live_seqs"]] for s in samples) == 4 and max(s[col["waiting"]] for s in samples) == 2
    # preemptions over the level: the counter's delta (7 -> 9), the queue histogram's sum and count
    assert max(s[col["preemptions"]] for s in samples) - min(s[col["preemptions"]] for s in samples) == 2
    assert max(s[col["queue_wait_count"]] for s in samples) == 10

"""What scraping a server's /metrics during a level costs the load loop.

An OpenAI-compatible stub on a thread of its own (127.0.0.1) streams 32 tokens per request, one
every 5 ms, and serves at /metrics a page the size of vLLM's (~85 KB: 30 histograms of 30 buckets
beside the metrics the kit reads). The same closed-loop level runs through the openai-http engine
with the scrape on (every 0.3 s, the kit's interval) and off (the stub answers 404), alternating,
and the harness's own event-loop lag (bench.load.driver's probe) is compared. A quick check on a
shared machine: it says whether the scrape shows in the lag, not the lag of a quiet machine.

    .venv/bin/python benchmarks/metrics_scrape_cost.py [--users 16] [--requests 480] [--rounds 3] [--quick]

Prints a table and writes data/results/metrics_scrape_cost.json (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cliffbench.bench.load.driver import run_level
from cliffbench.bench.store.bench_record import RepeatedNumber, loadavg, new_record, write_result
from cliffbench.engines import GenRequest, make_engine
from cliffbench.engines.specs import OpenAIHttpSpec

OUT = Path(__file__).parents[1] / "data" / "results" / "metrics_scrape_cost.json"
MODELS = json.dumps({"data": [{"id": "stub", "owned_by": "vllm"}]}).encode()
TOKEN = b'data: {"choices": [{"index": 0, "text": "a", "finish_reason": null}]}\n\n'
USAGE = b'data: {"choices": [], "usage": {"completion_tokens": 32}}\n\ndata: [DONE]\n\n'


def vllm_sized_page() -> bytes:
    lines = [
        'vllm:num_requests_running{engine="0",model_name="m"} 4.0',
        'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0',
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.3',
        'vllm:num_preemptions_total{engine="0",model_name="m"} 0.0',
        'vllm:request_queue_time_seconds_count{engine="0",model_name="m"} 10.0',
        'vllm:request_queue_time_seconds_sum{engine="0",model_name="m"} 1.5',
    ]
    for f in range(30):
        lines += [f"# HELP vllm:hist_{f}_seconds a histogram", f"# TYPE vllm:hist_{f}_seconds histogram"]
        lines += [f'vllm:hist_{f}_seconds_bucket{{engine="0",le="{b / 10}",model_name="m"}} {b}.0' for b in range(30)]
    return ("\n".join(lines) + "\n").encode()


class Stub:
    def __init__(self) -> None:
        self.metrics = True
        self.url = ""
        self._page = vllm_sized_page()
        self._ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True).start()
        assert self._ready.wait(10)

    async def _main(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        self._ready.set()
        await asyncio.Event().wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ")[1]
                length = next(
                    (int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length:")), 0
                )
                if length:
                    await reader.readexactly(length)
                if path.endswith(b"/models") or path == b"/metrics":
                    ok = path != b"/metrics" or self.metrics
                    body = MODELS if path.endswith(b"/models") else (self._page if ok else b"no")
                    status = b"200 OK" if ok else b"404 Not Found"
                    writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                for _ in range(32):
                    writer.write(TOKEN)
                    await writer.drain()
                    await asyncio.sleep(0.005)
                writer.write(USAGE)
                await writer.drain()
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def one_level(stub: Stub, users: int, n: int, scrape: bool) -> dict[str, Any]:
    stub.metrics = scrape
    engine = make_engine(OpenAIHttpSpec(url=stub.url, flavor="vllm", served_model="stub", max_connections=users))
    await engine.start()
    try:
        reqs = [GenRequest(i, (1, 2, 3), max_tokens=32, prompt_text="x") for i in range(n)]
        run = await run_level(engine, reqs, concurrency=users)
        status = str(engine.describe()["server_metrics"])
    finally:
        await engine.stop()
    assert all(r.status == "ok" for r in run.records), [r.error for r in run.records][:3]
    return {
        "scrape": status,
        "lag_p99_ms": run.lag_p99_s * 1e3,
        "loop_cpu_share": run.loop_cpu_share,
        "wall_s": run.wall_s,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    stub = Stub()
    rows = []
    for r in range(args.rounds):
        for scrape in (True, False) if r % 2 == 0 else (False, True):
            row = await one_level(stub, args.users, args.requests, scrape)
            rows.append(row)
            lag, cpu = row["lag_p99_ms"], row["loop_cpu_share"]
            print(
                f"scrape {row['scrape']:8s} lag p99 {lag:6.2f} ms  loop cpu {cpu:.2f}  {row['wall_s']:.1f} s",
                flush=True,
            )
    on = [x["lag_p99_ms"] for x in rows if x["scrape"] == "ok"]
    off = [x["lag_p99_ms"] for x in rows if x["scrape"] != "ok"]
    return {
        "what": "event-loop lag p99 of one closed-loop level through openai-http, /metrics scraped every 0.3 s or not",
        "users": args.users,
        "requests": args.requests,
        "median_lag_p99_ms_scraped": statistics.median(on),
        "median_lag_p99_ms_not_scraped": statistics.median(off),
        "loadavg_1m": os.getloadavg()[0],
        "rows": rows,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--requests", type=int, default=480)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="4 users, 40 requests, 1 round, JSON to a temp dir")
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    a = ap.parse_args()
    if a.quick:
        a.users, a.requests, a.rounds = 4, 40, 1
    path: Path = a.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if a.quick else OUT)
    before = loadavg()
    out = asyncio.run(main_async(a))
    lags = {s: [x["lag_p99_ms"] for x in out["rows"] if (x["scrape"] == "ok") == s] for s in (True, False)}
    numbers = [
        RepeatedNumber(
            name=f"lag p99, {'scraped' if s else 'not scraped'}", unit="ms", higher_is_better=False, values=v
        )
        for s, v in lags.items()
        if v  # a scrape that never answered leaves one side empty: the file is still written
    ]
    write_result(path, out, new_record("metrics_scrape_cost", a.rounds, numbers, before))
    on, off = out["median_lag_p99_ms_scraped"], out["median_lag_p99_ms_not_scraped"]
    print(f"median lag p99: scraped {on:.2f} ms, not scraped {off:.2f} ms; wrote {path}")


if __name__ == "__main__":
    main()

"""Load from several client processes: where one asyncio client falls short and K do not.

A local OpenAI-compatible server that answers instantly (written here, 127.0.0.1 only, raw asyncio
on uvloop, `--server-procs` processes sharing one port by SO_REUSEPORT, each answering a completion
with its whole SSE stream at once: the tokens, usage, [DONE]) is driven through the same path
`cliffbench run` takes: a study of one `openai-http` engine, run by the sweep, each level through
`run_split` with `load.client_processes` K = 1, 2, 4 at 256, 1024 and 4096 closed-loop users.
Every (K, users) cell is a level set of its own, so a repeat runs every cell once and the repeats
interleave the cells (`--reps`, at least 2); the spread is the range over repeats.

With an instant server every second a request spends in flight is the client's and the kernel's:
- achieved/target: the level's stored `achieved_concurrency` over the users (the client's view:
  in flight from submit to stream close), and the same over the steady state only (from the last
  first-wave submit to the first submit of the last wave, as benchmarks/loadgen_precision.py);
- overhead: e2e p50/p99 of a request (the server's answer costs microseconds), client event-loop
  CPU per request (all clients' loop threads), request rate, loop lag p99 and GIL wait p99 of the
  worst client.

The machine has 2 cores, shared by the server, the K clients and whatever else runs (other agents
here): that caps what K can show. The JSON records loadavg before and after, the CPU the server
used, and the foreign CPU of every level.

    .venv/bin/python benchmarks/multi_client.py [--reps 2] [--scale 1] [--server-procs 1] [--quick]

Writes benchmarks/results/multi_client.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import socket
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from cliffbench.bench.load.driver import RequestRecord
from cliffbench.bench.progress.reporter import LevelTask
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.bench_record import RepeatedNumber, new_record, write_result
from cliffbench.bench.store.levels import LevelInfo, load_results, read_level
from cliffbench.bench.sweep import run_study
from cliffbench.hardware import cpu_info

OUT = Path(__file__).parent / "results" / "multi_client.json"
USERS: tuple[int, ...] = (256, 1024, 4096)
KS: tuple[int, ...] = (1, 2, 4)
OUTPUT_TOKENS = 4

# -- the instant server ---------------------------------------------------------------------------

_MODELS = json.dumps({"object": "list", "data": [{"id": "instant", "object": "model", "owned_by": "bench"}]})


def _response(ctype: str, body: bytes) -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body


def _completion(n: int) -> bytes:
    tok = json.dumps({"choices": [{"index": 0, "text": "a", "finish_reason": None}]})
    usage = json.dumps({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}})
    body = "".join(f"data: {tok}\n\n" for _ in range(n)) + f"data: {usage}\n\ndata: [DONE]\n\n"
    return _response("text/event-stream", body.encode())


class _Http(asyncio.Protocol):
    """Keep-alive HTTP/1.1, requests with a content-length body; every answer written at once."""

    served = 0
    _cache: dict[int, bytes] = {}  # noqa: RUF012 (one per process: the answer of each max_tokens)

    def connection_made(self, transport: Any) -> None:  # uvloop's transports are not asyncio's classes
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            size = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + size:
                return
            body, self.buf = self.buf[end + 4 : end + 4 + size], self.buf[end + 4 + size :]
            if head.startswith(b"get"):
                self.transport.write(_response("application/json", _MODELS.encode()))
                continue
            n = int(json.loads(body)["max_tokens"])
            if n not in _Http._cache:
                _Http._cache[n] = _completion(n)
            self.transport.write(_Http._cache[n])
            _Http.served += 1


def _server_main(port: int, conn: Connection) -> None:

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Http, "127.0.0.1", port, reuse_port=True, backlog=8192)
        conn.send("ready")
        await loop.run_in_executor(None, conn.recv)  # "stop"
        server.close()
        conn.send(_Http.served)

    try:  # uvloop (vLLM's and uvicorn's dependency) serves faster; plain asyncio otherwise
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


@contextlib.contextmanager
def instant_server(processes: int) -> Iterator[tuple[str, list[BaseProcess]]]:
    """`processes` server processes on one 127.0.0.1 port; yields (base URL, processes)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs: list[BaseProcess] = []
    conns: list[Connection] = []
    for _ in range(processes):
        a, b = ctx.Pipe()
        p = ctx.Process(target=_server_main, args=(port, b), daemon=True, name="instant-openai-server")
        p.start()
        procs.append(p)
        conns.append(a)
    try:
        for c in conns:
            assert c.poll(60) and c.recv() == "ready", "the instant server did not start"
        yield f"http://127.0.0.1:{port}/v1", procs
    finally:
        for c in conns:
            with contextlib.suppress(OSError):
                c.send("stop")
        for proc, c in zip(procs, conns, strict=True):
            with contextlib.suppress(OSError, EOFError):
                if c.poll(10):
                    print(f"server pid {proc.pid} answered {c.recv()} completions")
            proc.join(10)
            if proc.is_alive():
                proc.kill()


# -- the study ------------------------------------------------------------------------------------


def _cell(k: int, users: int) -> str:
    return f"k{k}-u{users:04d}"


# seconds during which users submit, per user count (the benchmark must fit ~5 minutes on a shared
# 2-core machine): a client too slow to finish its first wave within it has no steady state (NaN)
DURATION_S = {256: 2.0, 1024: 2.5, 4096: 4.0}
MAX_RATE_RPS = 1500  # the request pool covers this rate for the whole duration: no level runs dry


def study(url: str, model_dir: Path, reps: int, scale: float = 1.0, only: str = "") -> StudySpec:
    sets = [
        {
            "name": _cell(k, u),
            "workload": {"prompt": {"mean": 8}, "output": {"mean": OUTPUT_TOKENS}},
            "load": {
                "concurrency": [u],
                "client_processes": k,
                # levels end by their duration, with requests to spare
                "requests_per_level": 64,
                "requests_per_user": math.ceil(MAX_RATE_RPS * DURATION_S[u] * scale / u) + 2,
                "duration_s": DURATION_S[u] * scale,
                "warmup_requests": 0,
                "request_timeout_s": 120.0,
                "max_lag_s": 0.005,
                "repeats": reps,
            },
        }
        for u in USERS
        for k in KS
        if only in _cell(k, u)
    ]
    engine = {
        "kind": "openai-http",
        "label": "instant",
        "url": url,
        "flavor": "generic",
        "served_model": "instant",
        "max_connections": max(USERS),
        "model": {"hf_path": str(model_dir)},
    }
    return StudySpec.model_validate(
        {
            "name": "multi-client",
            "tokenizer": "fake",
            # measure every level once, flagged when others ate the CPU (this benchmark reports it)
            "busy": {"max_foreign_cores": 2.0, "reruns": 0},
            "engines": [engine],
            "level_sets": sets,
        }
    )


class ServerCpu:
    """A sweep reporter that reads the server processes' CPU seconds at each level's start and end."""

    def __init__(self, servers: list[BaseProcess]) -> None:
        self.procs = [psutil.Process(p.pid) for p in servers if p.pid is not None]
        self.start: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.current = ""
        self.t0 = time.perf_counter()

    def _cpu(self) -> float:
        return sum(p.cpu_times().user + p.cpu_times().system for p in self.procs)

    def study_planned(self, tasks: list[LevelTask]) -> None: ...

    def level_started(self, key: str, n_requests: int) -> None:
        self.current, self.start[key] = key, self._cpu()

    def request_done(self, record: RequestRecord) -> None: ...

    def level_finished(self, info: LevelInfo) -> None:
        self.used[info.level_key] = self._cpu() - self.start.get(info.level_key, float("nan"))
        s = info.summary
        n_ok, request_s = (s.counts.n_ok, s.throughput.request_s) if s else (0, float("nan"))
        print(
            f"{time.perf_counter() - self.t0:6.0f} s  {info.level_key:28s} {info.status:6s} {info.wall_s:5.1f} s, "
            f"{n_ok:>6} ok, {request_s:6.0f} req/s, "
            f"foreign {info.foreign_cores:.2f} cores",
            flush=True,
        )
        if info.status != "ok":
            print(f"        {info.error[:300]}", flush=True)

    def level_skipped(self, key: str) -> None: ...


def _steady(requests: pd.DataFrame, users: int) -> float:
    """Achieved concurrency while every user is active: from the moment the last user sent its
    first request to the last submit (the level's duration is over after it: users stop)."""
    from cliffbench.bench.metrics.level import achieved_concurrency

    m = requests[~requests["warmup"]]
    starts = np.sort(m["t_submit_s"].to_numpy())
    if starts.size <= users or starts[-1] <= starts[users - 1]:
        return float("nan")
    window = (float(starts[users - 1]), float(starts[-1]))
    return achieved_concurrency(m["t_submit_s"].to_numpy(), m["t_done_s"].to_numpy(), window)


def cells(root: Path, server_cpu: dict[str, float]) -> list[dict[str, Any]]:
    res = load_results("multi-client", root)
    out = []
    for _, lv in res.levels.iterrows():
        folder = root / "multi-client" / "levels" / str(lv["level_key"])
        info = read_level(folder)
        k, users = int(lv["level_set"][1 : lv["level_set"].index("-")]), int(lv["concurrency"])
        req = res.requests[res.requests["level_key"] == lv["level_key"]]
        ok = req[(req["status"] == "ok") & ~req["warmup"]]
        e2e = (ok["t_done_s"] - ok["t_submit_s"]).to_numpy()
        if info.clients:
            loop_cpu_s = sum(c.loop_cpu_share * c.wall_s for c in info.clients)
        else:
            loop_cpu_s = info.loop_cpu_share * info.wall_s
        s = info.summary
        assert s is not None, f"{info.level_key} never ran: {info.error}"
        out.append(
            {
                "k": k,
                "users": users,
                "repeat": int(lv["repeat"]),
                "status": info.status,
                "n_ok": s.counts.n_ok,
                "n_failed": s.counts.n_failed + s.counts.n_timeout,
                "achieved_over_target": s.achieved_concurrency / users,
                "steady_achieved_over_target": _steady(req, users) / users,
                "request_s": s.throughput.request_s,
                "e2e_p50_ms": float(np.percentile(e2e, 50) * 1e3) if e2e.size else float("nan"),
                "e2e_p99_ms": float(np.percentile(e2e, 99) * 1e3) if e2e.size else float("nan"),
                "client_loop_cpu_us_per_request": loop_cpu_s / max(1, len(ok)) * 1e6,
                "lag_p99_ms": info.lag_p99_s * 1e3,
                "thread_wait_p99_ms": info.thread_wait_p99_s * 1e3,
                "server_cpu_cores": server_cpu.get(info.level_key, float("nan")) / info.wall_s,
                "foreign_cores": info.foreign_cores,
                "wall_s": info.wall_s,
                "clients": [c.model_dump(mode="json") for c in info.clients],
            }
        )
    return out


def _spread(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    vals = [r[key] for r in runs]
    return {"median": float(np.median(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))}


def _range(row: dict[str, Any], key: str, fmt: str) -> str:
    s = row[key]
    return f"{s['min']:{fmt}}-{s['max']:{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every level's duration")
    ap.add_argument("--server-procs", type=int, default=1)
    ap.add_argument("--only", default="", help="run only the cells whose name holds this (k2-u4096); no JSON")
    ap.add_argument("--keep", type=Path, default=None, help="store the study here (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="256 users, K 1 and 2, 1 repeat, short levels, temp dir")
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT} ({OUT.name} in a temp dir with --quick)")
    args = ap.parse_args()
    out: Path = args.out or (Path(tempfile.mkdtemp(prefix="cliffbench-quick-")) / OUT.name if args.quick else OUT)
    if args.quick:  # a check that the script runs, not a measurement
        global USERS, KS
        USERS, KS = (256,), (1, 2)
        args.reps, args.scale = 1, 0.5
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, instant_server(args.server_procs) as (url, servers):
        root = args.keep or Path(tmp)
        model_dir = root / "served-model"  # the model the server "serves": a config.json only
        model_dir.mkdir(parents=True)
        config = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
        (model_dir / "config.json").write_text(
            json.dumps({**config, "vocab_size": 256, "max_position_embeddings": 2048})
        )
        reporter = ServerCpu(servers)
        run_study(study(url, model_dir, args.reps, args.scale, args.only), root=root / "results", reporter=reporter)
        runs = cells(root / "results", reporter.used)
    load_after = os.getloadavg()
    if args.only:
        return
    rows = []
    keys = (
        "achieved_over_target",
        "steady_achieved_over_target",
        "request_s",
        "e2e_p50_ms",
        "e2e_p99_ms",
        "client_loop_cpu_us_per_request",
        "lag_p99_ms",
        "thread_wait_p99_ms",
        "server_cpu_cores",
        "foreign_cores",
    )
    print(
        f"{'K':>2} {'users':>5} | {'ach/target':>16} {'steady':>16} | {'req/s':>13} | {'e2e p50 ms':>13} "
        f"{'e2e p99 ms':>13} | {'loop us/req':>11} {'lag p99 ms':>10} {'GIL p99 ms':>10} | {'server':>6} {'foreign':>7}"
    )
    for users in USERS:
        for k in KS:
            mine = [r for r in runs if r["k"] == k and r["users"] == users]
            row: dict[str, Any] = {"k": k, "users": users, "runs": mine}
            row.update({key: _spread(mine, key) for key in keys})
            rows.append(row)

            print(
                f"{k:>2} {users:>5} | {_range(row, 'achieved_over_target', '.3f'):>16} "
                f"{_range(row, 'steady_achieved_over_target', '.3f'):>16} | {_range(row, 'request_s', '.0f'):>13} | "
                f"{_range(row, 'e2e_p50_ms', '.0f'):>13} {_range(row, 'e2e_p99_ms', '.0f'):>13} | "
                f"{row['client_loop_cpu_us_per_request']['median']:>11.0f} {row['lag_p99_ms']['median']:>10.1f} "
                f"{row['thread_wait_p99_ms']['median']:>10.1f} | {row['server_cpu_cores']['median']:>6.2f} "
                f"{row['foreign_cores']['median']:>7.2f}"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = json.loads(  # numpy scalars of the stored levels as numbers (write_result's default quotes them)
        json.dumps(
            {
                "what": __doc__,
                "machine": {
                    "platform": platform.platform(),
                    "cpu": cpu_info().model or "",
                    "cores": os.cpu_count(),
                    "loadavg_before": load_before,
                    "loadavg_after": load_after,
                },
                "server": {
                    "processes": args.server_procs,
                    "shares_the_cores": "the server processes, the K clients and this driver share the machine's "
                    f"{os.cpu_count()} cores: K clients beyond what the cores left by the server can run "
                    "cannot add throughput here",
                    "answer": f"{OUTPUT_TOKENS} tokens, usage and [DONE] in one write (content-length)",
                },
                "settings": {
                    "reps": args.reps,
                    "duration_s": {u: d * args.scale for u, d in DURATION_S.items()},
                    "users": USERS,
                    "k": KS,
                    "output_tokens": OUTPUT_TOKENS,
                },
                "spread": "min-max (and median) over the repeats, which ran interleaved (repeat r of every cell "
                "before repeat r+1)",
                "notes": [
                    "achieved_over_target: the stored level summary (in flight from submit to stream close, "
                    "over first submit .. last token), so it includes the ramp (users waiting for their first "
                    "turn in a saturated loop; users whose turn comes after duration_s never send) and the drain",
                    "steady_achieved_over_target: NaN where the clients did not get every user's first request "
                    "out before the level's duration ended (no moment with every user active)",
                    "e2e: the server answers in microseconds, so e2e is queueing and work in the client(s)",
                    "client_loop_cpu_us_per_request: CPU of the clients' event-loop threads per ok request",
                    "foreign_cores: CPU used during the level by processes outside this benchmark (other agents "
                    "on the shared machine): every cell ran with that much less of the 2 cores",
                ],
                "cells": rows,
                "wall_s": time.perf_counter() - t0,
            },
            indent=2,
            default=float,
        )
    )
    numbers = [
        RepeatedNumber(name=f"K={r['k']} {r['users']} users {what}", unit=unit, higher_is_better=up, values=v)
        for r in rows
        for key, what, unit, up in (("request_s", "requests/s", "req/s", True), ("e2e_p99_ms", "e2e p99", "ms", False))
        if (v := [x[key] for x in r["runs"]])
    ]
    write_result(out, payload, new_record("multi_client", args.reps, numbers, list(load_before)))
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s; loadavg {load_before[0]:.2f} -> {load_after[0]:.2f}")


if __name__ == "__main__":
    main()

"""Load from several client processes (`load.client_processes`): the split, the merge, the clock
offsets, the per-client checks, and the failures (a client that dies, a cancelled level).

The server is a small OpenAI-compatible stub on a thread of the test process (127.0.0.1, a free
port): each completion streams its tokens `TOKEN_GAP_S` apart with usage and [DONE], so requests
last long enough for a concurrency to be measured. The client processes are real (spawned)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from cliffbench.bench import sweep
from cliffbench.bench.load.client_pool import ClientPool, Clients, Job, close_clients
from cliffbench.bench.load.clients import _merge_memory, run_split, split_requests, split_users
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import LevelInfo, load_results
from cliffbench.cli import app
from cliffbench.config import InputError, parse_spec
from cliffbench.engines import make_engine
from cliffbench.engines.base import EngineError, GenRequest
from cliffbench.engines.specs import OpenAIHttpSpec

pytestmark = pytest.mark.usefixtures("fixed_probe")

TOKEN_GAP_S = 0.004
MODELS = json.dumps({"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "stub"}]}).encode()


def _head(status: str, ctype: str, length: int | None) -> bytes:
    size = f"content-length: {length}\r\n" if length is not None else "transfer-encoding: chunked\r\n"
    return f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\n{size}\r\n".encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Stub:
    """Keep-alive HTTP/1.1: GET /v1/models, POST /v1/completions streamed as chunked SSE. With
    `stall`, completions never answer (a level that only a timeout or a cancel ends)."""

    def __init__(self, stall: bool = False) -> None:
        self.stall = stall
        self.url = ""
        self.bodies = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Stub:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._serve(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()
                tasks.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        self._ready.set()
        await self._stop.wait()
        server.close()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method = head.split(b" ", 1)[0]
            sizes = [int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")]
            length = sizes[0] if sizes else 0
            body = await reader.readexactly(length) if length else b""
            if method == b"GET":
                writer.write(_head("200 OK", "application/json", len(MODELS)) + MODELS)
                await writer.drain()
                continue
            self.bodies += 1
            if self.stall:
                await asyncio.sleep(3600)
            n = int(json.loads(body)["max_tokens"])
            writer.write(_head("200 OK", "text/event-stream", None))
            for _ in range(n):
                await asyncio.sleep(TOKEN_GAP_S)
                tok = {"choices": [{"index": 0, "text": "a", "finish_reason": None}]}
                writer.write(_chunk(b"data: " + json.dumps(tok).encode() + b"\n\n"))
            usage = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": n, "total_tokens": 4 + n}}
            writer.write(_chunk(b"data: " + json.dumps(usage).encode() + b"\n\n"))
            writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()


@pytest.fixture
def stub() -> Iterator[Stub]:
    with Stub() as s:
        yield s


def _study(url: str, root: Path, processes: int, users: list[int], **load: object) -> StudySpec:
    # the model the stub "serves", described by a config.json only: nothing is loaded
    model = root / "served-model"
    model.mkdir(exist_ok=True)
    config = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
    (model / "config.json").write_text(json.dumps({**config, "vocab_size": 256, "max_position_embeddings": 2048}))
    engine = {"kind": "openai-http", "label": "stub", "url": url, "flavor": "generic", "model": {"hf_path": str(model)}}
    return StudySpec.model_validate(
        {
            "name": "clients",
            "tokenizer": "fake",
            "busy": {"reruns": 0},
            "engines": [engine],
            "level_sets": [
                {
                    "name": "chat",
                    "workload": {"prompt": {"mean": 8}, "output": {"mean": 10}},
                    "load": {
                        "concurrency": users,
                        "requests_per_level": 24,
                        "warmup_requests": 2,
                        "client_processes": processes,
                        **load,
                    },
                }
            ],
        }
    )


def _no_client_left() -> None:
    close_clients()  # the pooled ones (idle clients also end by themselves)
    tree = psutil.Process().children(recursive=True)
    left = [p for p in tree if p.is_running() and "spawn_main" in " ".join(p.cmdline())]
    assert not left, f"client processes left: {left}"


# -- the split ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("users", "k"), [(1, 4), (5, 2), (8, 4), (4096, 4), (7, 3)])
def test_split_gives_every_user_and_request_to_one_client(users: int, k: int) -> None:
    counts = split_users(users, k)
    assert sum(counts) == users and len(counts) == min(users, k) and max(counts) - min(counts) <= 1
    reqs = [GenRequest(i, (1,), 2) for i in range(3 * users + 1)]
    shares = split_requests(reqs, users, k)
    ids = [r.request_id for s in shares for r in s]
    assert sorted(ids) == list(range(len(reqs)))  # each request once: ids stay unique in the merge
    # each client's share follows its users: no client runs out of requests while others have many
    per_user = [len(s) / u for s, u in zip(shares, counts, strict=True)]
    assert max(per_user) - min(per_user) <= 1.0


def test_memory_of_clients_is_summed_as_step_functions() -> None:
    a = [(0.0, 0, 0, 1, 0, 0, 0, 0), (1.0, 0, 0, 3, 0, 0, 0, 0)]
    b = [(0.5, 0, 0, 2, 0, 0, 0, 0), (2.0, 0, 0, 0, 0, 0, 0, 0)]
    merged = _merge_memory([a, b, []])
    assert [(s[0], s[3]) for s in merged] == [(0.0, 1), (0.5, 3), (1.0, 5), (2.0, 3)]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fake", "vllm", "llamacpp-slots"])
def test_in_process_engines_refuse_client_processes(kind: str, tmp_path: Path) -> None:
    data = {
        "name": "inproc",
        "engines": [{"kind": kind}],
        "level_sets": [{"name": "chat", "load": {"client_processes": 2}}],
    }
    with pytest.raises(InputError, match=r"level_sets\.0\.load\.client_processes: 2 client processes drive only"):
        parse_spec(StudySpec, data)
    # an engine the set does not run at all (only_at: []) is no obstacle
    data["engines"] = [{"kind": kind}, {"kind": "openai-http", "url": "http://127.0.0.1:9/v1"}]
    data["level_sets"][0]["load"]["only_at"] = {kind: []}  # type: ignore[index]
    assert parse_spec(StudySpec, data).level_sets[0].load.client_processes == 2
    p = tmp_path / "inproc.yaml"
    p.write_text(f"name: inproc\nengines:\n  - kind: {kind}\nlevel_sets:\n  - load: {{client_processes: 4}}\n")
    result = CliRunner().invoke(app, ["run", str(p), "--dry-run"])
    assert result.exit_code == 2 and "level_sets.0.load.client_processes" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_open_loop_split_needs_poisson_arrivals() -> None:
    load = {"arrival": "poisson", "rate_rps": [10], "burstiness": 4, "client_processes": 2}
    with pytest.raises(InputError, match="burstiness 1"):
        parse_spec(
            StudySpec,
            {"name": "x", "engines": [{"kind": "openai-http", "url": "http://h/v1"}], "level_sets": [{"load": load}]},
        )


# -- through the sweep ----------------------------------------------------------------------------


@pytest.mark.slow  # spawns two client interpreters
def test_two_clients_merge_into_one_level(stub: Stub, tmp_path: Path) -> None:
    sweep.run_study(_study(stub.url, tmp_path, 2, [4, 2]), root=tmp_path)
    res = load_results("clients", tmp_path)
    info = LevelInfo.model_validate_json((tmp_path / "clients/levels/stub__chat__c0004/level.json").read_text())
    assert info.status == "ok", info.error
    req = res.requests[res.requests["level_key"] == info.level_key]
    measured = req[~req["warmup"]]
    assert len(measured) == 24 and measured["request_id"].is_unique and (measured["status"] == "ok").all()
    assert req["warmup"].sum() == 2 and stub.bodies == 2 * 26  # each request sent once, by one client
    assert (res.tokens["level_key"] == info.level_key).sum() == 26 * 10
    # two clients of two users each, on this host's one clock: offsets within the round trip
    assert [c.users for c in info.clients] == [2, 2] and len({c.pid for c in info.clients}) == 2
    assert sum(c.requests for c in info.clients) == 24
    for c in info.clients:
        assert abs(c.clock_offset_s) <= c.clock_rtt_s / 2 + 1e-3 and c.clock_rtt_s < 0.1
        assert 0 <= c.start_late_s < 0.5  # the barrier: both started at the common time
        assert 1.0 <= c.achieved_concurrency <= 2.05 and c.lag_samples > 0
    # merged onto one clock: the level's timeline starts at 0 and holds every token
    assert measured["t_submit_s"].min() >= 0 and req["t_done_s"].max() <= info.wall_s + 1e-6
    assert 2.0 <= float(info.summary["achieved_concurrency"]) <= 4.05
    assert info.lag_p99_s == max(c.lag_p99_s for c in info.clients)
    assert (res.levels["client_processes"] == 2).all() and "clients" not in res.levels
    # the second level ran in the same two processes: clients start once, not per level
    other = LevelInfo.model_validate_json((tmp_path / "clients/levels/stub__chat__c0002/level.json").read_text())
    assert other.status == "ok" and {c.pid for c in other.clients} == {c.pid for c in info.clients}
    _no_client_left()


def test_one_process_stores_no_client_table(stub: Stub, tmp_path: Path) -> None:
    sweep.run_study(_study(stub.url, tmp_path, 1, [2]), root=tmp_path)
    info = LevelInfo.model_validate_json((tmp_path / "clients/levels/stub__chat__c0002/level.json").read_text())
    assert info.status == "ok" and info.clients == []


@pytest.mark.slow
def test_open_loop_splits_the_rate(stub: Stub, tmp_path: Path) -> None:
    spec = _study(stub.url, tmp_path, 2, [], arrival="poisson", rate_rps=[40.0])
    sweep.run_study(spec, root=tmp_path)
    info = LevelInfo.model_validate_json((tmp_path / "clients/levels/stub__chat__r40/level.json").read_text())
    assert info.status == "ok", info.error
    assert [c.rate_rps for c in info.clients] == [20.0, 20.0] and sum(c.requests for c in info.clients) == 24
    submits = np.sort(load_results("clients", tmp_path).requests.query("~warmup")["t_submit_s"].to_numpy())
    assert 10 < 24 / (submits[-1] - submits[0]) < 160  # about 40/s from the two streams together


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_client_that_fails_fails_the_level_and_leaves_no_process() -> None:
    bad = OpenAIHttpSpec(url="http://127.0.0.1:9/v1", served_model="m", flavor="generic").model_dump(mode="json")
    bad["url"] = "not a url"  # the client's own validation fails: as a client crashing at start
    good = {**bad, "url": "http://127.0.0.1:9/v1"}
    pool = ClientPool()
    jobs = [Job(0, good, [], [], {"concurrency": 1}), Job(1, bad, [], [], {"concurrency": 1})]
    clients = Clients(jobs, pool)
    try:
        with pytest.raises(EngineError, match=r"client process 1: ValidationError"):
            clients.drive()
    finally:
        clients.kill()  # what run_split does with a failed level's clients
    assert all(p.exitcode is not None for p in clients.procs) and pool.members == []
    _no_client_left()


@pytest.mark.slow
def test_cancelled_level_ends_its_clients() -> None:
    async def go(server: Stub) -> None:
        engine = make_engine(OpenAIHttpSpec(url=server.url, flavor="generic"))
        await engine.start()
        try:
            reqs = [GenRequest(i, (1, 2), 4, prompt_text="ab") for i in range(8)]
            task = asyncio.create_task(run_split(engine, reqs, processes=2, concurrency=4))
            while server.bodies < 4:  # both clients are in their level, their requests stalled
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await engine.stop()

    with Stub(stall=True) as server:
        asyncio.run(asyncio.wait_for(go(server), 60))
    _no_client_left()

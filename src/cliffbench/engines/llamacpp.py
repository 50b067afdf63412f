"""llama.cpp engines through llama-cpp-python's low-level API.

`llamacpp-slots` mirrors llama-server's scheduler (tools/server): `n_ctx = slots x ctx_per_slot`
is reserved up front, every step packs the next token of each generating slot and then as many
pending prompt tokens as fit in `n_batch` into one `llama_decode`, and requests wait FIFO while
every slot is busy. `llamacpp-serial` is the same machinery with one slot: one request at a time,
as llama-cpp-python's own server and Ollama with NUM_PARALLEL=1 serve. With `cache_prompt` a slot
keeps its tokens after a request and a new one goes to the slot llama-server would pick, evaluating
only what its prompt adds (slot_reuse.py). One slot follows the same rule, which is also
llama-cpp-python's Llama.generate (the longest prefix of its last tokens, less one when it covers
the prompt), except that Llama skips even that token when one prompt comes twice in a row with
its logits still live. With `max_queue` set, a request that finds that many already waiting is
rejected, as Ollama answers 503 (ErrMaxQueue).

The decode loop runs in one worker thread (ctypes releases the GIL inside llama_decode), and
tokens cross into asyncio with `call_soon_threadsafe`, so the harness's clock is never blocked.
Sampling is greedy (argmax) and EOS is ignored: output lengths are exact.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from cliffbench.config import InputError
from cliffbench.engines.base import EngineError, GenRequest, KvMemory, RequestRejected, TokenEvent
from cliffbench.engines.parallel import model_params
from cliffbench.engines.slot_reuse import FreeSlot, Pending, Slot, choose_slot, drop_idle_kept, release, start
from cliffbench.engines.specs import LlamaCppSpec

__all__ = ["FLASH_ATTN_TYPE", "LlamaCppEngine", "queue_full"]

# llama_context_params.flash_attn_type for each `flash_attn` setting
FLASH_ATTN_TYPE = {"auto": -1, "off": 0, "on": 1}
_DONE = object()


def _no_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    return None


def _quiet_log() -> Any:
    import llama_cpp as lc

    return lc.llama_log_callback(_no_log)


# llama.cpp logs every graph input at load; a module-level reference keeps the callback alive
_QUIET_LOG: Any = None


def queue_full(queued: int, free_slots: int, max_queue: int | None) -> bool:
    """Whether a request arriving now is rejected: of `queued` requests not yet in a slot, up to
    `free_slots` are about to run, and `max_queue` or more of the rest already wait (Ollama's
    pending channel of size OLLAMA_MAX_QUEUE is full). None: never."""
    return max_queue is not None and queued - free_slots >= max_queue


class LlamaCppEngine:
    """`llamacpp-serial` (one slot) and `llamacpp-slots` (N static slots) in one class."""

    def __init__(self, spec: LlamaCppSpec) -> None:
        from cliffbench.models import resolve_model

        self.spec = spec
        self.name = spec.name
        self.n_slots, ctx_per_slot, self.kv_unified = spec.slot_layout()
        self.n_ctx = self.n_slots * ctx_per_slot
        self.n_threads = spec.threads()
        _, gguf_path, shapes = resolve_model(spec.model)
        if gguf_path is None:
            raise InputError("model.gguf_path: llama.cpp needs a GGUF file; prepare a model or set gguf_path")
        self.gguf_path: Path = gguf_path
        self.kv_bytes_per_token = shapes.kv_bytes_per_token(spec.kv_dtype_bytes())
        self.n_ctx_seq = 0
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._steps = 0  # llama_decode calls, and sequences that decoded a token in them
        self._decode_seqs = 0
        self._tensor_split: Any = None  # llama.cpp holds a pointer into it: kept with the engine
        self._n_vocab = 0
        self._batch_cap = max(spec.n_batch, self.n_slots)
        self._cv = threading.Condition()
        self._queue: deque[Pending] = deque()
        self._slots = [Slot(seq_id=i) for i in range(self.n_slots)]
        self._releases = 0
        self._stopping = False
        self._crashed = ""  # what killed the worker thread ("" while it lives)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        # One thread owns llama.cpp from load to free: OpenMP builds one thread team per calling
        # thread, and a second team's idle spinners steal cores from the one that decodes.
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[BaseException | None] = loop.create_future()

        def signal(exc: BaseException | None) -> None:
            loop.call_soon_threadsafe(ready.set_result, exc)

        self._thread = threading.Thread(target=self._main, args=(signal,), name=f"cliffbench-{self.name}", daemon=True)
        self._thread.start()
        exc = await ready
        if exc is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise exc

    def _main(self, ready: Callable[[BaseException | None], None]) -> None:
        try:
            self._load()
        except BaseException as exc:
            self._free()
            ready(exc)
            return
        ready(None)
        try:
            self._run()
        finally:
            self._free()

    def _load(self) -> None:
        import llama_cpp as lc

        global _QUIET_LOG
        if _QUIET_LOG is None:
            _QUIET_LOG = _quiet_log()
        lc.llama_backend_init()
        lc.llama_log_set(_QUIET_LOG, ctypes.c_void_p(0))
        mparams, self._tensor_split = model_params(self.spec)
        model = lc.llama_model_load_from_file(str(self.gguf_path).encode(), mparams)
        if not model:
            raise EngineError(f"llama.cpp could not load {self.gguf_path}")
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = self.n_ctx
        cparams.n_batch = self._batch_cap
        cparams.n_ubatch = self._batch_cap
        cparams.n_seq_max = self.n_slots
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.kv_unified = self.kv_unified
        cparams.flash_attn_type = FLASH_ATTN_TYPE[self.spec.flash_attn]
        cparams.no_perf = True
        ctx = lc.llama_init_from_model(model, cparams)
        if not ctx:
            lc.llama_model_free(model)
            raise EngineError(f"llama.cpp could not create a context of n_ctx={self.n_ctx}")
        self._model, self._ctx = model, ctx
        self.n_ctx_seq = lc.llama_n_ctx_seq(ctx)
        self._n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
        self._batch = lc.llama_batch_init(self._batch_cap, 0, 1)

    async def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def _free(self) -> None:
        import llama_cpp as lc

        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            lc.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            lc.llama_model_free(self._model)
            self._model = None

    def describe(self) -> dict[str, object]:
        import llama_cpp as lc

        return {
            "kind": self.spec.kind,
            "engine_version": f"llama-cpp-python {lc.__version__}",
            "gguf": str(self.gguf_path),
            "slots": self.n_slots,
            "n_ctx": self.n_ctx,
            "n_ctx_seq": self.n_ctx_seq,
            "kv_unified": self.kv_unified,
            "max_queue": self.spec.max_queue,
            "cache_prompt": self.spec.cache_prompt,
            "slot_prompt_similarity": self.spec.slot_prompt_similarity,
            "n_batch": self._batch_cap,
            "n_threads": self.n_threads,
            "flash_attn": self.spec.flash_attn,
            "n_gpu_layers": self.spec.n_gpu_layers,
            "split_mode": self.spec.split_mode,
            "tensor_split": self.spec.tensor_split,
            "main_gpu": self.spec.main_gpu,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_cache_tokens": self.n_ctx,  # every slot's cells; with cache_prompt a slot keeps one prompt, its last
            "kv_cache_prompts": self.n_slots if self.spec.cache_prompt else 0,
            "precision": self.spec.precision(),
        }

    # -- requests --------------------------------------------------------------------------
    def max_request_tokens(self) -> int:
        return self.n_ctx_seq or (self.n_ctx if self.kv_unified else self.n_ctx // self.n_slots)

    async def stream(self, request: GenRequest) -> AsyncIterator[TokenEvent]:
        limit = self.max_request_tokens()
        if request.prompt_tokens + request.max_tokens > limit:
            raise RequestRejected(
                f"prompt ({request.prompt_tokens}) + max_tokens ({request.max_tokens}) exceeds the "
                f"{limit}-token context of a {self.name} slot"
            )
        if request.prompt_tokens == 0 or request.max_tokens <= 0:
            raise RequestRejected("a request needs at least one prompt token and max_tokens >= 1")
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[object] = asyncio.Queue()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, item)

        job = Pending(request, emit)
        with self._cv:
            if self._crashed:
                raise EngineError(f"{self.name} {self._crashed}")
            if self._stopping or self._thread is None:
                raise EngineError(f"{self.name} is not running")
            queued = sum(not p.cancelled for p in self._queue)
            free = sum(s.job is None for s in self._slots)
            if queue_full(queued, free, self.spec.max_queue):
                raise RequestRejected(f"{self.name} is busy: {self.spec.max_queue} requests already wait (max_queue)")
            self._queue.append(job)
            self._cv.notify()
        try:
            while True:
                item = await inbox.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                token_id, t_sched, cached = cast(tuple[int, float, int], item)
                yield TokenEvent(token_id, time.perf_counter(), t_scheduled_s=t_sched, cached_tokens=cached)
        finally:
            job.cancelled = True  # a consumer that walks away frees its slot at the next step

    def failure(self) -> str | None:
        """Why the engine can serve no more requests (its worker thread died), or None."""
        return self._crashed or None

    def memory(self) -> KvMemory:
        active = [s for s in self._slots if s.job is not None]
        return KvMemory(
            reserved_bytes=self.n_ctx * self.kv_bytes_per_token,
            live_bytes=sum(s.n_past for s in active) * self.kv_bytes_per_token,
            live_seqs=len(active),
            waiting=len(self._queue),
            steps=self._steps,
            decode_seqs=self._decode_seqs,
        )

    # -- worker thread ---------------------------------------------------------------------
    def _seq_rm(self, seq_id: int, p0: int, p1: int) -> bool:
        import llama_cpp as lc

        return bool(lc.llama_memory_seq_rm(lc.llama_get_memory(self._ctx), seq_id, p0, p1))

    def _release(self, slot: Slot, keep: bool = False) -> None:
        """Free the slot; `keep` (its request ended normally) keeps its KV where cache_prompt is on."""
        self._releases += 1
        release(slot, keep and self.spec.cache_prompt, self._seq_rm, self._releases)

    def _admit(self) -> bool:
        """Move queued requests (FIFO) into free slots, each into the one llama-server would pick.
        Returns False when stopping."""
        started: list[Slot] = []
        with self._cv:
            while not self._stopping and not self._queue and all(s.job is None for s in self._slots):
                self._cv.wait()
            if self._stopping:
                return False
            while self._queue:
                if self._queue[0].cancelled:
                    self._queue.popleft()
                    continue
                free = [FreeSlot(s.seq_id, s.kept, s.last_used) for s in self._slots if s.job is None]
                if not free:
                    break
                prompt = self._queue[0].request.prompt_token_ids
                # without prompt reuse no slot holds anything worth picking: the lowest free one keeps
                # the busy sequences contiguous, and a decode over scattered KV streams (kv_unified
                # off) costs up to 2-3x at 4-16 of 32 slots (measured: 37-55 vs 94-99 tok/s at 16 users)
                if self.spec.cache_prompt:
                    slot = self._slots[choose_slot(prompt, free, self.spec.slot_prompt_similarity)]
                else:
                    slot = self._slots[free[0].index]
                slot.job = self._queue.popleft()
                slot.prompt = list(prompt)
                slot.t_scheduled_s = time.perf_counter()
                started.append(slot)
        for slot in started:
            start(slot, self.spec.cache_prompt, self._seq_rm)
        return True

    def _run(self) -> None:
        import llama_cpp as lc

        batch = self._batch
        try:
            while self._admit():
                for slot in self._slots:
                    if slot.job is not None and slot.job.cancelled:
                        self._release(slot)
                n = 0
                # generating slots first, then prompt chunks into what is left of n_batch
                for slot in self._slots:
                    slot.batch_idx = -1
                    if slot.job is not None and slot.prompt_pos == len(slot.prompt):
                        n = self._add(batch, n, slot.last_token, slot.n_past, slot.seq_id, True)
                        slot.batch_idx = n - 1
                        slot.n_past += 1
                for slot in self._slots:
                    if slot.job is None or slot.prompt_pos == len(slot.prompt) or slot.batch_idx >= 0:
                        continue
                    take = min(len(slot.prompt) - slot.prompt_pos, self._batch_cap - n)
                    for i in range(take):
                        last = slot.prompt_pos + i == len(slot.prompt) - 1
                        n = self._add(batch, n, slot.prompt[slot.prompt_pos + i], slot.n_past + i, slot.seq_id, last)
                    slot.prompt_pos += take
                    slot.n_past += take
                    if slot.prompt_pos == len(slot.prompt):
                        slot.batch_idx = n - 1
                if n == 0:
                    continue
                self._steps += 1
                self._decode_seqs += sum(1 for s in self._slots if s.job is not None and s.batch_idx >= 0)
                batch.n_tokens = n
                rc = lc.llama_decode(self._ctx, batch)
                # 1: no room in the KV, held by free slots' kept tokens where it is shared: freed, then retried
                while rc == 1 and drop_idle_kept(self._slots, self._seq_rm):
                    rc = lc.llama_decode(self._ctx, batch)
                if rc != 0:
                    self._fail_batch(EngineError(f"llama_decode returned {rc} (KV cache full?)"))
                    continue
                self._sample(lc)
        except BaseException as exc:  # the worker must never die silently: fail everyone waiting
            # set before the queue is emptied: a request arriving later fails at once, not never
            with self._cv:
                self._crashed = f"worker crashed: {exc!r}"
            self._fail_all(EngineError(f"{self.name} {self._crashed}"))
            return  # told to every request and by failure(), not as an unhandled thread exception
        self._fail_all(EngineError(f"{self.name} stopped"))

    @staticmethod
    def _add(batch: Any, n: int, token: int, pos: int, seq_id: int, logits: bool) -> int:
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = logits
        return n + 1

    def _sample(self, lc: Any) -> None:
        for slot in self._slots:
            if slot.batch_idx < 0 or slot.job is None:
                continue
            ptr = lc.llama_get_logits_ith(self._ctx, slot.batch_idx)
            logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (self._n_vocab,))
            token = int(logits.argmax())
            slot.last_token = token
            slot.n_gen += 1
            slot.generated.append(token)
            job = slot.job
            job.emit((token, slot.t_scheduled_s, slot.cached))
            if slot.n_gen >= job.request.max_tokens:
                self._release(slot, keep=True)  # before _DONE: a caller that saw the end sees the slot free
                job.emit(_DONE)

    def _fail_batch(self, exc: EngineError) -> None:
        for slot in self._slots:
            if slot.job is not None and (slot.batch_idx >= 0 or slot.n_past > 0):
                slot.job.emit(exc)
                self._release(slot)

    def _fail_all(self, exc: EngineError) -> None:
        with self._cv:
            pending = list(self._queue)
            self._queue.clear()
        for job in pending:
            job.emit(exc)
        for slot in self._slots:
            if slot.job is not None:
                slot.job.emit(exc)
                slot.job = None

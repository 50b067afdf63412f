"""A study, end to end: StudySpec -> levels -> tidy store. Resumable, failure-tolerant.

Each engine is started once per study and stopped on every exit path. Levels already stored are
skipped unless `force`; an engine that fails to start, or a level that crashes, is stored as a
failed level with its error text and the sweep goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cliffbench.config import (
    EngineSpec,
    InputError,
    LevelSetSpec,
    LlamaCppSerialSpec,
    LlamaCppSlotsSpec,
    OpenAIHttpSpec,
    StudySpec,
    VllmSpec,
)
from cliffbench.engines import make_engine
from cliffbench.engines.base import Engine, GenRequest
from cliffbench.loadgen import LevelRun, RequestRecord, run_level
from cliffbench.metrics import add_request_metrics, summarize_level
from cliffbench.provenance import collect_provenance
from cliffbench.store import (
    LevelInfo,
    level_done,
    level_key,
    read_manifest,
    spec_hash,
    write_level,
    write_manifest,
)
from cliffbench.workload import Tokenizer, build_requests

__all__ = [
    "Level",
    "LiveStats",
    "Reporter",
    "TqdmReporter",
    "engine_context_limit",
    "load_tokenizer",
    "plan_levels",
    "preflight",
    "run_study",
    "run_study_async",
]

_DURATION_POOL = 4096  # requests prepared for duration-bound levels


class Reporter(Protocol):
    def level_started(self, key: str, n_requests: int) -> None: ...
    def request_done(self, record: RequestRecord) -> None: ...
    def level_finished(self, info: LevelInfo) -> None: ...
    def level_skipped(self, key: str) -> None: ...


@dataclass(frozen=True)
class Level:
    index: int
    level_set: LevelSetSpec
    concurrency: int | None
    rate_rps: float | None

    def key(self, engine: str) -> str:
        return level_key(engine, self.level_set.name, self.concurrency, self.rate_rps)


def plan_levels(spec: StudySpec) -> list[Level]:
    loads = [
        (ls, c, r)
        for ls in spec.level_sets
        for c, r in (
            [(c, None) for c in ls.load.concurrency]
            if ls.load.arrival == "closed"
            else [(None, r) for r in ls.load.rate_rps]
        )
    ]
    return [Level(i, ls, c, r) for i, (ls, c, r) in enumerate(loads)]


def engine_context_limit(spec: EngineSpec) -> int:
    """The most prompt + output tokens one request may hold on this engine."""
    if isinstance(spec, VllmSpec):
        return spec.max_model_len
    if isinstance(spec, OpenAIHttpSpec):
        return engine_context_limit(spec.server.engine) if spec.server else spec.context_tokens
    if isinstance(spec, LlamaCppSerialSpec):
        return spec.n_ctx
    assert isinstance(spec, LlamaCppSlotsSpec)
    return spec.ctx_per_slot * (spec.slots if spec.kv_unified else 1)


class _HfTokenizer:
    def __init__(self, path: Path) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(str(path))
        self._tok.model_max_length = 1 << 30  # the corpus is tokenized whole, once; no model sees it

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Any) -> str:
        return str(self._tok.decode(list(ids)))


def load_tokenizer(spec: StudySpec) -> Tokenizer:
    """The study's tokenizer: the Hugging Face tokenizer of the first engine's model."""
    from cliffbench.models import resolve_model

    for e in spec.engines:
        hf_dir, _, _ = resolve_model(e.model)
        if hf_dir is not None:
            return _HfTokenizer(hf_dir)
    raise InputError("engines: no engine has a Hugging Face folder to take the tokenizer from")


def _build(
    spec: StudySpec, level: Level, tok: Tokenizer, max_context: int
) -> tuple[list[GenRequest], list[GenRequest]]:
    load = level.level_set.load
    n = load.requests_per_level or _DURATION_POOL
    if load.requests_per_user and level.concurrency:
        n = max(n, load.requests_per_user * level.concurrency)
    wl = level.level_set.workload
    seed = spec.seed * 1_000_003 + wl.seed * 1009 + level.index
    reqs = build_requests(wl.model_copy(update={"seed": seed}), n, tok, max_context=max_context)
    warm = (
        build_requests(
            wl.model_copy(update={"seed": seed + 7919}),
            load.warmup_requests,
            tok,
            max_context=max_context,
            start_id=1_000_000,
        )
        if load.warmup_requests
        else []
    )
    return reqs, warm


def _tables(run: LevelRun) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows, toks = [], []
    for r in run.records:
        t = r.token_times_s
        rows.append(
            {
                "request_id": r.request_id,
                "warmup": r.warmup,
                "status": r.status,
                "error": r.error,
                "prompt_tokens": r.prompt_tokens,
                "max_tokens": r.max_tokens,
                "output_tokens": len(t),
                "t_submit_s": r.t_submit_s,
                "t_first_s": t[0] if t else np.nan,
                "t_end_s": t[-1] if t else np.nan,
                "t_done_s": r.t_done_s,
                "queue_s": r.t_scheduled_s - r.t_submit_s,
            }
        )
        toks.append(pd.DataFrame({"request_id": r.request_id, "k": np.arange(len(t)), "t_s": t}))
    requests = add_request_metrics(pd.DataFrame(rows))
    tokens = pd.concat(toks, ignore_index=True) if toks else pd.DataFrame(columns=["request_id", "k", "t_s"])
    memory = pd.DataFrame(run.memory, columns=["t_s", "reserved_bytes", "live_bytes", "live_seqs", "waiting"])
    return requests, tokens, memory


def _info(spec: StudySpec, es: EngineSpec, level: Level, **kw: Any) -> LevelInfo:
    base: dict[str, Any] = {
        "study": spec.name,
        "level_key": level.key(es.name),
        "engine": es.name,
        "engine_kind": es.kind,
        "engine_hash": spec_hash(es.model_dump(mode="json")),
        "level_set": level.level_set.name,
        "workload": level.level_set.workload.kind,
        "level_index": level.index,
        "concurrency": level.concurrency,
        "rate_rps": level.rate_rps,
        "seed": spec.seed,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_s": float("nan"),
        "lag_p99_s": float("nan"),
        "loop_cpu_share": float("nan"),
        "lag_flagged": False,
        "status": "ok",
    }
    base.update(kw)
    return LevelInfo(**base)


def _failed(spec: StudySpec, es: EngineSpec, level: Level, error: str, root: Path | None) -> LevelInfo:
    info = _info(spec, es, level, status="failed", error=error)
    empty = pd.DataFrame()
    write_level(info, empty, empty, empty, root)
    return info


Plans = dict[int, tuple[list[GenRequest], list[GenRequest]]]


def _limit_field(es: EngineSpec) -> str:
    if isinstance(es, OpenAIHttpSpec):
        return f"server.mirrors.{_limit_field(es.server.engine)}" if es.server else "context_tokens"
    if isinstance(es, VllmSpec):
        return "max_model_len"
    return "n_ctx" if isinstance(es, LlamaCppSerialSpec) else "ctx_per_slot"


def preflight(spec: StudySpec, levels: list[Level], tok: Tokenizer) -> Plans:
    """Everything that can be checked before an engine starts or a file is written: the
    workload fits every engine's per-request context, models verify, KV fits in free memory.
    Returns the requests of every level (the same for every engine)."""
    import psutil

    from cliffbench.models import resolve_model

    smallest = min(spec.engines, key=engine_context_limit)
    max_context = engine_context_limit(smallest)
    plans: Plans = {}
    for level in levels:
        try:
            plans[level.index] = _build(spec, level, tok, max_context)
        except ValueError as exc:
            raise InputError(
                f"engines.{smallest.name}.{_limit_field(smallest)} ({max_context} tokens) is too small for "
                f"level set {level.level_set.name!r}: {exc}"
            ) from None
    free = psutil.virtual_memory().available
    peak = max((lv.concurrency or 0) for lv in levels) if levels else 0
    for es in spec.engines:
        resolve_model(es.model)
        if isinstance(es, OpenAIHttpSpec):
            _preflight_http(es, peak)
        if isinstance(es, VllmSpec) and es.device != "cuda" and es.kv_cache_gib * 2**30 > free:
            raise InputError(
                f"engines.{es.name}.kv_cache_gib: {es.kv_cache_gib} GiB exceeds the {free / 2**30:.1f} GiB "
                "of free memory"
            )
    return plans


def _preflight_http(es: OpenAIHttpSpec, peak_concurrency: int) -> None:
    es.api_key()
    if es.max_connections < peak_concurrency:
        raise InputError(
            f"engines.{es.name}.max_connections: {es.max_connections} is below the study's peak concurrency "
            f"{peak_concurrency}; the client would queue requests the server never saw"
        )
    if es.server is not None:
        from cliffbench.servers import server_command

        try:
            server_command(es.server, 0)
        except InputError as exc:
            raise InputError(f"engines.{es.name}.{exc}") from None


async def _run_engine(
    spec: StudySpec,
    es: EngineSpec,
    todo: list[Level],
    plans: Plans,
    reporter: Reporter | None,
    root: Path | None,
    manifest: dict[str, Any],
    started: Engine | None,
) -> None:
    engine: Engine | None = started
    try:
        if engine is None:
            engine = make_engine(es)
            await engine.start()
    except InputError:
        raise
    except Exception as exc:
        err = f"engine start failed: {type(exc).__name__}: {exc}"
        for level in todo:
            info = _failed(spec, es, level, err, root)
            if reporter:
                reporter.level_finished(info)
        if engine is not None and started is None:
            await engine.stop()
        return
    try:
        config = engine.describe()
        manifest.setdefault("engines", {})[es.name] = config
        write_manifest(spec.name, manifest, root)
        for level in todo:
            reqs, warm = plans[level.index]
            load = level.level_set.load
            if reporter:
                reporter.level_started(level.key(es.name), len(reqs) + len(warm))
            try:
                run = await run_level(
                    engine,
                    reqs,
                    concurrency=level.concurrency,
                    rate_rps=level.rate_rps,
                    burstiness=load.burstiness,
                    think_time_s=load.think_time_s,
                    duration_s=load.duration_s,
                    warmup=warm,
                    request_timeout_s=load.request_timeout_s,
                    seed=spec.seed + level.index,
                    on_record=reporter.request_done if reporter else None,
                )
                requests, tokens, memory = _tables(run)
                summary = summarize_level(
                    requests,
                    tokens,
                    slo=spec.slo.thresholds,
                    target_concurrency=level.concurrency,
                    seed=spec.seed,
                )
                lag_p99 = run.lag_p99_s
                info = _info(
                    spec,
                    es,
                    level,
                    wall_s=run.wall_s,
                    lag_p99_s=lag_p99,
                    thread_wait_p99_s=run.thread_wait_p99_s,
                    loop_cpu_share=run.loop_cpu_share,
                    lag_flagged=bool(lag_p99 > load.max_lag_s),
                    summary=summary,
                    engine_config=config,
                )
                write_level(info, requests, tokens, memory, root)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                info = _failed(spec, es, level, f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3)}", root)
            if reporter:
                reporter.level_finished(info)
    finally:
        if started is None:
            await engine.stop()


def _pending(spec: StudySpec, force: bool, root: Path | None) -> Iterator[tuple[EngineSpec, list[Level], list[Level]]]:
    levels = plan_levels(spec)
    for es in spec.engines:
        todo = [lv for lv in levels if force or not level_done(spec.name, lv.key(es.name), root)]
        yield es, todo, [lv for lv in levels if lv not in todo]


def _model_hashes(es: EngineSpec) -> dict[str, str]:
    """sha256 of the files an engine serves: from the prepared model's manifest (verified at
    preflight), or hashed here for a user's own files."""
    from cliffbench.models import load_manifest
    from cliffbench.models.manifest import sha256_file

    m = es.model
    if m.hf_path is None and m.gguf_path is None:
        files = load_manifest(m.name).files
        return {rel: f.sha256 for rel, f in files.items() if rel.startswith(("hf/model", "gguf/"))}
    paths = [p for p in (m.gguf_path,) if p is not None]
    if m.hf_path is not None:
        paths += sorted(Path(m.hf_path).glob("*.safetensors"))
    return {str(p): sha256_file(Path(p)) for p in paths}


def _ensure_probe(study: str, root: Path | None) -> dict[str, Any]:
    """Probe this machine's bandwidth and matmul rate once per study (before any engine runs, so
    the engines do not disturb it) and keep it in the manifest: the roofline of every level."""
    manifest = read_manifest(study, root)
    if "hardware_probe" not in manifest:
        from cliffbench.roofline import local_hardware

        manifest["hardware_probe"] = local_hardware().model_dump(mode="json")
        write_manifest(study, manifest, root)
    return manifest


async def run_study_async(
    spec: StudySpec,
    *,
    force: bool = False,
    reporter: Reporter | None = None,
    root: Path | None = None,
    engines: Mapping[str, Engine] | None = None,
) -> None:
    """Run every level of every engine that is not stored yet (all of them with `force`).
    `engines` maps engine labels to engines the caller already started (and will stop)."""
    work = list(_pending(spec, force, root))
    if not any(todo for _, todo, _ in work):
        _ensure_probe(spec.name, root)
        for es, _, done in work:
            for lv in done:
                if reporter:
                    reporter.level_skipped(lv.key(es.name))
        return
    tok = load_tokenizer(spec)
    plans = preflight(spec, [lv for _, todo, _ in work for lv in todo], tok)
    from cliffbench.models import resolve_model
    from cliffbench.store import study_dir

    fresh = not study_dir(spec.name, root).exists()
    manifest = {**read_manifest(spec.name, root), **collect_provenance()}
    manifest["study"] = spec.model_dump(mode="json")
    manifest["models"] = {e.name: resolve_model(e.model)[2].model_dump(mode="json") for e in spec.engines}
    manifest["model_files"] = {e.name: _model_hashes(e) for e in spec.engines}
    write_manifest(spec.name, manifest, root)
    manifest = _ensure_probe(spec.name, root)
    for es, todo, done in work:
        if reporter:
            for lv in done:
                reporter.level_skipped(lv.key(es.name))
        if todo:
            started = (engines or {}).get(es.name)
            try:
                await _run_engine(spec, es, todo, plans, reporter, root, manifest, started)
            except InputError:
                # bad input found while starting (a server that never got healthy): a study this
                # run created holds nothing measured, so nothing half-written is left behind
                if fresh and not any(study_dir(spec.name, root).glob("levels/*/*")):
                    import shutil

                    shutil.rmtree(study_dir(spec.name, root), ignore_errors=True)
                raise


def run_study(
    spec: StudySpec, *, force: bool = False, reporter: Reporter | None = None, root: Path | None = None
) -> None:
    """Synchronous wrapper (CLI). In a notebook, `await run_study_async(...)` instead."""
    asyncio.run(run_study_async(spec, force=force, reporter=reporter, root=root))


class LiveStats:
    """Running TTFT p50 and output tok/s of one level's measured requests, for progress bars.
    (Display only: the stored summaries come from `metrics.summarize_level`.)"""

    def __init__(self) -> None:
        self.ttfts_s: list[float] = []
        self.tokens = 0
        self.t0_s: float | None = None
        self.t1_s = 0.0

    def add(self, record: RequestRecord) -> None:
        if record.warmup or record.status != "ok":
            return
        self.ttfts_s.append(record.token_times_s[0] - record.t_submit_s)
        self.tokens += record.output_tokens
        self.t0_s = record.t_submit_s if self.t0_s is None else min(self.t0_s, record.t_submit_s)
        self.t1_s = max(self.t1_s, record.token_times_s[-1])

    def text(self) -> str:
        if not self.ttfts_s or self.t0_s is None or self.t1_s <= self.t0_s:
            return ""
        return f"TTFT p50 {np.median(self.ttfts_s):.3f}s  {self.tokens / (self.t1_s - self.t0_s):.1f} tok/s"


class TqdmReporter:
    """Progress for notebooks: a tqdm bar per level with live TTFT p50 and output tok/s."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.live = LiveStats()

    def level_started(self, key: str, n_requests: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=n_requests, desc=key, leave=False)
        self.live = LiveStats()

    def request_done(self, record: RequestRecord) -> None:
        self.live.add(record)
        if self.bar is not None:
            self.bar.set_postfix_str(self.live.text())
            self.bar.update(1)

    def level_finished(self, info: LevelInfo) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        s = info.summary
        state = "ok" if info.status == "ok" else f"FAILED: {info.error.splitlines()[0][:200]}"
        print(
            f"{info.level_key}: {state} {s.get('output_tok_s', float('nan')):.1f} tok/s, "
            f"TTFT p50 {s.get('ttft_s_p50', float('nan')):.3f}s"
        )

    def level_skipped(self, key: str) -> None:
        print(f"{key}: stored, skipped")

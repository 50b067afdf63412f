"""A study, end to end: StudySpec -> levels -> tidy store. Resumable, failure-tolerant.

Each engine is started once per study and stopped on every exit path. Levels already stored are
skipped unless `force`; an engine that fails to start, or a level that crashes, is stored as a
failed level with its error text and the sweep goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliffbench.bench.loadgen import LevelRun, run_level
from cliffbench.bench.metrics import add_request_metrics, summarize_level
from cliffbench.bench.plan import Level, Plans, model_hashes, plan_levels, preflight, study_tokenizer
from cliffbench.bench.probes import local_hardware
from cliffbench.bench.progress import Reporter
from cliffbench.bench.provenance import collect_provenance
from cliffbench.bench.store import (
    LevelInfo,
    level_done,
    read_manifest,
    spec_hash,
    study_dir,
    study_lock,
    write_level,
    write_manifest,
)
from cliffbench.bench.study import StudySpec
from cliffbench.config import InputError
from cliffbench.engines import make_engine
from cliffbench.engines.base import Engine
from cliffbench.engines.specs import EngineSpec
from cliffbench.models import resolve_model

__all__ = ["run_study", "run_study_async"]


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


def _ensure_probe(study: str, root: Path | None) -> dict[str, Any]:
    """Probe this machine's bandwidth and matmul rate once per study (before any engine runs, so
    the engines do not disturb it) and keep it in the manifest: the roofline of every level."""
    manifest = read_manifest(study, root)
    if "hardware_probe" not in manifest:
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
    `engines` maps engine labels to engines the caller already started (and will stop).
    Holds the study's lock throughout: a second run of the same study exits with InputError."""
    with study_lock(spec.name, root):
        await _run_study_locked(spec, force, reporter, root, engines)


async def _run_study_locked(
    spec: StudySpec,
    force: bool,
    reporter: Reporter | None,
    root: Path | None,
    engines: Mapping[str, Engine] | None,
) -> None:
    work = list(_pending(spec, force, root))
    if not any(todo for _, todo, _ in work):
        _ensure_probe(spec.name, root)
        for es, _, done in work:
            for lv in done:
                if reporter:
                    reporter.level_skipped(lv.key(es.name))
        return
    tok = study_tokenizer(spec)
    plans = preflight(spec, [lv for _, todo, _ in work for lv in todo], tok)
    fresh = not study_dir(spec.name, root).exists()
    manifest = {**read_manifest(spec.name, root), **collect_provenance()}
    manifest["study"] = spec.model_dump(mode="json")
    served = [e for e in spec.engines if e.serves_model]
    manifest["models"] = {e.name: resolve_model(e.model)[2].model_dump(mode="json") for e in served}
    manifest["model_files"] = {e.name: model_hashes(e) for e in served}
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
                    shutil.rmtree(study_dir(spec.name, root), ignore_errors=True)
                raise


def run_study(
    spec: StudySpec, *, force: bool = False, reporter: Reporter | None = None, root: Path | None = None
) -> None:
    """Synchronous wrapper (CLI). In a notebook, `await run_study_async(...)` instead."""
    asyncio.run(run_study_async(spec, force=force, reporter=reporter, root=root))

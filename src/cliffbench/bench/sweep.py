"""A study, end to end: StudySpec -> levels -> tidy store. Resumable, failure-tolerant.

Repeats interleave: repeat r of every engine runs before repeat r+1 starts, engines in a seeded
order rotated per repeat. Each engine is started once per study and kept loaded (idle, the others
cost vLLM about 5% of its tok/s at 32 users: benchmarks/idle_engines.py), or once per repeat with
`keep_engines_loaded: false`; every exit path stops them. Levels already stored are skipped unless
`force`; an engine that fails to start, or a level that crashes, is stored as a failed level with
its error text and the sweep goes on; so is a level during which its engine died (even where some
requests had finished), and the engine is started afresh for its next level; a level that cannot
be written (a full disk) stops the sweep with an InputError naming it, the finished levels stored.
A level during which other processes used more CPU than `busy.max_foreign_cores` is measured again
(`busy.reruns`) and stored flagged if still busy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import traceback
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cliffbench.bench.engine_pool import EnginePool
from cliffbench.bench.load.busy import cpu_snapshot, foreign_since
from cliffbench.bench.load.clients import run_split
from cliffbench.bench.load.driver import Probes
from cliffbench.bench.metrics.phases import assign_phases, steady_only
from cliffbench.bench.metrics.steady import summarize_phases
from cliffbench.bench.plan import (
    Level,
    Plans,
    engine_order,
    model_hashes,
    ordered_work,
    plan_levels,
    preflight,
    study_tokenizer,
)
from cliffbench.bench.probes import LocalHardware, local_hardware
from cliffbench.bench.progress.reporter import LevelTask, Reporter, search_finished
from cliffbench.bench.progress.run_phases import OnPhase, on_request
from cliffbench.bench.search.plan import searched_engines, stand_in_tasks
from cliffbench.bench.search.run import ProbeRunner, search_cliff
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import (
    LevelInfo,
    level_done,
    read_manifest,
    spec_hash,
    study_dir,
    study_lock,
    write_level,
    write_manifest,
)
from cliffbench.bench.store.provenance import StudyManifest, collect_provenance
from cliffbench.bench.store.tables import level_tables
from cliffbench.bench.workload.reuse import theoretical_hit_rate
from cliffbench.config import InputError
from cliffbench.engines.base import Engine, engine_failure
from cliffbench.engines.specs import EngineSpec
from cliffbench.models import resolve_model

__all__ = ["engine_order", "level_tasks", "run_cut", "run_study", "run_study_async", "store_failed", "store_level"]


def _info(spec: StudySpec, es: EngineSpec, level: Level, **kw: Any) -> LevelInfo:
    base: dict[str, object] = {
        "study": spec.name,
        "level_key": level.key(es.name),
        "engine": es.name,
        "engine_kind": es.kind,
        "engine_hash": spec_hash(es.model_dump(mode="json")),
        "level_set": level.level_set.name,
        "workload": level.level_set.workload.kind,
        "level_index": level.index,
        "repeat": level.repeat,
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
    return LevelInfo.model_validate(base)


class _NotStored(InputError):
    """A level could not be written (disk full, read-only, over quota): no later level could be
    either, so the sweep stops with one line instead of storing the level as failed."""


def store_level(
    info: LevelInfo,
    requests: pd.DataFrame,
    tokens: pd.DataFrame,
    memory: pd.DataFrame,
    root: Path | None,
    on_phase: OnPhase | None = None,
) -> None:
    before_rename = (lambda: on_phase("store", info.level_key)) if on_phase else None
    try:
        write_level(info, requests, tokens, memory, root, before_rename)
    except OSError as exc:  # write_level leaves no half level behind: the finished ones are intact
        where = study_dir(info.study, root) / "levels"
        raise _NotStored(
            f"results: could not store level {info.level_key} under {where}: {exc.strerror or exc}; "
            "finished levels are stored"
        ) from exc


def store_failed(
    spec: StudySpec, es: EngineSpec, level: Level, error: str, root: Path | None, probe: bool = False
) -> LevelInfo:
    info = _info(spec, es, level, status="failed", error=error, probe=probe)
    empty = pd.DataFrame()
    store_level(info, empty, empty, empty, root)
    return info


async def _measure(
    spec: StudySpec,
    es: EngineSpec,
    engine: Engine,
    level: Level,
    plans: Plans,
    reporter: Reporter | None,
    on_phase: OnPhase | None,
) -> tuple[LevelInfo, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One level, measured again (up to busy.reruns times) while other processes eat the CPU."""
    reqs, warm = plans[level.index, level.repeat]
    load = level.level_set.load
    config = engine.describe()
    attempt = 0
    while True:
        attempt += 1
        if reporter:
            reporter.level_started(level.key(es.name), len(reqs) + len(warm))
        before = cpu_snapshot()
        run = await run_split(
            engine,
            reqs,
            processes=load.client_processes,
            concurrency=level.concurrency,
            rate_rps=level.rate_rps,
            burstiness=load.burstiness,
            think_time_s=load.think_time_s,
            ramp_s=load.ramp_s,
            duration_s=load.duration_s,
            warmup=warm,
            request_timeout_s=load.request_timeout_s,
            seed=spec.seed + level.index,
            on_record=on_request(reporter, on_phase, level.key(es.name)),
            probes=Probes(lag=load.lag_probe, memory=load.memory_probe),
            end_at_window=load.end_at_window,  # closed loop only: an open loop has no users to leave
        )
        foreign = foreign_since(before)
        busy = foreign.foreign_cores > spec.busy.max_foreign_cores
        if not busy or attempt > spec.busy.reruns or engine_failure(engine):  # a dead engine: no rerun
            break
    requests, tokens, memory = level_tables(run)
    requests["phase"], window = assign_phases(requests, run.ramp_s, run.window_end_s)
    slo = spec.slo.thresholds
    summary, transient = summarize_phases(requests, tokens, window, slo=slo, target_concurrency=level.concurrency)
    # an ideal cache's hit rate over the steady requests as sent, as the measured one is (which
    # turns of a session are sent is the users' doing)
    sent: dict[int, int] = {}
    if not requests.empty:
        steady = steady_only(requests)
        sent = dict(zip(steady["request_id"].tolist(), steady["prompt_tokens"].tolist(), strict=True))
    summary = summary.model_copy(update={"hit_rate_theory": theoretical_hit_rate(reqs, sent_prompt_tokens=sent)})
    # a level in which the engine died, or no request succeeded, measured nothing to judge by
    status, error = "ok", ""
    if died := engine_failure(engine):
        status, error = "failed", f"engine died during the level: {died}"
    elif not summary.counts.n_ok:
        errors = [e for e in requests.loc[~requests["warmup"].astype(bool), "error"] if e]
        status, error = "failed", "no request succeeded" + (f": {errors[0]}" if errors else "")
    info = _info(
        spec,
        es,
        level,
        wall_s=run.wall_s,
        lag_p99_s=run.lag_p99_s,
        thread_wait_p99_s=run.thread_wait_p99_s,
        loop_cpu_share=run.loop_cpu_share,
        lag_flagged=bool(run.lag_p99_s > load.max_lag_s),
        foreign_cores=foreign.foreign_cores,
        steal_cores=foreign.steal_cores,
        loadavg_1m=foreign.loadavg_1m,
        busy_flagged=busy,
        attempts=attempt,
        status=status,
        error=error,
        summary=summary,
        steady=window,
        transient=transient,
        engine_config=config,
        clients=run.clients,
    )
    return info, requests, tokens, memory


def level_tasks(spec: StudySpec, work: list[tuple[EngineSpec, Level]], todo: set[str], plans: Plans) -> list[LevelTask]:
    out = []
    for es, lv in work:
        key = lv.key(es.name)
        reqs, warm = plans.get((lv.index, lv.repeat), ([], []))
        out.append(
            LevelTask(
                key=key,
                engine=es.name,
                level_set=lv.level_set.name,
                concurrency=lv.concurrency,
                rate_rps=lv.rate_rps,
                repeat=lv.repeat,
                n_requests=len(reqs) + len(warm),
                planned_tokens=sum(len(r.prompt_token_ids) + r.max_tokens for r in (*reqs, *warm)),
                stored=key not in todo,
            )
        )
    return out


def _ensure_probe(study: str, root: Path | None) -> StudyManifest:
    """Probe this machine's bandwidth and matmul rate once per study (before any engine runs, so
    the engines do not disturb it) and keep it in the manifest: the roofline of every level."""
    manifest = read_manifest(study, root)
    if manifest.hardware_probe is None:
        manifest.hardware_probe = local_hardware()
        write_manifest(study, manifest, root)
    return manifest


async def run_study_async(
    spec: StudySpec,
    *,
    force: bool = False,
    reporter: Reporter | None = None,
    root: Path | None = None,
    engines: Mapping[str, Engine] | None = None,
    keep_failed: bool = False,
    only: Collection[str] | None = None,
    on_phase: OnPhase | None = None,
) -> None:
    """Run every level of every repeat of every engine that is not stored as ok yet (all with
    `force`; failed levels are measured again unless `keep_failed`), of the level keys in `only`
    if given (a cluster's engine block). `engines` maps engine labels to engines the caller
    already started (and will stop); `on_phase` is called at each phase (bench/progress/run_phases.py). Holds
    the study's lock: a second run of it gets InputError."""
    with study_lock(spec.name, root):
        await _run_study_locked(spec, force, reporter, root, EnginePool(engines, on_phase), keep_failed, only)


async def run_cut(spec: StudySpec, engine: Engine, root: Path, probe: LocalHardware | None) -> LocalHardware | None:
    """Run `spec`, a one-engine cut of a study, on `engine`, already started (its caller stops it),
    stored under `root`. The machine's `probe` from an earlier cut is reused (each would otherwise
    probe the same CPU, about 10 s); the cut's own probe is returned for the next one."""
    if probe is not None:
        write_manifest(spec.name, StudyManifest(hardware_probe=probe), root)
    await run_study_async(spec, root=root, engines={spec.engines[0].name: engine})
    return read_manifest(spec.name, root).hardware_probe


async def _run_study_locked(
    spec: StudySpec,
    force: bool,
    reporter: Reporter | None,
    root: Path | None,
    pool: EnginePool,
    keep_failed: bool = False,
    only: Collection[str] | None = None,
) -> None:
    work = ordered_work(spec, plan_levels(spec))
    keys = [lv.key(es.name) for es, lv in work if only is None or lv.key(es.name) in only]
    todo = {k for k in keys if force or not level_done(spec.name, k, root, keep_failed=keep_failed)}
    searching = any(ls.load.search is not None for ls in spec.level_sets)
    if not todo and not searching:
        _ensure_probe(spec.name, root)
        if reporter:
            reporter.study_planned(level_tasks(spec, work, todo, {}))
            for es, lv in work:
                reporter.level_skipped(lv.key(es.name))
        return
    tok = study_tokenizer(spec)
    plans = preflight(spec, [lv for es, lv in work if lv.key(es.name) in todo], tok)
    fresh = not study_dir(spec.name, root).exists()
    manifest = read_manifest(spec.name, root).stamped(collect_provenance())
    manifest.study = spec
    served = [e for e in spec.engines if e.serves_model]
    manifest.models = {e.name: resolve_model(e.model)[2] for e in served}
    manifest.model_files = {e.name: model_hashes(e) for e in served}
    write_manifest(spec.name, manifest, root)
    manifest = _ensure_probe(spec.name, root)
    if reporter:  # the searches' expected probes too: the ETA covers them (bench/search/plan.py)
        reporter.study_planned(level_tasks(spec, work, todo, plans) + stand_in_tasks(spec, engine_order(spec, 0), tok))
    try:
        for i, (es, level) in enumerate(work):
            key = level.key(es.name)
            if key not in todo:
                if reporter:
                    reporter.level_skipped(key)
                continue
            try:
                engine = await pool.get(es, manifest, spec, root)
            except InputError:
                # bad input found while starting (a server that never got healthy): a study this
                # run created holds nothing measured, so nothing half-written is left behind
                if fresh and not any(study_dir(spec.name, root).glob("levels/*/*")):
                    shutil.rmtree(study_dir(spec.name, root), ignore_errors=True)
                raise
            if engine is None:
                info = store_failed(spec, es, level, pool.broken[es.name], root)
            else:
                try:
                    info, requests, tokens, memory = await _measure(
                        spec, es, engine, level, plans, reporter, pool.on_phase
                    )
                    store_level(info, requests, tokens, memory, root, pool.on_phase)
                except (asyncio.CancelledError, KeyboardInterrupt, _NotStored):
                    raise
                except Exception as exc:
                    err = f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3)}"
                    info = store_failed(spec, es, level, err, root)
            if reporter:
                reporter.level_finished(info)
            following = work[i + 1 :]
            if not spec.keep_engines_loaded and not any(e.name == es.name for e, lv in following[:1]):
                await pool.release(es.name)
        for ls in spec.level_sets:
            for es in searched_engines(spec, ls, engine_order(spec, 0)):
                measure = _prober(spec, es, pool, manifest, reporter, root)
                await search_cliff(spec, es, ls, tok, root, force=force, keep_failed=keep_failed, measure=measure)
                search_finished(reporter, es.name, ls.name)
                if not spec.keep_engines_loaded:
                    await pool.release(es.name)
    finally:
        await pool.close()


def _prober(
    spec: StudySpec,
    es: EngineSpec,
    pool: EnginePool,
    manifest: StudyManifest,
    reporter: Reporter | None,
    root: Path | None,
) -> ProbeRunner:
    """Measure and store one probe level of engine `es` (as the grid's levels are), marked `probe`."""

    async def measure(lv: Level, plans: Plans) -> LevelInfo:
        engine = await pool.get(es, manifest, spec, root)
        if engine is None:
            info = store_failed(spec, es, lv, pool.broken[es.name], root, probe=True)
        else:
            try:
                info, reqs, tokens, memory = await _measure(spec, es, engine, lv, plans, reporter, pool.on_phase)
                info = info.model_copy(update={"probe": True})
                store_level(info, reqs, tokens, memory, root, pool.on_phase)
            except (asyncio.CancelledError, KeyboardInterrupt, _NotStored):
                raise
            except Exception as exc:
                info = store_failed(spec, es, lv, f"{type(exc).__name__}: {exc}", root, probe=True)
        if reporter:
            reporter.level_finished(info)
        return info

    return measure


def run_study(
    spec: StudySpec,
    *,
    force: bool = False,
    reporter: Reporter | None = None,
    root: Path | None = None,
    keep_failed: bool = False,
    on_phase: OnPhase | None = None,
) -> None:
    """Synchronous wrapper (CLI). In a notebook, `await run_study_async(...)` instead."""
    run = run_study_async(spec, force=force, reporter=reporter, root=root, keep_failed=keep_failed, on_phase=on_phase)
    asyncio.run(run)

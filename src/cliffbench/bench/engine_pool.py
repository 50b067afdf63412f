"""The engines of a running study (bench/sweep.py): each started once, on first use, and stopped on
every exit path, so that no engine outlives the sweep that started it, whatever ends it (the last
level, an error, a Ctrl-C, a SIGTERM turned into SystemExit).

An engine that dies in a level is started afresh for its next level; one whose start fails is not
tried again in that run. Engines the caller started itself (`given`) are used, never stopped here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cliffbench.bench.progress.run_phases import OnPhase
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import write_manifest
from cliffbench.bench.store.provenance import StudyManifest
from cliffbench.config import InputError
from cliffbench.engines import make_engine
from cliffbench.engines.base import Engine, engine_failure
from cliffbench.engines.specs import EngineSpec

__all__ = ["EnginePool"]


class EnginePool:
    """The study's engines: started on first use, kept loaded (or released after each engine's
    turn in a repeat), and stopped on every exit path (`close`, in the sweep's finally). A start
    that fails is remembered, so the engine's later levels are stored as failed with the same error
    (`broken`) without trying again. Holds the run's `on_phase` (bench/progress/run_phases.py): called at each
    engine start here, and at each level's phases by the sweep."""

    def __init__(self, given: Mapping[str, Engine] | None, on_phase: OnPhase | None = None) -> None:
        self.given = dict(given or {})
        self.on_phase = on_phase
        self.live: dict[str, Engine] = {}
        self.broken: dict[str, str] = {}
        self.described: set[str] = set()

    async def get(self, es: EngineSpec, manifest: StudyManifest, spec: StudySpec, root: Path | None) -> Engine | None:
        """The started engine of `es` (started now if it is not, or afresh if it died), described in
        the study's manifest on first use; None if its start failed. InputError (a bad spec found
        while starting) propagates, the engine stopped."""
        if es.name in self.broken:
            return None
        engine = self.given.get(es.name) or self.live.get(es.name)
        if es.name in self.live and engine_failure(engine):  # died in an earlier level: start afresh
            await self.release(es.name)
            engine = None
        if engine is None:
            engine = make_engine(es)
            self.live[es.name] = engine  # from now on stopped on every exit path, even mid-start
            try:
                await engine.start()
            except InputError:
                await self.release(es.name)
                raise
            except Exception as exc:
                self.broken[es.name] = f"engine start failed: {type(exc).__name__}: {exc}"
                await self.release(es.name)
                return None
            if self.on_phase:
                self.on_phase("engine-start", es.name)
        if es.name not in self.described:
            self.described.add(es.name)
            manifest.engines[es.name] = engine.describe()
            write_manifest(spec.name, manifest, root)
        return engine

    async def release(self, name: str) -> None:
        engine = self.live.pop(name, None)
        if engine is not None:
            await engine.stop()

    async def close(self) -> None:
        for name in list(self.live):
            await self.release(name)

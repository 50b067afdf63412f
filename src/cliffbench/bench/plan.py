"""What a study will run, checked before anything starts: its levels, the requests of each level
(the same for every engine), and the preflight checks that need no engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from cliffbench.bench.spec.study import LevelSetSpec, StudySpec
from cliffbench.bench.store.levels import level_key
from cliffbench.bench.workload.requests import build_requests
from cliffbench.config import InputError
from cliffbench.engines.base import GenRequest
from cliffbench.engines.servers import engine_preflight
from cliffbench.engines.specs import EngineSpec
from cliffbench.models import load_manifest, resolve_model
from cliffbench.models.manifest import sha256_file
from cliffbench.models.tokenizer import CharTokenizer, Tokenizer, model_tokenizer

__all__ = [
    "Level",
    "Plans",
    "check_model_limits",
    "engine_order",
    "engine_runs",
    "model_hashes",
    "ordered_work",
    "plan_levels",
    "plan_requests",
    "preflight",
    "probe_level",
    "study_tokenizer",
]

_DURATION_POOL = 4096  # requests prepared for duration-bound levels


@dataclass(frozen=True)
class Level:
    index: int
    level_set: LevelSetSpec
    concurrency: int | None
    rate_rps: float | None
    repeat: int = 0

    def key(self, engine: str) -> str:
        return level_key(engine, self.level_set.name, self.concurrency, self.rate_rps, self.repeat)


def engine_runs(es: EngineSpec, level: Level) -> bool:
    """Whether engine `es` runs `level` (a level set's `only_at` may restrict it)."""
    only = level.level_set.load.only_at.get(es.name)
    return only is None or level.concurrency in only


def plan_levels(spec: StudySpec) -> list[Level]:
    """Every level of every repeat, repeat by repeat (repeat r of a level set that asks for fewer
    repeats is left out). `index` numbers the load levels of one repeat."""
    loads = [
        (ls, c, r)
        for ls in spec.level_sets
        for c, r in (
            [(c, None) for c in ls.load.concurrency]
            if ls.load.arrival == "closed"
            else [(None, r) for r in ls.load.rate_rps]
        )
    ]
    rounds = max(ls.load.repeats for ls in spec.level_sets)
    return [
        Level(i, ls, c, r, repeat)
        for repeat in range(rounds)
        for i, (ls, c, r) in enumerate(loads)
        if repeat < ls.load.repeats
    ]


def probe_level(spec: StudySpec, level_set: LevelSetSpec, x: float, repeat: int) -> Level:
    """The level a cliff search measures at load `x`: the grid's own level where `x` is on the
    grid (the same requests per repeat), else one numbered past the grid's."""
    closed = level_set.load.arrival == "closed"
    for lv in plan_levels(spec):
        if lv.level_set.name == level_set.name and (lv.concurrency if closed else lv.rate_rps) == x:
            return Level(lv.index, level_set, lv.concurrency, lv.rate_rps, repeat)  # `level_set`'s own load
    if closed:
        return Level(10_000 + int(x), level_set, int(x), None, repeat)
    return Level(20_000 + round(x * 1000), level_set, None, float(x), repeat)


def plan_requests(spec: StudySpec, level: Level, tok: Tokenizer) -> tuple[list[GenRequest], list[GenRequest]]:
    """The requests (and warm-up requests) of one level, as `preflight` builds them."""
    return _build(spec, level, tok, min(e.context_limit() for e in spec.engines))


def engine_order(spec: StudySpec, repeat: int) -> list[EngineSpec]:
    """The engines of repeat `repeat`: a seeded permutation rotated by one per repeat, so that each
    engine runs early in one repeat and late in another and slow drift of the machine is shared."""
    perm = np.random.default_rng(spec.seed).permutation(len(spec.engines))
    shift = repeat % len(perm)
    return [spec.engines[int(i)] for i in np.roll(perm, -shift)]


def ordered_work(spec: StudySpec, levels: list[Level]) -> list[tuple[EngineSpec, Level]]:
    """(engine, level) in the order they run: repeat by repeat, engines in `engine_order`."""
    rounds = max((lv.repeat for lv in levels), default=-1) + 1
    return [
        (es, lv)
        for r in range(rounds)
        for es in engine_order(spec, r)
        for lv in levels
        if lv.repeat == r and engine_runs(es, lv)
    ]


def study_tokenizer(spec: StudySpec) -> Tokenizer:
    """The study's tokenizer: the first engine model's own, or one token per character (`tokenizer: fake`)."""
    if spec.tokenizer == "fake":
        return CharTokenizer()
    if not any(e.serves_model for e in spec.engines):
        raise InputError("tokenizer: no engine of the study serves a model to take it from; set `tokenizer: fake`")
    return model_tokenizer(e.model for e in spec.engines if e.serves_model)


def _build(
    spec: StudySpec, level: Level, tok: Tokenizer, max_context: int
) -> tuple[list[GenRequest], list[GenRequest]]:
    load = level.level_set.load
    n = load.requests_at(level.concurrency) or 0
    if load.requests_per_level is None:  # duration-bound: a pool the level stops drawing from
        n = max(n, _DURATION_POOL)
    wl = level.level_set.workload
    # each repeat draws its own requests (the same for every engine within it), so the spread
    # over repeats includes the workload's sampling, as a user's next hour would
    seed = spec.seed * 1_000_003 + wl.seed * 1009 + level.index + 100_003 * level.repeat
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


Plans = dict[tuple[int, int], tuple[list[GenRequest], list[GenRequest]]]  # (index, repeat) ->


def preflight(spec: StudySpec, levels: list[Level], tok: Tokenizer) -> Plans:
    """Everything that can be checked before an engine starts or a file is written: the
    workload fits every engine's per-request context, models verify, KV fits in free memory.
    Returns the requests of every level (the same for every engine)."""
    smallest = min(spec.engines, key=lambda e: e.context_limit())
    max_context = smallest.context_limit()
    plans: Plans = {}
    for level in levels:
        try:
            plans[level.index, level.repeat] = _build(spec, level, tok, max_context)
        except ValueError as exc:
            raise InputError(
                f"engines.{smallest.name}.{smallest.context_field} ({max_context} tokens) is too small for "
                f"level set {level.level_set.name!r}: {exc}"
            ) from None
    free = psutil.virtual_memory().available
    peak = max((lv.concurrency or 0) for lv in levels) if levels else 0
    searches = [ls.load.search for ls in spec.level_sets if ls.load.search is not None]
    peak = max([peak, *(int(s.high) for s in searches if s.over == "users")])
    check_model_limits(spec)
    for es in spec.engines:
        if es.serves_model:
            resolve_model(es.model)
        engine_preflight(es, peak)
        if (gib := es.host_reserve_gib()) * 2**30 > free:
            raise InputError(
                f"engines.{es.name}.{es.reserve_field}: {gib} GiB exceeds the {free / 2**30:.1f} GiB of free memory"
            )
    return plans


def check_model_limits(spec: StudySpec) -> None:
    """Each engine's per-request context within its model's own context length (vLLM would fail
    only when it starts, llama.cpp would run past the positions the model was trained on)."""
    for es in spec.engines:
        if not es.serves_model:
            continue
        value: object = es
        for part in es.context_field.split("."):  # an HTTP engine's server: `server.mirrors.n_ctx`
            value = getattr(value, part, None)
        if not isinstance(value, int):
            continue
        limit = resolve_model(es.model)[2].context_length
        asked = value
        if limit and asked > limit:
            raise InputError(
                f"engines.{es.name}.{es.context_field}: {asked} tokens exceeds the model's context length "
                f"({limit}, {es.model.name}); allowed: 1-{limit}"
            )


def model_hashes(es: EngineSpec) -> dict[str, str]:
    """sha256 of the files an engine serves: from the prepared model's manifest (verified at
    preflight), or hashed here for a user's own files."""
    m = es.model
    if m.hf_path is None and m.gguf_path is None:
        files = load_manifest(m.name).files
        return {rel: f.sha256 for rel, f in files.items() if rel.startswith(("hf/model", "gguf/"))}
    paths = [p for p in (m.gguf_path,) if p is not None]
    if m.hf_path is not None:
        paths += sorted(Path(m.hf_path).glob("*.safetensors"))
    return {str(p): sha256_file(Path(p)) for p in paths}

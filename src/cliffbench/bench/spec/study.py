"""A study: engines x level sets (workload x load levels) with SLOs, validated from YAML or flags."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from cliffbench.bench.spec.load import LoadSpec
from cliffbench.bench.spec.workload import LengthDist, WorkloadSpec
from cliffbench.config import InputError, Spec, parse_spec
from cliffbench.engines.defaults import preset_spec
from cliffbench.engines.specs import ENGINE_KINDS, EngineSpec, OpenAIHttpSpec, kinds_with
from cliffbench.hardware import HARDWARE

SLO_METRICS = ("ttft_s", "tpot_s", "e2e_s")


class SloSpec(Spec):
    """SLO thresholds in seconds; goodput counts requests meeting every one of them. A level meets
    the SLO when the `percentiles` of its latencies, over every submitted request (a failed one
    counts as missing), stay within the thresholds; the verdicts judge by the percentile's interval."""

    thresholds: dict[str, float] = Field(default_factory=lambda: {"ttft_s": 1.0, "tpot_s": 0.2})
    percentiles: dict[str, float] = Field(
        default_factory=lambda: {"ttft_s": 90.0, "tpot_s": 50.0, "e2e_s": 90.0},
        description="which percentile of each metric the SLO bounds (a 95% interval of p99 needs "
        ">= 299 requests per level, of p90 >= 29: the default study affords p90)",
    )

    @field_validator("percentiles")
    @classmethod
    def _percentiles(cls, v: dict[str, float]) -> dict[str, float]:
        for k, q in v.items():
            if k not in SLO_METRICS:
                raise ValueError(f"unknown SLO metric {k!r}; allowed: {', '.join(SLO_METRICS)}")
            if not 0 < q < 100:
                raise ValueError(f"SLO percentile of {k} must be in (0, 100), got {q}")
        return v

    def percentile(self, metric: str) -> float:
        return self.percentiles.get(metric, 50.0)

    @field_validator("thresholds")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if k not in SLO_METRICS:
                raise ValueError(f"unknown SLO metric {k!r}; allowed: {', '.join(SLO_METRICS)}")
            if x <= 0:
                raise ValueError(f"SLO {k} must be > 0, got {x}")
        return v


WORKLOAD_PRESETS: dict[str, WorkloadSpec] = {
    # short chat turns: prompt lengths spread around 32 tokens, fixed 64-token answers
    "chat": WorkloadSpec(
        kind="lognormal",
        prompt=LengthDist(dist="lognormal", mean=32, sigma=0.5, low=8, high=128),
        output=LengthDist(mean=64),
    ),
    # the seed's head-of-line case: 80% chat turns, 20% documents near the context limit
    "mixed": WorkloadSpec(
        kind="mixed",
        prompt=LengthDist(dist="lognormal", mean=32, sigma=0.5, low=8, high=128),
        output=LengthDist(mean=64),
        long_fraction=0.2,
    ),
    "fixed": WorkloadSpec(kind="fixed", prompt=LengthDist(mean=32), output=LengthDist(mean=64)),
}


class LevelSetSpec(Spec):
    """One workload under a list of load levels (e.g. `chat` at 1..32 users, `mixed` at 4 and 16)."""

    name: str = Field("chat", pattern=r"^[A-Za-z0-9_.-]+$")
    workload: WorkloadSpec = WorkloadSpec()
    load: LoadSpec = LoadSpec()

    @model_validator(mode="after")
    def _sessions_closed_loop(self) -> LevelSetSpec:
        # a conversation's next turn waits for its previous answer: only a closed-loop user in
        # this process can hold it (an open loop or client processes would send stand-in answers)
        if self.workload.kind == "sessions" and (self.load.arrival != "closed" or self.load.client_processes > 1):
            raise ValueError("workload kind 'sessions' needs load.arrival 'closed' and client_processes 1")
        return self


class BusySpec(Spec):
    """The busy-machine guard: CPU used by processes outside the kit during a level, in cores."""

    max_foreign_cores: float = Field(
        0.5, ge=0, description="a level during which other processes used more than this is flagged"
    )
    reruns: int = Field(1, ge=0, le=5, description="times a flagged level is measured again")


class StudySpec(Spec):
    """A study: engines x level sets (workload x load levels), with SLOs. YAML round-trips."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    engines: list[EngineSpec] = Field(min_length=1)
    level_sets: list[LevelSetSpec] = Field(default_factory=lambda: [LevelSetSpec()], min_length=1)
    slo: SloSpec = SloSpec()
    busy: BusySpec = BusySpec()
    keep_engines_loaded: bool = Field(
        True,
        description="start each engine once and keep it loaded while the others run (idle, they cost "
        "0.02 cores and about 5% of vLLM's tok/s at 32 users: benchmarks/idle_engines.py); false: "
        "start and stop each engine for every repeat",
    )
    seed: int = 0
    tokenizer: Literal["model", "fake"] = Field(
        "model",
        description="'model': the first engine model's own; 'fake': one token per character, no model "
        "needed (studies of `fake` engines)",
    )
    hardware: str | None = Field(
        None,
        description="hardware the study is meant for (a cliffbench.hardware HARDWARE key, or 'local'): "
        "dry-run estimates and the KV-memory check use it",
    )

    @field_validator("engines", mode="before")
    @classmethod
    def _presets(cls, v: Any) -> Any:
        """An entry naming a `preset` and no `kind` (`{preset: ollama-0.10+, label: ollama}`) becomes
        the preset's spec, built from data/published/engine_defaults.csv, with the entry's other keys
        on top. An entry that gives `kind` is taken as written: a stored study keeps what it ran with."""
        if not isinstance(v, list):
            return v
        out = []
        for i, e in enumerate(v):
            if isinstance(e, dict) and e.get("preset") is not None and "kind" not in e:
                rest = {k: x for k, x in e.items() if k != "preset"}
                try:
                    e = preset_spec(str(e["preset"]), **rest)
                except ValueError as exc:
                    raise ValueError(f"entry {i}: {exc}") from None
            out.append(e)
        return out

    @field_validator("name")
    @classmethod
    def _not_dots(cls, v: str) -> str:
        # a name of dots only would be a path outside data/results/
        if not v.strip("."):
            raise ValueError(f"{v!r} is not a study name: use letters, digits, '_', '-' or '.'")
        return v

    @field_validator("hardware")
    @classmethod
    def _known_hardware(cls, v: str | None) -> str | None:
        if v is not None and v != "local" and v not in HARDWARE:
            raise ValueError(f"unknown hardware {v!r}; allowed: local, {', '.join(HARDWARE)}")
        return v

    @model_validator(mode="after")
    def _unique_labels(self) -> StudySpec:
        for what, names in (
            ("engine labels", [e.name for e in self.engines]),
            ("level_sets names", [s.name for s in self.level_sets]),
        ):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"{what} must be unique, repeated: {sorted(dup)}")
        labels = [e.name for e in self.engines]
        for ls in self.level_sets:
            wanted = ls.load.search.engines if ls.load.search is not None else None
            unknown = sorted(set(wanted or []) - set(labels))
            if unknown:
                raise ValueError(
                    f"level set {ls.name!r}: load.search.engines names no engine: {unknown}; allowed: {labels}"
                )
        return self

    @model_validator(mode="after")
    def _clients_drive_http(self) -> StudySpec:
        """Client processes send HTTP requests; an in-process engine lives in the one process that
        runs it, so its load cannot be split."""
        for i, ls in enumerate(self.level_sets):
            k = ls.load.client_processes
            inproc = [e.name for e in self.engines if e.in_process and ls.load.only_at.get(e.name) != []]
            if k > 1 and inproc:
                raise ValueError(
                    f"level_sets.{i}.load.client_processes: {k} client processes drive only openai-http "
                    f"engines, {inproc[0]!r} runs in this process; allowed for it: 1"
                )
        return self

    def level_set_doc(self, name: str) -> dict[str, Any]:
        """Level set `name` as a plain dict, for a caller to change before `one_level_set`."""
        for ls in self.level_sets:
            if ls.name == name:
                return ls.model_dump(mode="json")
        raise KeyError(f"level set {name!r}: allowed: {', '.join(ls.name for ls in self.level_sets)}")

    def one_level_set(
        self, name: str, engine: EngineSpec, level_set: dict[str, Any], repeat: int = 0, **fields: Any
    ) -> StudySpec:
        """This study cut to one engine and one level set (a `level_set_doc`, changed), named `name`,
        seeded per `repeat` (each repeat draws its own requests), other study `fields` set on top:
        how a benchmark runs one engine through the study's own path (`run_study_async`)."""
        doc = self.model_dump(mode="json")
        doc.update(name=name, engines=[engine.model_dump(mode="json")], level_sets=[level_set])
        doc.update(seed=self.seed + 7 * repeat, **fields)
        return StudySpec.model_validate(doc)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class RunFlags(Spec):
    """The flag form of `cliffbench run` (and of notebook 10): one engine over a list of user counts.
    Declared here, beside the study it builds (`flag_study`), so the CLI and the notebook share it."""

    engine: str = Field("", description=f"flag form instead of a study file: {' | '.join(ENGINE_KINDS)}")
    slots: int | None = Field(None, gt=0, description="llamacpp-slots: number of slots")
    url: str | None = Field(None, description="openai-http: base URL of a running server (.../v1)")
    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4], description="flag form: users per level")
    workload: str = Field("chat", description=f"flag form: {' | '.join(WORKLOAD_PRESETS)}")
    requests_per_level: int = Field(8, gt=0, description="flag form: measured requests per level")
    seed: int = Field(0, description="overrides the study's seed when not 0")
    force: bool = Field(False, description="redo levels already stored")


def cli_flag(name: str) -> str:
    """The `cliffbench run` flag of a flag-form field (field names as report.params.BenchmarkParams)."""
    return "--name" if name == "study_name" else "--" + name.replace("_", "-")


# where flag_study's inputs land in the specs it validates, so their errors name the input
_FLAG_LOCS = {
    "load.concurrency": "concurrency",
    "load.requests_per_level": "requests_per_level",
    "name": "study_name",
    "engines.0.llamacpp-slots.slots": "slots",
    "url": "url",
}


def _relabeled(exc: InputError, label: Callable[[str], str]) -> InputError:
    loc, _, msg = str(exc).partition(": ")
    field = _FLAG_LOCS.get(loc)
    return InputError(f"{label(field)}: {msg}") if field else exc


def flag_study(
    engine: str,
    slots: int | None,
    concurrency: str,
    requests_per_level: int,
    workload: str,
    name: str | None,
    url: str | None = None,
    *,
    label: Callable[[str], str] = cli_flag,
) -> StudySpec:
    """The study of `cliffbench run --engine ...` (and of notebook 10's flag form). Errors name each
    input by `label(field)`: the run flag by default, `parameter <field>` for the notebook."""
    if engine not in ENGINE_KINDS:
        raise InputError(f"{label('engine')}: unknown engine {engine!r}; allowed: {', '.join(ENGINE_KINDS)}")
    if workload not in WORKLOAD_PRESETS:
        raise InputError(f"{label('workload')}: unknown workload {workload!r}; allowed: {', '.join(WORKLOAD_PRESETS)}")
    try:
        levels = [int(x) for x in concurrency.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{label('concurrency')}: expected comma-separated integers, got {concurrency!r}") from None
    eng: dict[str, Any] = {"kind": engine}
    # a flag applies to the kinds whose spec has its setting
    url_kinds, slot_kinds = kinds_with("url"), kinds_with("slots")
    if (url is not None) != (engine in url_kinds):
        raise InputError(f"{label('url')}: give it exactly when {label('engine')} is {' or '.join(url_kinds)}")
    if slots is not None:
        if engine not in slot_kinds:
            raise InputError(f"{label('slots')}: only for {label('engine')} {' or '.join(slot_kinds)}")
        eng["slots"] = slots
    try:
        if url is not None:
            eng["url"] = parse_spec(OpenAIHttpSpec, {"url": url}).url
        level_set = parse_spec(
            LevelSetSpec,
            {
                "name": workload,
                "workload": WORKLOAD_PRESETS[workload].model_dump(),
                "load": {"concurrency": levels, "requests_per_level": requests_per_level},
            },
        )
        study: StudySpec = parse_spec(
            StudySpec,
            {
                "name": name or f"{engine}{'-' + str(slots) if slots else ''}-{workload}",
                "engines": [eng],
                "level_sets": [level_set.model_dump()],
            },
        )
    except InputError as exc:
        raise _relabeled(exc, label) from None
    return study


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study YAML file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"study: file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"study: {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"study: {p} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if not isinstance(data, dict):
        raise InputError(f"study: {p} must hold a mapping at top level")
    data.setdefault("name", p.stem)
    spec: StudySpec = parse_spec(StudySpec, data, prefix="study.")
    return spec

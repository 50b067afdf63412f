"""The engine tuning sweep stored beside the study (benchmarks/engine_tuning.py), and whether the
study's best-of-each engines are the sweep's winners.

A sweep configuration and a study engine are the same configuration when the settings that decide
speed agree (family, weight precision on each one's CPU, slots and KV sharing for llama.cpp,
eager/compiled, OpenMP binding and prefix caching for vLLM), whatever their labels.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from cliffbench.bench.store.tuning import TuningRun, TuningSweep
from cliffbench.engines.specs import EngineSpec, family_kind
from cliffbench.report.data import ReportData
from cliffbench.report.sections.common import fmt, measured_levels
from cliffbench.report.sections.comparisons import comparisons

__all__ = ["config_key", "sweep_of", "tuning_section"]

_SPEC: TypeAdapter[EngineSpec] = TypeAdapter(EngineSpec)
_RUN_IT = "run `benchmarks/engine_tuning.py --skip-compiled` for the sweep the comparisons cite"


def config_key(es: EngineSpec, precision: str) -> tuple[Any, ...] | None:
    """The settings that make two engine specs the same configuration (None: not vLLM or llama.cpp)."""
    return es.speed_key(precision)


def _run_key(run: TuningRun) -> tuple[Any, ...] | None:
    # a spec stored without its defaults may lack `kind`, the default of each kind's own field
    try:
        es = _SPEC.validate_python({"kind": family_kind(run.family), **run.spec})
    except ValidationError:
        return None
    return config_key(es, run.precision)


def sweep_of(data: ReportData) -> tuple[TuningSweep | None, str]:
    """The stored sweep, or None and the sentence that says why there is none to show."""
    if data.tuning is None:
        return None, f"No tuning sweep is stored beside the study; {_RUN_IT}."
    try:
        return TuningSweep.model_validate(data.tuning.data), ""
    except ValidationError:
        return None, (
            f"`{data.tuning.name}` holds single runs in an older format (no repeats, no per-family winner); {_RUN_IT}."
        )


def _cpu(manifest: dict[str, Any]) -> tuple[str, list[str]]:
    cpu = manifest.get("cpu") or {}
    return str(cpu.get("model", "an unrecorded CPU")), sorted(cpu.get("flags") or [])


def _and(items: list[int]) -> str:
    words = [str(i) for i in items]
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _range(run: TuningRun) -> str:
    lo, hi = run.range_tok_s
    return f"{fmt(run.median_tok_s)} ({fmt(lo)}-{fmt(hi)})"


def _winners_table(sw: TuningSweep) -> list[str]:
    lines = [
        "| users | family | fastest configuration | tok/s, median (range) | TTFT p50 | next fastest | next / fastest |",
        "|---|---|---|---|---|---|---|",
    ]
    for users in sw.users:
        for family in ("llama.cpp", "vllm"):
            runs = sw.at(users, family)
            if not runs:
                continue
            top = runs[0]
            nxt, ratio = "none", ""
            if len(runs) > 1:
                mid, lo, hi = sw.ratio(runs[1], top)
                nxt = f"{runs[1].config}, {_range(runs[1])}"
                ratio = f"x{fmt(mid)} (x{fmt(lo)}-x{fmt(hi)})"
            lines.append(
                f"| {users} | {family} | {top.config} ({top.precision}) | {_range(top)} | "
                f"{fmt(top.median_ttft_p50_s * 1000)} ms | {nxt} | {ratio} |"
            )
    return lines


def _study_keys(data: ReportData) -> dict[tuple[Any, ...], str]:
    manifest = data.results.manifest
    flags = (manifest.get("cpu") or {}).get("flags") or []
    gpu = bool(manifest.get("gpu"))
    out: dict[tuple[Any, ...], str] = {}
    for name, es in data.results.engine_specs.items():
        key = config_key(es, es.precision(flags, gpu))
        if key is not None:
            out.setdefault(key, name)
    return out


def _includes(data: ReportData, sw: TuningSweep, level_set: str) -> str:
    """Whether the study's best-of-each engines at its top load are the sweep's winners there."""
    best = [c for c in comparisons(data, level_set) if c.kind == "best of each"]
    keys = _study_keys(data)
    users = max((c.users for c in best), default=max(sw.users))
    if users not in sw.users:
        users = max(sw.users)
    study_best = next((c for c in best if c.users == users), None)
    fastest = {"vllm": study_best.vllm, "llama.cpp": study_best.llamacpp} if study_best else {}
    ran = set(measured_levels(data, level_set).query("concurrency == @users")["engine"])
    said = []
    for family in ("llama.cpp", "vllm"):
        win = sw.winner(family, users)
        if win is None:
            continue
        key = _run_key(win)
        engine = keys.get(key) if key is not None else None
        where = f"{family}'s winner {win.config}"
        if engine is None:
            said.append(f"{where} is not in the study (no engine has its configuration)")
        elif engine not in ran:
            said.append(f"{where} is in the study as {engine}, with no level at {users} users stored yet")
        elif engine == fastest.get(family):
            said.append(f"{where} is in the study as {engine}, its best of each there")
        else:
            said.append(f"{where} is in the study as {engine}, not its fastest {family} engine there")
    head = (
        f"At {users} users the study's best of each is {study_best.vllm} against {study_best.llamacpp}; "
        if study_best
        else f"The study has no best-of-each comparison at {users} users; "
    )
    return head + "; ".join(said) + "." if said else ""


def tuning_section(data: ReportData, level_set: str = "chat") -> str:
    """The stored sweep: when, where, how; each family's winner with its range; whether the study's
    best-of-each engines include the winners."""
    sw, why = sweep_of(data)
    if sw is None:
        return why
    cpu, flags = _cpu(sw.machine)
    study_cpu, study_flags = _cpu(data.results.manifest)
    configs = sorted({r.config for r in sw.runs})
    workload = sw.workload.get("workload", {})
    out_tokens = (workload.get("output") or {}).get("mean", "?")
    text = [
        f"The tuning sweep stored beside the study (`{data.tuning.name if data.tuning else ''}`, "
        f"{sw.created_at:%Y-%m-%d}, on {cpu}) measured {len(configs)} configurations through the path "
        f"`cliffbench run` takes, with the study's {sw.workload.get('level_set', 'chat')} workload "
        f"({out_tokens} output tokens a request) at {_and(sw.users)} users, "
        + (f"{sw.repeats} repeats interleaved round by round" if sw.repeats > 1 else "one repeat")
        + f", in {fmt(sw.wall_s / 60)} min (load average {fmt(sw.loadavg_1m_before)} before, "
        f"{fmt(sw.loadavg_1m_after)} after)."
    ]
    if sw.quick:
        text.append("It is a smoke run (`--quick`: one repeat, short answers), not a measurement.")
    if (cpu, flags) != (study_cpu, study_flags):
        text.append(
            f"It was measured on another machine ({cpu}; flags {', '.join(flags) or 'none'}) than this study "
            f"({study_cpu}; flags {', '.join(study_flags) or 'none'}): its ranking need not hold here."
        )
    lines = [" ".join(text), "", *_winners_table(sw), ""]
    lines.append(
        "Throughput is the median output tok/s over the sweep's repeats (range min-max); a ratio is that of the "
        "medians, its range over the per-repeat ratios (repeat r of every configuration ran in the same round). "
        + _includes(data, sw, level_set)
    )
    return "\n".join(lines)

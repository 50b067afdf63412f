"""Self-hosted rows from a stored study: each engine family's capacity and throughput as measured,
projected to the matrix's hardware and model by the roofline.

A study measures engines on its own machine (often a CPU box and a small model); the matrix asks
about a GPU and an 8B model. For each option an engine of the study stands for (`option_engines`:
vLLM for the vLLM options, llama.cpp slots for the slot options, one request at a time for Ollama's
one slot), the representative engine is the one that meets the SLO at the most users, then the
fastest there. Its numbers:

- capacity: the cliff bracket (`decide.tree.engine_cliff_details`) of its levels, judged at the
  study's SLO percentiles with the matrix's TTFT budget (`decide.tree.pooled_levels`);
- throughput at that load: the median output tok/s of the highest level that meets the SLO;
- efficiency: that throughput over the roofline ceiling of the measured machine, model and
  precision at that batch (`audit.shape_verdicts.efficiency`: the lower of the memory and compute
  roofs of the probed machine).

Where the study ran the matrix's hardware and model, the row is the measurement: its "meets the SLO
at N users" is the study's verdict at N (judged at the next measured level, as the tree judges) and
its throughput the measured one. Elsewhere the row is projected: the target's roofline (its memory
and compute ceilings at the target's precision) at the measured efficiency, which is measured tok/s
x target ceiling / measured ceiling, through the same cost model as the unmeasured rows; the source
text prints the measured numbers beside the projection and its assumptions. Families the study did
not measure keep the roofline at the default efficiency, labelled so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

from cliffbench.audit.roofline import MODELS
from cliffbench.audit.shape_verdicts import efficiency as roofline_efficiency
from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.bench.store.levels import Results
from cliffbench.decide.matrix.data import MatrixData, Option
from cliffbench.decide.matrix.model import (
    NOT_MEASURABLE,
    MatrixParams,
    SelfHostedEstimate,
    roofline_capacity,
    roofline_estimate,
)
from cliffbench.decide.tree import Cliff, engine_cliff_details, interpolate, pooled_levels, select_levels
from cliffbench.engines.specs import stands_for

__all__ = [
    "MeasuredFamily",
    "capacity_text",
    "load_study",
    "measured_families",
    "option_engines",
    "self_hosted_estimate",
    "study_machine",
]


def option_engines(levels: pd.DataFrame, data: MatrixData) -> dict[str, list[str]]:
    """Which matrix options a study's engine stands for, by engine kind: vLLM for the vLLM options
    (not the engines cliffbench cannot run, nor gpt-oss, another model); llama.cpp slots for the
    options with several slots; one request at a time (llamacpp-serial) for the one-slot option."""
    out: dict[str, list[str]] = {}
    kinds = levels.groupby("engine")["engine_kind"].first() if "engine_kind" in levels else pd.Series(dtype=str)
    for engine, kind in kinds.items():
        opts = []
        for o, opt in data.options.items():
            if opt.kind != "self-hosted" or o in NOT_MEASURABLE or (o, "cost") in data.cells:
                continue
            if stands_for(str(kind), opt.engine, opt.slots):
                opts.append(o)
        out[str(engine)] = opts
    return out


def study_machine(res: Results) -> str:
    """The machine a study ran on, in words: its GPUs, else its CPU."""
    gpus = [str(g.get("name", "")) for g in res.manifest.get("gpu", []) or []]
    cpu = res.manifest.get("cpu", {}) or {}
    return ", ".join(gpus) if gpus else f"{cpu.get('usable_cpus', '?')} CPU cores ({cpu.get('model', '?')}), no GPU"


@dataclass(frozen=True)
class MeasuredFamily:
    """One option's representative engine in a study, and what the study measured of it."""

    study: str
    machine: str
    engine: str
    judge: str  # the SLO it was judged by, in words
    cliff: Cliff
    verdicts: dict[float, str]  # measured users -> the level's verdict
    tok_s: float  # median output tok/s at `at_users`
    at_users: float  # the highest level meeting the SLO (the lowest level when none does)
    efficiency: float  # tok_s / the measured machine's roofline there; NaN without a probe
    precision: str  # the engine's weights as measured
    same_target: bool  # measured on the matrix's hardware with its model
    levels: pd.DataFrame  # the study's judged levels (for interpolation)
    ttft_metric: str  # the levels' TTFT column at the SLO's percentile

    def verdict_at(self, users: int) -> tuple[str, float | None]:
        """The study's verdict at `users`, judged at the next measured level; 'unmeasured' above them."""
        above = sorted(u for u in self.verdicts if u >= users)
        return (self.verdicts[above[0]], above[0]) if above else ("unmeasured", None)

    def text(self) -> str:
        eff = f", x{self.efficiency:.3g} of that machine's roofline ({self.precision})" if self.projectable else ""
        return (
            f"study {self.study}, engine {self.engine} on {self.machine}: {self.judge} met {self.cliff.text()}; "
            f"{self.tok_s:.3g} tok/s at {self.at_users:g} users{eff}"
        )

    @property
    def projectable(self) -> bool:
        return math.isfinite(self.efficiency) and self.efficiency > 0


_STUDIES: dict[tuple[str, int], Results] = {}


def load_study(study: str) -> Results:
    """load_results, read once per study and state on disk: the sweeps ask for it per utilisation."""
    from cliffbench.bench.store import levels as store

    levels = store.study_dir(study) / "levels"
    key = (study, levels.stat().st_mtime_ns if levels.is_dir() else -1)
    if key not in _STUDIES:
        _STUDIES.clear()
        _STUDIES[key] = store.load_results(study)
    return _STUDIES[key]


def _same_hardware(res: Results, hardware: str) -> bool:
    gpus = " ".join(str(g.get("name", "")) for g in res.manifest.get("gpu", []) or []).lower()
    family, _, size = hardware.partition("-")
    return bool(gpus) and family in gpus and not (size.endswith("gb") and size.lower() not in gpus)


def measured_families(res: Results, params: MatrixParams, data: MatrixData) -> dict[str, MeasuredFamily]:
    """Each self-hosted option's representative engine in `res` (options no engine stands for are absent)."""
    judge = SloJudge.of(res.study.slo, ttft_s=params.ttft_slo_s)
    lv = select_levels(pooled_levels(res, judge))
    if lv.empty:
        return {}
    level_set = str(lv["level_set"].iloc[0]) if "level_set" in lv else "chat"
    cliffs = engine_cliff_details(lv)
    eff = roofline_efficiency(res, level_set)
    same_hw = _same_hardware(res, params.hardware)
    target = MODELS[params.model].n_params
    models = res.manifest.get("models", {}) or {}
    metric = f"ttft_s_p{judge.percentile('ttft_s'):g}"
    metric = metric if metric in lv else "ttft_s_p50"
    families: dict[str, MeasuredFamily] = {}
    for engine, opts in option_engines(lv, data).items():
        if engine not in cliffs:
            continue
        rows = lv[lv["engine"] == engine].sort_values("concurrency")
        ok = rows[rows["status"] == "ok"] if "status" in rows else rows
        cliff = cliffs[engine]
        at = cliff.meets_up_to if cliff.meets_up_to > 0 else float(ok["concurrency"].min()) if len(ok) else math.nan
        tok = ok.loc[ok["concurrency"] == at, "output_tok_s"]
        e_row = eff[(eff["engine"] == engine) & (eff["concurrency"] == at)] if len(eff) else eff
        fam = MeasuredFamily(
            study=res.study.name,
            machine=study_machine(res),
            engine=engine,
            judge=judge.text(),
            cliff=cliff,
            verdicts=dict(zip(rows["concurrency"].astype(float), rows["slo_verdict"].astype(str), strict=True)),
            tok_s=float(tok.iloc[0]) if len(tok) else math.nan,
            at_users=at,
            efficiency=float(e_row["efficiency"].iloc[0]) if len(e_row) else math.nan,
            precision=str(e_row["precision"].iloc[0]) if len(e_row) else "as stored",
            same_target=same_hw and (models.get(engine, {}) or {}).get("n_params") == target,
            levels=lv,
            ttft_metric=metric,
        )
        for o in opts:
            best = families.get(o)
            if best is None or (fam.cliff.meets_up_to, fam.tok_s) > (best.cliff.meets_up_to, best.tok_s):
                families[o] = fam
    return families


def self_hosted_estimate(
    option: Option,
    params: MatrixParams,
    users: int | None = None,
    replicas: int | None = None,
    measured: MeasuredFamily | None = None,
) -> SelfHostedEstimate | None:
    """Throughput and TTFT of a self-hosted option at `users` (default params.users): the study's
    measurement where it ran the matrix's hardware and model (one server, within its measured levels),
    else projected from it at its measured efficiency, else the roofline at params.efficiency."""
    users = users or params.users
    if measured is None:
        return roofline_estimate(option, params, users, replicas)
    fam = measured
    verdict, at = fam.verdict_at(users)
    if fam.same_target and verdict != "unmeasured" and (option.max_replicas == 1 or verdict == "meets"):
        tok_s = interpolate(fam.levels, fam.engine, "output_tok_s", users)
        ttft_s = interpolate(fam.levels, fam.engine, fam.ttft_metric, users)
        if math.isfinite(tok_s) and tok_s > 0:
            judged = "" if at == users else f", judged at {at:g}"
            how = f"measured: {fam.text()}; at {users} users it {verdict}{judged}"
            return SelfHostedEstimate(tok_s, ttft_s, 1, users, verdict == "meets", how)
    if not fam.projectable:
        est = roofline_estimate(
            option, params, users, replicas, label="roofline (no probe in the study to project from)"
        )
        return None if est is None else dataclasses.replace(est, source=f"{est.source}; measured: {fam.text()}")
    est = roofline_estimate(option, params, users, replicas, min(fam.efficiency, 1.0), "projected")
    return None if est is None else dataclasses.replace(est, source=f"{est.source}, from {fam.text()}")


def capacity_text(option: Option, params: MatrixParams, measured: MeasuredFamily | None) -> tuple[int, str]:
    """(users one server meets the TTFT SLO for, where the number comes from) on params.hardware."""
    where = f"{params.hardware}, {params.model}"
    if measured is not None and measured.same_target:
        return int(measured.cliff.meets_up_to), f"measured: {measured.text()}"
    if measured is not None and measured.projectable:
        n = roofline_capacity(option, params, min(measured.efficiency, 1.0))
        return n, f"projected to {where} at x{min(measured.efficiency, 1.0):.3g} of its roofline from {measured.text()}"
    n = roofline_capacity(option, params)
    return n, f"roofline estimate for {where} at x{params.efficiency:g} efficiency (not measured)"

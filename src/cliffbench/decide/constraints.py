"""A decision tree that starts from the reader's constraints and ends in an option of the matrix.

`decide.tree` answers "which engine, for how many users" from measured cliffs; a reader deciding an
architecture starts elsewhere. This tree asks first what rules options out, each rule a threshold
read from the data, never typed in:

1. Must prompts stay on your own hardware, or in a region? Own hardware rules out every managed
   option (options.csv `kind`); a region keeps options whose `residency` cell scores 4 or more
   (processing pinned to a region you choose: the criterion's own scale), and rules out unknowns.
2. Is a GPU available, and which? No GPU keeps self-hosted options whose `hardware_reach` cell
   lists `cpu`; an owned GPU keeps those listing `cuda` (every GPU of `cliffbench.hardware` is
   NVIDIA) on which the model fits (the cost model's memory check); renting keeps those listing
   `cuda`, priced at the stored GPU-hour.
3. Is there an ops team? Without one, only options whose `ops` cell scores 4 or more (one install
   or an API key, no GPU stack) remain.
4. One user, a team, or a service? A service rules out single-server options (options.csv
   `max_replicas` 1): no replica to fail over to.
5. Where the engines differ, the measured cliffs of a stored study decide: a self-hosted option
   whose engines all miss the SLO at the reader's peak users (judged at the next measured level,
   by `decide.tree.recommend`) is ruled out, citing the level.

The leaf is the option the matrix ranks first among those left, at the reader's profile (users,
SLO, GPU, load profile), preferring one whose cost is known; it prints that cost and cites where
each number comes from. Without a GPU the computed criteria (GPU cost, roofline TTFT) do not apply:
their weights are set to 0 and the cost stays unknown, not guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from pydantic import Field

from cliffbench.bench.metrics.repeats import SloJudge
from cliffbench.bench.store.levels import Results
from cliffbench.config import InputError, Spec
from cliffbench.decide.matrix import MatrixData, MatrixParams, MatrixResult, evaluate, load_matrix
from cliffbench.decide.matrix.data import Cell, reach
from cliffbench.decide.matrix.measured import option_engines, study_machine
from cliffbench.decide.tree import UserProfile, pooled_levels, recommend, select_levels
from cliffbench.hardware import HARDWARE

__all__ = [
    "DATA_CHOICES",
    "GPU_CHOICES",
    "OPS_MIN",
    "RESIDENCY_MIN",
    "TRAFFIC_CHOICES",
    "ConstraintPath",
    "MeasuredStudy",
    "ReaderConstraints",
    "Step",
    "constraint_problem",
    "constraint_tree",
    "engine_options",
    "example_readers",
    "measured_study",
]

DATA_CHOICES = ("any", "own-hardware", "in-region")
GPU_CHOICES = ("none", "rent", *HARDWARE)
TRAFFIC_CHOICES = ("auto", "one", "team", "service")
# thresholds on the criteria's own 1-5 scales (criteria.csv describes each score)
RESIDENCY_MIN = 4  # "processing pinned to a region or zone you choose"
OPS_MIN = 4  # "no GPU stack to run": one install or an API key


class ReaderConstraints(Spec):
    """What the reader brings: the questions of the tree, as `cliffbench recommend` flags and
    notebook parameters."""

    data: str = Field("any", description="where prompts may go: any, own-hardware or in-region")
    gpu: str = Field("rent", description="none (a CPU box), rent (no own GPU) or the GPU you own (a hardware key)")
    ops_team: bool = Field(True, description="an ops team can run GPU servers (drivers, upgrades, on-call)")
    traffic: str = Field("auto", description="one, team, service, or auto (1 user: one; more: team)")
    users: int = Field(25, gt=0, description="peak concurrent users")

    @property
    def traffic_class(self) -> str:
        if self.traffic != "auto":
            return self.traffic
        return "one" if self.users == 1 else "team"


def constraint_problem(name: str, value: object) -> str | None:
    """What is wrong with constraint `name` (data, gpu, traffic), or None; the caller names the parameter."""
    allowed = {"data": DATA_CHOICES, "gpu": GPU_CHOICES, "traffic": TRAFFIC_CHOICES}.get(name)
    if allowed is not None and value not in allowed:
        return f"unknown value {value!r}; allowed: {', '.join(allowed)}"
    return None


def _check(c: ReaderConstraints, names: dict[str, str]) -> None:
    for name in ("data", "gpu", "traffic"):
        if problem := constraint_problem(name, getattr(c, name)):
            raise InputError(f"{names.get(name, name)}: {problem}")


@dataclass(frozen=True)
class MeasuredStudy:
    """The measured side of the tree: one study's pooled, judged levels of one level set."""

    name: str
    machine: str
    levels: pd.DataFrame
    judge: SloJudge


def measured_study(res: Results, level_set: str, ttft_slo_s: float, tpot_slo_s: float) -> MeasuredStudy:
    """`res`'s levels of `level_set`, judged by the reader's budgets at the study's SLO percentiles."""
    judge = SloJudge.of(res.study.slo, ttft_s=ttft_slo_s, tpot_s=tpot_slo_s)
    levels = select_levels(pooled_levels(res, judge), level_set)
    return MeasuredStudy(res.study.name, study_machine(res), levels, judge)


engine_options = option_engines  # the matrix's mapping: which options a study's engine stands for


@dataclass(frozen=True)
class Step:
    """One question of the tree: the reader's answer, what it ruled out (option -> reason, with
    the cell or level it rests on) and the options left."""

    question: str
    answer: str
    ruled_out: dict[str, str]
    left: list[str]
    note: str = ""


@dataclass(frozen=True)
class ConstraintPath:
    constraints: ReaderConstraints
    steps: list[Step]
    leaf: str | None
    leaf_name: str
    cost_text: str
    cost_note: str
    score: float
    verdict: str
    alternatives: list[tuple[str, str, float, str]] = field(default_factory=list)  # (id, name, score, cost)
    citations: list[str] = field(default_factory=list)


def _cite(cell: Cell | None) -> str:
    if cell is None:
        return "no cell"
    shown = f"{cell.value} ({cell.score:g}/5)" if cell.known and cell.score is not None else cell.value
    return f"{shown}; {cell.source_url}, {cell.as_of}, verified {cell.verified}"


def _rule(step_left: list[str], out: dict[str, str], question: str, answer: str, note: str = "") -> Step:
    return Step(question, answer, out, [o for o in step_left if o not in out], note)


def _matrix_params(c: ReaderConstraints, base: MatrixParams, data: MatrixData) -> tuple[MatrixParams, str]:
    """The matrix profile at the reader's users and GPU; an owned GPU without a price of the chosen
    pricing model is priced at another stored one, and the note says so."""
    update: dict[str, object] = {"users": c.users}
    note = ""
    if c.gpu in HARDWARE:
        update["hardware"] = c.gpu
        if c.gpu not in base.gpu_prices and not data.prices_for(c.gpu, base.pricing_model):
            other = data.prices_for(c.gpu)
            if other:
                update["pricing_model"] = other[0].pricing_model
                note = f"{c.gpu} has no {base.pricing_model} price: costed at its {other[0].pricing_model} price"
    if c.gpu == "none":
        # GPU-hour cost and roofline TTFT do not describe a CPU box: left out of the ranking, not guessed
        update["weights"] = {**base.weights, "cost": 0.0, "ttft": 0.0}
    if c.users < base.offpeak_users:
        update["offpeak_users"] = c.users
    return base.model_copy(update=update), note


def constraint_tree(
    constraints: ReaderConstraints,
    base: MatrixParams | None = None,
    data: MatrixData | None = None,
    study: MeasuredStudy | None = None,
    names: dict[str, str] | None = None,
) -> ConstraintPath:
    """The reader's path through the tree and its leaf. `base` carries the matrix's other
    parameters (weights, load profile, prices, report date); `study` the measured cliffs."""
    names = names or {}
    _check(constraints, names)
    data = data or load_matrix()
    base = base or MatrixParams()
    params, price_note = _matrix_params(constraints, base, data)
    r = evaluate(params, data)
    c = constraints
    cells = data.cells
    left = list(r.eligible)
    steps: list[Step] = []

    # 1. where prompts may go
    out: dict[str, str] = {}
    for o in left:
        opt = data.options[o]
        if c.data == "own-hardware" and opt.kind == "managed":
            out[o] = f"runs on the vendor's hardware (deployment: {_cite(cells.get((o, 'deployment')))})"
        if c.data == "in-region":
            cell = cells.get((o, "residency"))
            if cell is None or not cell.known or (cell.score or 0) < RESIDENCY_MIN:
                out[o] = f"residency below {RESIDENCY_MIN}/5 ({_cite(cell)})"
    steps.append(_rule(left, out, "Must prompts stay on your own hardware, or in a region?", c.data))
    left = steps[-1].left

    # 2. the GPU
    out = {}
    need = "cpu" if c.gpu == "none" else "cuda"
    for o in left:
        if data.options[o].kind != "self-hosted":
            continue
        cell = cells.get((o, "hardware_reach"))
        if need not in reach(cell):
            out[o] = f"hardware reach lacks {need} ({_cite(cell)})"
        elif c.gpu in HARDWARE and r.throughput_source.get(o) == "does not fit":
            out[o] = f"{params.model} {params.precision} does not fit {c.gpu} (roofline memory check)"
    answer = {"none": "none: a CPU box", "rent": "none owned: rent GPU-hours"}.get(c.gpu, f"own {c.gpu}")
    steps.append(_rule(left, out, "Is a GPU available, and which?", answer, price_note))
    left = steps[-1].left

    # 3. the ops team
    out = {}
    if not c.ops_team:
        for o in left:
            cell = cells.get((o, "ops"))
            if cell is None or not cell.known or (cell.score or 0) < OPS_MIN:
                out[o] = f"operational burden below {OPS_MIN}/5 ({_cite(cell)})"
    steps.append(_rule(left, out, "Is there an ops team to run GPU servers?", "yes" if c.ops_team else "no"))
    left = steps[-1].left

    # 4. the traffic
    out = {}
    if c.traffic_class == "service":
        for o in left:
            if data.options[o].max_replicas == 1:
                out[o] = "one server (options.csv max_replicas 1): no replica to fail over to or scale out"
    users = f"{c.users} user" + ("s" if c.users != 1 else "")
    steps.append(_rule(left, out, "One user, a team, or a service?", f"{c.traffic_class} ({users} at peak)"))
    left = steps[-1].left

    # 5. the measured cliffs, where the engines differ
    steps.append(_measured_step(c, left, data, study))
    left = steps[-1].left
    return _leaf(c, steps, left, r, price_note)


def _measured_step(c: ReaderConstraints, left: list[str], data: MatrixData, study: MeasuredStudy | None) -> Step:
    question = "Where the engines differ: which meet the SLO at your peak users (measured cliffs)?"
    if study is None:
        return Step(question, "no stored study given", {}, left, "nothing measured: the matrix alone decides")
    mapping = engine_options(study.levels, data)
    mine = {e: [o for o in opts if o in left] for e, opts in mapping.items()}
    mine = {e: opts for e, opts in mine.items() if opts}
    where = f"study {study.name} on {study.machine}, {study.judge.text()}"
    if not mine:
        return Step(question, "no measured engine among the options left", {}, left, where)
    profile = UserProfile(
        peak_users=c.users,
        ttft_slo_s=study.judge.thresholds.get("ttft_s", math.inf),
        tpot_slo_s=study.judge.thresholds.get("tpot_s", math.inf),
    )
    rec = recommend(study.levels, profile, study.judge)  # its evidence lines, one per engine
    # each engine judged at its own next measured level (as decide.tree does); above its highest: unmeasured
    verdicts: dict[str, tuple[str, str]] = {}
    for engine in mine:
        rows = study.levels[study.levels["engine"] == engine]
        above = sorted(float(u) for u in rows["concurrency"].unique() if float(u) >= c.users)
        line = next((e for e in rec.evidence if e.startswith(f"{engine} at ")), "")
        if not above or not line:
            verdicts[engine] = ("unmeasured", f"{engine}: {c.users} users is above its highest measured level")
            continue
        row = rows[rows["concurrency"] == above[0]]
        verdicts[engine] = (f"{row['slo_verdict'].iloc[0]} at {above[0]:g}", line)
    out: dict[str, str] = {}
    for o in left:
        engines = [e for e, opts in mine.items() if o in opts]
        if engines and all(verdicts[e][0].startswith("misses") for e in engines):
            out[o] = "misses: " + "; ".join(verdicts[e][1] for e in engines)
    out |= _slower(study.levels, {e: [o for o in opts if o not in out] for e, opts in mine.items()}, c.users)
    kept = [f"{e} {v}" for e, (v, _) in verdicts.items() if not v.startswith("misses")]
    note = f"{where}" + (f"; not ruled out: {', '.join(kept)}" if kept else "")
    return Step(question, f"{c.users} users", out, [o for o in left if o not in out], note)


def _slower(levels: pd.DataFrame, mine: dict[str, list[str]], users: int) -> dict[str, str]:
    """Where the engines that meet the SLO differ: at the first measured level at or above `users`
    where two or more of them were measured, an option whose engines there all served fewer tokens
    than the best one, over every repeat (the repeats' ranges do not overlap), is ruled out.
    Overlapping ranges are no difference: the matrix decides between those options."""
    if "output_tok_s_min" not in levels or "output_tok_s_max" not in levels:
        return {}
    live = levels[levels["engine"].isin([e for e, opts in mine.items() if opts]) & (levels["slo_verdict"] == "meets")]
    live = live[live["concurrency"] >= users]
    by_level: dict[float, set[str]] = {}
    for e, u in zip(live["engine"].astype(str), live["concurrency"].astype(float), strict=True):
        by_level.setdefault(u, set()).add(e)
    shared = sorted(u for u, engines in by_level.items() if len(engines) >= 2)
    if not shared:
        return {}
    rows = live[live["concurrency"] == shared[0]]
    # engine -> (median, lowest, highest output tok/s over the repeats) at that level
    tok: dict[str, tuple[float, float, float]] = {
        str(e): (float(m), float(lo), float(hi))
        for e, m, lo, hi in zip(
            rows["engine"], rows["output_tok_s"], rows["output_tok_s_min"], rows["output_tok_s_max"], strict=True
        )
    }
    best = max(tok, key=lambda e: tok[e][0])
    worse = {e for e, (_, _, hi) in tok.items() if hi < tok[best][1]}
    out: dict[str, str] = {}
    for o in {o for opts in mine.values() for o in opts}:
        measured = [e for e, opts in mine.items() if o in opts and e in tok]
        if measured and all(e in worse for e in measured):
            e = max(measured, key=lambda x: tok[x][0])
            out[o] = (
                f"meets, but slower where the engines differ: {e} {tok[e][0]:.3g} tok/s (repeats "
                f"{tok[e][1]:.3g}-{tok[e][2]:.3g}) against {best} {tok[best][0]:.3g} ({tok[best][1]:.3g}-"
                f"{tok[best][2]:.3g}) at {shared[0]:g} users"
            )
    return out


def _leaf(c: ReaderConstraints, steps: list[Step], left: list[str], r: MatrixResult, price_note: str) -> ConstraintPath:
    name = {o: opt.name for o, opt in r.data.options.items()}
    if not left:
        verdict = "no option meets every constraint: relax one (the steps above say which rules removed what)"
        return ConstraintPath(c, steps, None, "none", "-", "", math.nan, verdict)
    total = r.scores.total.loc[left].sort_values(ascending=False)
    costs = r.values.loc[left, "cost"]
    priced = [o for o in total.index if math.isfinite(float(costs.loc[o]))]
    pick = priced[0] if priced and c.gpu != "none" else str(total.index[0])
    alts = [(str(o), name[str(o)], float(total.loc[o]), str(r.text.loc[o, "cost"])) for o in total.index if o != pick]
    cost_text = str(r.text.loc[pick, "cost"])
    note = str(r.notes.loc[pick, "cost"])
    if c.gpu == "none" and r.data.options[pick].kind == "self-hosted":
        cost_text = "unknown"
        note = "on a CPU box you own the cost model has no price (it prices GPU-hours): power and the box, not guessed"
    skipped = pick in priced and pick != total.index[0]
    how = "the matrix's top" + (" among the options with a known cost" if skipped else "")
    verdict = (
        f"{name[pick]}: {how} of the {len(left)} option(s) left, weighted score {float(total.loc[pick]):.2f} at "
        f"{c.users} users" + (f"; {price_note}" if price_note else "")
    )
    src = str(r.sources.loc[pick, "cost"])
    cites = [f"cost: {note} [{src}]" if src else f"cost: {note}"]
    for step in steps:
        for o, why in step.ruled_out.items():
            cites.append(f"{name[o]} ruled out at '{step.question}': {why}")
    return ConstraintPath(c, steps, pick, name[pick], cost_text, note, float(total.loc[pick]), verdict, alts, cites)


def example_readers() -> dict[str, ReaderConstraints]:
    """The three readers the whitepaper and the tests walk through the tree."""
    return {
        "on-prem only, a CPU box, 2 users": ReaderConstraints(data="own-hardware", gpu="none", users=2),
        "an A100 40GB and 25 users": ReaderConstraints(gpu="a100-40gb", users=25),
        "no ops team, 3 users": ReaderConstraints(ops_team=False, users=3),
    }

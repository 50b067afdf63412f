"""`cliffbench run` killed with SIGKILL, SIGTERM and Ctrl-C (SIGINT) at each phase of a level:
engine start, warm-up, mid-level, and the store write (files written, not yet renamed into place).

The study has two llama.cpp engines, `a` then `b`; `a`'s two levels are stored before the run (by
an in-process run, once per module), so the CLI only starts `b` and is paused (its `on_phase`:
tests/faults/paused_cli.py) at a phase of b's first level, where the test sends the signal. The
twelve cases run side by side, each under its own root (a CLI takes seconds of CPU to start: one
after the other they would take minutes).

Each case checks: the exit code the README gives (SIGKILL: -9, SIGTERM: 143, Ctrl-C: 130); a's
levels byte for byte as they were; b's first level either whole and ok (Ctrl-C during the store
write lets the write finish, then stops) or absent, never a half-written level folder (a writer
killed mid-write leaves its temporary `.tmp-*` folder, which no reader takes for a level and the
next write of that level removes); no process of the run alive 10 s after the CLI exited.
"""

from __future__ import annotations

import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cliffbench.bench import sweep
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import load_results
from tests.conftest import fix_probe
from tests.faults import NO_RERUNS, PausedCli, leftovers, level_files, project_root

pytestmark = [pytest.mark.engine, pytest.mark.slow]

NAME = "kill-phases"
A_KEYS = ["a__chat__c0001", "a__chat__c0002"]
B_FIRST = "b__chat__c0001"
STUDY: dict[str, Any] = {
    "name": NAME,
    "busy": NO_RERUNS,
    "tokenizer": "fake",  # the engines take any token ids; the model's tokenizer costs each CLI seconds
    "engines": [
        {"kind": "llamacpp-serial", "label": "a", "n_ctx": 256, "n_threads": 1},
        {"kind": "llamacpp-serial", "label": "b", "n_ctx": 256, "n_threads": 1},
    ],
    "level_sets": [
        {
            "name": "chat",
            "workload": {"prompt": {"mean": 16}, "output": {"mean": 8}},
            "load": {"concurrency": [1, 2], "requests_per_level": 2, "warmup_requests": 1},
        }
    ],
}
# where each phase pauses: b's engine start, or b's first level
WHERE = {"engine-start": "b", "warmup": B_FIRST, "level": B_FIRST, "store": B_FIRST}
EXIT = {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 143, signal.SIGINT: 130}
CASES = [(phase, sig) for phase in WHERE for sig in EXIT]


@pytest.fixture(scope="module")
def stored(model: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder holding a's two levels (and a manifest with its hardware probe)."""
    results = tmp_path_factory.mktemp("kill-phases-template")
    spec = StudySpec.model_validate({**STUDY, "engines": STUDY["engines"][:1]})
    with pytest.MonkeyPatch.context() as mp:
        fix_probe(mp)
        sweep.run_study(spec, root=results)
    assert sorted(p.name for p in (results / NAME / "levels").iterdir()) == A_KEYS
    return results


@dataclass
class Killed:
    run: PausedCli
    results: Path
    code: int = 0


@pytest.fixture(scope="module")
def killed(stored: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, signal.Signals], Killed]:
    """Every (phase, signal) case, run side by side: each CLI paused at its phase, then signalled."""
    cases: dict[tuple[str, signal.Signals], Killed] = {}
    try:
        for phase, sig in CASES:
            root = project_root(tmp_path_factory.mktemp(f"{phase}-{sig.name}"))
            shutil.copytree(stored / NAME, root / "data" / "results" / NAME)
            study = root / "study.yaml"
            study.write_text(yaml.safe_dump(STUDY))
            # Ctrl-C is acted upon when the paused step ends (asyncio turns it into a cancel): a short pause
            pause_s = 10.0 if sig == signal.SIGINT else 300.0
            run = PausedCli(root, study, f"{phase}@{WHERE[phase]}", pause_s)
            cases[phase, sig] = Killed(run, root / "data" / "results")
        waiting, end = dict(cases), time.monotonic() + 300.0
        while waiting and time.monotonic() < end:  # each is signalled as soon as it pauses
            for (phase, sig), case in list(waiting.items()):
                case.run.watch()
                if case.run.paused.is_set():
                    case.run.proc.send_signal(sig)
                if case.run.paused.is_set() or case.run.proc.poll() is not None:
                    del waiting[phase, sig]
            time.sleep(0.05)
    finally:
        for case in cases.values():
            case.code = case.run.finish()
    return cases


@pytest.mark.parametrize(("phase", "sig"), CASES, ids=[f"{p}-{s.name}" for p, s in CASES])
def test_cli_killed_at_a_phase(
    stored: Path, killed: dict[tuple[str, signal.Signals], Killed], phase: str, sig: signal.Signals
) -> None:
    case = killed[phase, sig]
    where = f"{phase}, {sig.name}:\n{case.run.output()[-3000:]}"
    # paused there and signalled (a CLI that never paused is killed at the end: a SIGKILL case would pass)
    assert case.run.paused.is_set(), where
    assert case.code == EXIT[sig], where
    assert not case.run.left_after(10.0), where
    levels = case.results / NAME / "levels"
    for k in A_KEYS:
        assert level_files(levels / k) == level_files(stored / NAME / "levels" / k), where
    whole = phase == "store" and sig == signal.SIGINT  # the write finished before the cancel
    assert sorted(p.name for p in levels.iterdir() if not p.name.startswith(".")) == (
        [*A_KEYS, B_FIRST] if whole else A_KEYS
    ), where
    res = load_results(NAME, root=case.results)
    assert not res.damaged and res.levels["status"].eq("ok").all() and len(res.levels) == 2 + whole, where
    # only a writer killed outright leaves its temporary folder (every file in it, never renamed)
    if phase == "store" and sig == signal.SIGKILL:
        assert leftovers(levels) == [f".tmp-{B_FIRST}-{case.run.proc.pid}"], where
    else:
        assert not leftovers(levels), where


def test_a_plain_rerun_after_a_kill_mid_write_removes_the_leftover_and_measures_the_rest(
    stored: Path, killed: dict[tuple[str, signal.Signals], Killed]
) -> None:
    results = killed["store", signal.SIGKILL].results
    levels = results / NAME / "levels"
    assert leftovers(levels)
    sweep.run_study(StudySpec.model_validate(STUDY), root=results)  # the manifest holds the probe
    assert not leftovers(levels)
    assert sorted(p.name for p in levels.iterdir()) == [*A_KEYS, B_FIRST, "b__chat__c0002"]
    for k in A_KEYS:
        assert level_files(levels / k) == level_files(stored / NAME / "levels" / k)
    assert load_results(NAME, root=results).levels["status"].eq("ok").all()

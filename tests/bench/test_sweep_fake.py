"""A whole sweep on `fake` engines and the `fake` tokenizer: the harness's plumbing (plan, load
generator, tables, store, resume, stored failures) with no model and no engine. The timings are
the fake's own; the throughput checks are orders of magnitude, not speed claims."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from cliffbench.bench import engine_pool, sweep
from cliffbench.bench.plan import study_tokenizer
from cliffbench.bench.progress.reporter import LevelTask
from cliffbench.bench.spec.study import StudySpec
from cliffbench.bench.store.levels import SWEEP_COLUMNS, LevelInfo, load_results
from cliffbench.config import InputError
from cliffbench.engines import make_engine
from cliffbench.engines.specs import FakeSpec
from cliffbench.models.tokenizer import CharTokenizer
from tests.conftest import fix_probe

PROMPT, OUTPUT, N, USERS = 16, 10, 8, [1, 4]
TTFT_S, ITL_S = 0.005, 0.002
WIDE = {"kind": "fake", "label": "wide", "ttft_s": TTFT_S, "itl_s": ITL_S, "max_batch": 8}
NARROW = {"kind": "fake", "label": "narrow", "ttft_s": TTFT_S, "itl_s": ITL_S, "max_batch": 1}
LEVELS: dict[str, Any] = {
    "name": "chat",
    "workload": {"kind": "fixed", "prompt": {"mean": PROMPT}, "output": {"mean": OUTPUT}},
    "load": {"concurrency": USERS, "requests_per_level": N, "warmup_requests": 1},
}

pytestmark = pytest.mark.usefixtures("fixed_probe")


def _spec(*engines: dict[str, Any], name: str = "fake-study") -> StudySpec:
    return StudySpec.model_validate({"name": name, "tokenizer": "fake", "engines": engines, "level_sets": [LEVELS]})


class _Recorder:
    def __init__(self) -> None:
        self.finished: list[LevelInfo] = []
        self.skipped: list[str] = []

    def study_planned(self, tasks: list[LevelTask]) -> None: ...

    def level_started(self, key: str, n_requests: int) -> None: ...

    def request_done(self, record: Any) -> None: ...

    def level_finished(self, info: LevelInfo) -> None:
        self.finished.append(info)

    def level_skipped(self, key: str) -> None:
        self.skipped.append(key)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The two-engine study, run once for the module."""
    root = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        fix_probe(mp)
        sweep.run_study(_spec(WIDE, NARROW), root=root)
    return root, load_results("fake-study", root=root)


def test_tables_have_the_sweep_columns_and_every_level(study: tuple[Path, Any]) -> None:
    _, res = study
    lv = res.levels
    assert sorted(lv["level_key"]) == sorted(f"{e}__chat__c{u:04d}" for e in ("wide", "narrow") for u in USERS)
    assert lv["status"].eq("ok").all(), lv["error"].tolist()
    summary = {"n_requests", "n_ok", "n_failed", "output_tok_s", "ttft_s_p50", "tpot_s_p50", "achieved_concurrency"}
    assert set(SWEEP_COLUMNS) | summary | {"wall_s", "lag_p99_s", "cfg_max_batch"} <= set(lv.columns)
    assert (lv["engine_kind"] == "fake").all() and (lv["n_ok"] == N).all()
    for table in (res.requests, res.tokens, res.memory):
        assert set(SWEEP_COLUMNS) <= set(table.columns)
    assert res.study.tokenizer == "fake" and res.manifest.models == {}
    assert res.manifest.hardware_probe is not None and res.manifest.hardware_probe.source == "test"


def test_every_request_ok_with_exact_lengths(study: tuple[Path, Any]) -> None:
    _, res = study
    req = res.requests
    assert len(req) == 4 * (N + 1) and req["warmup"].sum() == 4
    assert req["status"].eq("ok").all()
    assert (req["output_tokens"] == OUTPUT).all() and (req["prompt_tokens"] == PROMPT).all()
    assert len(res.tokens) == 4 * (N + 1) * OUTPUT
    measured = req[~req["warmup"]]
    assert (measured["ttft_s"] >= TTFT_S - ITL_S).all()  # a tick may land up to half a step early


def test_throughput_is_bounded_by_the_fake_timings(study: tuple[Path, Any]) -> None:
    _, res = study
    lv = res.levels.set_index("level_key")
    for engine, cap in (("wide", 8), ("narrow", 1)):
        for users in USERS:
            tok_s = lv.loc[f"{engine}__chat__c{users:04d}", "output_tok_s"]
            ceiling = min(users, cap) / ITL_S  # one token per step per sequence held
            assert ceiling / 50 < tok_s <= ceiling * 1.1, (engine, users, tok_s)
    # four users on one sequence slot queue: their wait shows up as queue time, not as lost requests
    q = res.requests.query("engine == 'narrow' and concurrency == 4 and not warmup")["queue_s"]
    assert q.median() > TTFT_S
    q_wide = res.requests.query("engine == 'wide' and concurrency == 4 and not warmup")["queue_s"]
    assert q_wide.max() < q.median()


def test_resume_skips_stored_levels(study: tuple[Path, Any], tmp_path: Path) -> None:
    import shutil

    src, _ = study
    shutil.copytree(src / "fake-study", tmp_path / "fake-study")
    levels = tmp_path / "fake-study" / "levels"
    mtimes = {p.name: (p / "level.json").stat().st_mtime_ns for p in levels.iterdir()}
    shutil.rmtree(levels / "narrow__chat__c0004")
    rec = _Recorder()
    sweep.run_study(_spec(WIDE, NARROW), root=tmp_path, reporter=rec)
    assert [i.level_key for i in rec.finished] == ["narrow__chat__c0004"]
    assert sorted(rec.skipped) == sorted(k for k in mtimes if k != "narrow__chat__c0004")
    after = {p.name: (p / "level.json").stat().st_mtime_ns for p in levels.iterdir()}
    assert {k: v for k, v in after.items() if k != "narrow__chat__c0004"} == {
        k: v for k, v in mtimes.items() if k != "narrow__chat__c0004"
    }
    # everything stored: a second run skips every level and runs nothing
    rec = _Recorder()
    sweep.run_study(_spec(WIDE, NARROW), root=tmp_path, reporter=rec)
    assert rec.finished == [] and len(rec.skipped) == 4


def test_failing_requests_are_stored_with_their_status(tmp_path: Path) -> None:
    flaky = {**WIDE, "label": "flaky", "fail_every": 3}
    sweep.run_study(_spec(flaky, name="flaky"), root=tmp_path)
    res = load_results("flaky", root=tmp_path)
    assert res.levels["status"].eq("ok").all()  # failed requests do not fail the level
    req = res.requests[~res.requests["warmup"]]
    failed = req[req["status"] == "failed"]
    assert sorted(set(failed["request_id"] % 3)) == [0] and len(failed) == len(USERS) * len(range(0, N, 3))
    assert failed["error"].str.contains("fake failure of request").all()
    assert (failed["output_tokens"] == 1).all()  # the fake fails after its first token
    assert (res.levels["n_failed"] == 3).all() and (res.levels["n_ok"] == N - 3).all()


def test_engine_start_failure_is_stored_and_the_sweep_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = make_engine

    def make(es: Any) -> Any:
        engine = real(es)
        if es.name == "narrow":

            async def boom() -> None:
                raise RuntimeError("no memory for you")

            monkeypatch.setattr(engine, "start", boom)
        return engine

    monkeypatch.setattr(engine_pool, "make_engine", make)
    sweep.run_study(_spec(WIDE, NARROW, name="broken"), root=tmp_path)
    lv = load_results("broken", root=tmp_path).levels
    narrow, wide = lv[lv.engine == "narrow"], lv[lv.engine == "wide"]
    assert narrow["status"].eq("failed").all() and narrow["error"].str.contains("no memory for you").all()
    assert wide["status"].eq("ok").all() and (wide["n_ok"] == N).all()


def test_fake_tokenizer_and_a_model_tokenizer_without_a_model() -> None:
    assert isinstance(study_tokenizer(_spec(WIDE)), CharTokenizer)
    no_model = _spec(WIDE).model_copy(update={"tokenizer": "model"})
    with pytest.raises(InputError, match=r"^tokenizer: .*set `tokenizer: fake`"):
        study_tokenizer(no_model)


def test_yaml_round_trip_keeps_fake_engines() -> None:
    import yaml

    spec = _spec(WIDE, NARROW)
    again = StudySpec.model_validate(yaml.safe_load(spec.to_yaml()))
    assert again == spec and all(isinstance(e, FakeSpec) and not e.serves_model for e in again.engines)


def test_a_second_run_of_a_running_study_is_refused_and_a_dead_holder_frees_it(tmp_path: Path) -> None:
    import os
    import signal

    from cliffbench.bench.store.levels import study_lock

    # the holder: a fork of this process (no fresh interpreter importing the kit: seconds of CPU)
    # that takes the lock, says so on a pipe and waits to be killed
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            with study_lock("locked", tmp_path):
                os.write(write_end, b"held")
                signal.pause()
        finally:
            os._exit(1)
    os.close(write_end)
    try:
        assert os.read(read_end, 4) == b"held"
        with pytest.raises(InputError, match=rf"^study: 'locked' is being run by pid {pid};"):
            sweep.run_study(_spec(WIDE, name="locked"), root=tmp_path)
        assert not (tmp_path / "locked").exists()  # refused before anything was written
        os.kill(pid, signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        os.waitpid(pid, 0)
        with study_lock("locked", tmp_path):
            pass
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):  # reaped above unless a check failed
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_level_without_a_successful_request_is_failed_and_redone(tmp_path: Path) -> None:
    broken = {**WIDE, "label": "broken", "fail_every": 1}  # every request fails after its first token
    spec = _spec(WIDE, broken, name="redo")
    sweep.run_study(spec, root=tmp_path)
    lv = load_results("redo", root=tmp_path).levels.set_index("level_key")
    assert (lv.loc[[f"broken__chat__c{u:04d}" for u in USERS], "status"] == "failed").all()
    assert str(lv.loc["broken__chat__c0001", "error"]).startswith("no request succeeded")
    assert (lv.loc[[f"wide__chat__c{u:04d}" for u in USERS], "status"] == "ok").all()
    ok_files = {p: p.read_bytes() for p in (tmp_path / "redo" / "levels").glob("wide__*/*")}
    again = _Recorder()
    sweep.run_study(spec, root=tmp_path, reporter=again)
    # a plain re-run measures the failed levels again and leaves the ok ones byte for byte
    assert sorted(i.level_key for i in again.finished) == [f"broken__chat__c{u:04d}" for u in sorted(USERS)]
    assert sorted(again.skipped) == sorted(f"wide__chat__c{u:04d}" for u in USERS)
    assert {p: p.read_bytes() for p in (tmp_path / "redo" / "levels").glob("wide__*/*")} == ok_files
    kept = _Recorder()
    sweep.run_study(spec, root=tmp_path, reporter=kept, keep_failed=True)
    assert not kept.finished and len(kept.skipped) == 2 * len(USERS)


@pytest.mark.slow  # three repeats of every level through the real sweep: about 3 s
def test_repeats_interleave_engines_in_a_rotated_order(tmp_path: Path) -> None:
    load = {**LEVELS["load"], "repeats": 3}
    levels = {**LEVELS, "load": load}
    spec = StudySpec.model_validate(
        {"name": "reps", "tokenizer": "fake", "engines": [WIDE, NARROW], "level_sets": [levels], "seed": 1}
    )
    rec = _Recorder()
    sweep.run_study(spec, root=tmp_path, reporter=rec)
    keys = [i.level_key for i in rec.finished]
    assert len(keys) == 2 * len(USERS) * 3
    repeat_of = [i.repeat for i in rec.finished]
    assert repeat_of == sorted(repeat_of)  # repeat r of every engine before repeat r + 1
    firsts = [rec.finished[r * 2 * len(USERS)].engine for r in range(3)]
    assert firsts[0] != firsts[1]  # the engine order rotates by one per repeat
    assert [e.name for e in sweep.engine_order(spec, 1)] == [e.name for e in sweep.engine_order(spec, 0)][::-1]
    res = load_results("reps", root=tmp_path)
    assert sorted(set(res.levels["repeat"])) == [0, 1, 2] and "repeat" in res.requests
    assert "wide__chat__c0004-rep3" in set(res.levels["level_key"])
    # each repeat draws its own requests, the same for both engines
    first = res.requests[(res.requests["level_key"] == "wide__chat__c0001") & ~res.requests["warmup"]]
    second = res.requests[(res.requests["level_key"] == "narrow__chat__c0001") & ~res.requests["warmup"]]
    assert list(first["prompt_tokens"]) == list(second["prompt_tokens"])


@pytest.mark.slow  # the real sweep, twice: about 2.5 s
def test_damaged_level_is_named_left_out_and_measured_again(tmp_path: Path) -> None:
    spec = _spec(WIDE, NARROW, name="damage")
    sweep.run_study(spec, root=tmp_path)
    levels = tmp_path / "damage" / "levels"
    info = LevelInfo.model_validate_json((levels / "wide__chat__c0001" / "level.json").read_text())
    assert info.files["requests.parquet"].rows == N + 1  # the warm-up request is stored too
    truncated = levels / "wide__chat__c0001" / "tokens.parquet"
    truncated.write_bytes(truncated.read_bytes()[:100])
    altered = levels / "wide__chat__c0004" / "requests.parquet"
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered.write_bytes(bytes(data))
    res = load_results("damage", root=tmp_path)
    assert set(res.damaged) == {"wide__chat__c0001", "wide__chat__c0004"}
    assert "tokens.parquet does not match its checksum" in res.damaged["wide__chat__c0001"]
    assert sorted(res.levels["level_key"]) == ["narrow__chat__c0001", "narrow__chat__c0004"]
    rec = _Recorder()
    sweep.run_study(spec, root=tmp_path, reporter=rec)
    assert sorted(i.level_key for i in rec.finished) == ["wide__chat__c0001", "wide__chat__c0004"]
    assert not load_results("damage", root=tmp_path).damaged


def test_a_sessions_level_stores_its_theoretical_and_measured_hit_rates(tmp_path: Path) -> None:
    sessions = {
        "name": "sessions",
        "workload": {
            "kind": "sessions",
            "prompt": {"mean": PROMPT},
            "output": {"mean": OUTPUT},
            "sessions": {"turns": {"dist": "fixed", "mean": 2}, "user": {"mean": 6}},
        },
        "load": {"concurrency": [2], "requests_per_level": N, "warmup_requests": 0},
    }
    spec = StudySpec.model_validate({"name": "sess", "tokenizer": "fake", "engines": [WIDE], "level_sets": [sessions]})
    sweep.run_study(spec, root=tmp_path)
    res = load_results("sess", root=tmp_path)
    (info,) = res.levels.to_dict("records")
    # 4 sessions of 2 turns: 16; 16 + 10 + 6 = 32 prompt tokens, the second turn's history 26
    assert info["hit_rate_theory"] == pytest.approx(4 * 26 / (4 * 48))
    assert info["hit_rate_measured"] != info["hit_rate_measured"]  # the fake tells nothing: NaN
    prompts = sorted(res.requests["prompt_tokens"].tolist())
    assert prompts == [16] * 4 + [32] * 4 and res.requests["cached_tokens"].isna().all()

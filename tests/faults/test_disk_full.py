"""A disk that fills up mid-study: the Parquet writes of the store raise ENOSPC from the second
level on. The sweep stops with one line naming the level and the folder (InputError; `cliffbench
run` exits 2), the level before it stays stored and loadable, no temporary level folder is left,
and a re-run once there is space again measures only what is missing. The same for a write of the
study's manifest (at the start, or when an engine starts): one line naming the file, exit 2, the
manifest as it was, no temporary file, and no study folder where there was none."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cliffbench.bench import engine_pool, sweep
from cliffbench.bench.store import levels as store
from cliffbench.bench.store.levels import load_results, study_lock
from cliffbench.cli import commands as cli
from cliffbench.config import InputError
from cliffbench.engines import make_engine
from tests.faults import Recorder, assert_nothing_left, fake_engine, leftovers, level_files, snapshot, study

pytestmark = pytest.mark.usefixtures("fixed_probe")

KEYS = ["wide__chat__c0001", "wide__chat__c0002", "wide__chat__c0004"]


def _fill_disk_after_one_level(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Parquet writes into the first level folder succeed; any into a second one raise ENOSPC.
    Returns the level folders written to (the temporary names of files.atomic_dir)."""
    real = pd.DataFrame.to_parquet
    folders: list[Path] = []

    def to_parquet(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> Any:
        folder = Path(path).parent
        if folder not in folders:
            folders.append(folder)
        if len(folders) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)
    return folders


def _message(root: Path, name: str, key: str) -> str:
    return (
        f"results: could not store level {key} under {root / name / 'levels'}: No space left on device; "
        "finished levels are stored"
    )


def test_full_disk_stops_the_sweep_with_one_line_and_keeps_the_finished_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = study("disk")
    before = snapshot()
    with monkeypatch.context() as mp:
        folders = _fill_disk_after_one_level(mp)
        rec = Recorder()
        with pytest.raises(InputError) as raised:
            sweep.run_study(spec, root=tmp_path, reporter=rec)
    assert str(raised.value) == _message(tmp_path, "disk", KEYS[1])
    assert [i.level_key for i in rec.finished] == KEYS[:1]  # the sweep stopped at the full disk
    assert [f.name for f in folders] == [f".tmp-{k}-{os.getpid()}" for k in KEYS[:2]]
    levels = tmp_path / "disk" / "levels"
    assert sorted(p.name for p in levels.iterdir()) == KEYS[:1] and not leftovers(levels)
    res = load_results("disk", root=tmp_path)
    assert not res.damaged and res.levels["status"].tolist() == ["ok"] and (res.levels["n_ok"] == 4).all()
    kept = level_files(levels / KEYS[0])
    with study_lock("disk", tmp_path):  # the lock was released on the way out
        pass
    assert_nothing_left(*before)

    # space again: a plain re-run measures the two missing levels and leaves the first byte for byte
    again = Recorder()
    sweep.run_study(spec, root=tmp_path, reporter=again)
    assert [i.level_key for i in again.finished] == KEYS[1:] and again.skipped == KEYS[:1]
    assert level_files(levels / KEYS[0]) == kept
    assert load_results("disk", root=tmp_path).levels["status"].eq("ok").all()


def test_full_disk_while_storing_a_failed_level_stops_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = make_engine

    def make(es: Any) -> Any:  # an engine that never starts: each level is stored as failed
        engine = real(es)

        async def boom() -> None:
            raise RuntimeError("no memory for you")

        monkeypatch.setattr(engine, "start", boom)
        return engine

    monkeypatch.setattr(engine_pool, "make_engine", make)
    before = snapshot()
    with monkeypatch.context() as mp:
        _fill_disk_after_one_level(mp)
        with pytest.raises(InputError) as raised:
            sweep.run_study(study("disk-failed"), root=tmp_path)
    assert str(raised.value) == _message(tmp_path, "disk-failed", KEYS[1])
    levels = tmp_path / "disk-failed" / "levels"
    assert sorted(p.name for p in levels.iterdir()) == KEYS[:1] and not leftovers(levels)
    lv = load_results("disk-failed", root=tmp_path).levels
    assert lv["status"].tolist() == ["failed"]
    assert lv["error"].tolist() == ["engine start failed: RuntimeError: no memory for you"]
    assert_nothing_left(*before)


def test_cli_run_on_a_full_disk_exits_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    monkeypatch.setattr(store, "RESULTS_DIR", results)
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # `run` installs a SIGTERM handler: not in pytest
    monkeypatch.setattr(cli, "_wait_quiet", lambda *_: None)  # the start check sleeps a second
    path = tmp_path / "disk-cli.yaml"
    path.write_text(yaml.safe_dump(study("disk-cli").model_dump(mode="json")))
    before = snapshot()
    with monkeypatch.context() as mp:
        _fill_disk_after_one_level(mp)
        result = CliRunner().invoke(cli.app, ["run", str(path), "--wait-quiet-s", "0"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert result.stderr.strip().splitlines() == ["error: " + _message(results, "disk-cli", KEYS[1])]
    levels = results / "disk-cli" / "levels"
    assert sorted(p.name for p in levels.iterdir()) == KEYS[:1] and not leftovers(levels)
    assert load_results("disk-cli").levels["status"].tolist() == ["ok"]
    assert_nothing_left(*before)


def _fill_disk_for_manifests(monkeypatch: pytest.MonkeyPatch, when: Any = lambda manifest: True) -> None:
    """A manifest write for which `when(manifest)` holds fails as on a full disk: the temporary
    file gets its first bytes, then ENOSPC."""
    real = Path.write_text

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self.name.startswith(".manifest-") and when(json.loads(data)):
            real(self, data[:10], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def _run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: Any) -> Any:
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # `run` installs a SIGTERM handler: not in pytest
    monkeypatch.setattr(cli, "_wait_quiet", lambda *_: None)  # the start check sleeps a second
    path = tmp_path / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return CliRunner().invoke(cli.app, ["run", str(path), "--wait-quiet-s", "0"])


def test_manifest_on_a_full_disk_at_the_start_exits_2_and_leaves_no_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    monkeypatch.setattr(store, "RESULTS_DIR", results)
    before = snapshot()
    with monkeypatch.context() as mp:
        _fill_disk_for_manifests(mp)
        result = _run_cli(tmp_path, mp, study("manifest-start"))
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    path = results / "manifest-start" / "manifest.json"
    assert result.stderr.strip().splitlines() == [f"error: results: could not write {path}: No space left on device"]
    assert not (results / "manifest-start").exists()  # nothing half-written: not even the folder
    with study_lock("manifest-start", results):  # the lock was released on the way out
        pass
    assert_nothing_left(*before)


def test_manifest_on_a_full_disk_mid_study_exits_2_and_keeps_levels_and_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is written again when the second engine starts (its description): that write
    fails. The first engine's levels and the manifest as it was stay whole."""
    results = tmp_path / "results"
    monkeypatch.setattr(store, "RESULTS_DIR", results)
    spec = study("manifest-mid", fake_engine("a"), fake_engine("b"), concurrency=[1, 2])
    before = snapshot()
    with monkeypatch.context() as mp:
        _fill_disk_for_manifests(mp, when=lambda manifest: "b" in manifest.get("engines", {}))
        result = _run_cli(tmp_path, mp, spec)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    folder = results / "manifest-mid"
    assert result.stderr.strip().splitlines() == [
        f"error: results: could not write {folder / 'manifest.json'}: No space left on device"
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["levels", "manifest.json"]  # no temporary manifest
    manifest = json.loads((folder / "manifest.json").read_text())
    assert list(manifest["engines"]) == ["a"]  # as written before the failed write
    res = load_results("manifest-mid")
    assert res.levels["level_key"].tolist() == ["a__chat__c0001", "a__chat__c0002"] and not leftovers(folder / "levels")
    assert res.levels["status"].eq("ok").all() and not res.damaged
    assert_nothing_left(*before)

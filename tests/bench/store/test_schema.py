"""Studies stored before the records were typed still load, as they did: the fixture under
tests/fixtures/stored_v1 was written by the kit before `LevelSummary` and `StudyManifest` (its
README says how), with the `levels` table `load_results` returned for it then."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cliffbench.bench.metrics.summary import LevelSummary
from cliffbench.bench.store.levels import (
    LEVEL_FILE,
    level_done,
    load_results,
    read_level,
    read_level_tables,
    read_manifest,
    write_level,
    write_manifest,
)
from cliffbench.bench.store.schema import SCHEMA_VERSION
from cliffbench.config import InputError

FIXTURE = Path(__file__).parents[2] / "fixtures" / "stored_v1"
STUDY = "stored-v1"
MEASURED = [f"{e}__chat__c{u:04d}" for e in ("flaky", "wide") for u in (1, 4)]
NEVER_RAN = "broken__chat__c0004"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE / "results", tmp_path / "results")
    return tmp_path / "results"


def _through_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """The table as the fixture's copy of it was stored: through Parquet (which sets its dtypes)."""
    buf = io.BytesIO()
    df.to_parquet(buf)
    return pd.read_parquet(buf)


def _same_json(new: object, old: object) -> bool:
    """`new` holds every field `old` held, with the same value (NaN equal to NaN); a field only
    `new` has is one the typed record (or a spec grown since) adds with its default."""
    if isinstance(old, dict) and isinstance(new, dict):
        return all(k in new and _same_json(new[k], v) for k, v in old.items())
    if isinstance(old, list) and isinstance(new, list):
        return len(new) == len(old) and all(_same_json(n, o) for n, o in zip(new, old, strict=True))
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old):
        return math.isnan(new)
    return new == old


def test_the_levels_table_of_a_study_stored_before_typed_records_is_unchanged(root: Path) -> None:
    res = load_results(STUDY, root)
    assert not res.damaged
    expected = pd.read_parquet(FIXTURE / "levels_table.parquet")
    pd.testing.assert_frame_equal(_through_parquet(res.levels), expected)
    assert sorted(res.levels["level_key"]) == sorted([*MEASURED, NEVER_RAN])


def test_its_levels_read_as_typed_records_and_stay_done(root: Path) -> None:
    folders = root / STUDY / "levels"
    for key in MEASURED:
        info = read_level(folders / key)
        stored = json.loads((folders / key / LEVEL_FILE).read_text())
        assert "schema_version" not in stored  # the fixture is a version 1 file
        assert info.schema_version == SCHEMA_VERSION and info.summary is not None
        assert _same_json(info.summary.columns(), stored["summary"])  # every number as stored
        assert info.summary.counts.n_ok == stored["summary"]["n_ok"]
        assert level_done(STUDY, key, root)  # a resumed run would not measure it again
    flaky = read_level(folders / "flaky__chat__c0004").summary
    assert flaky is not None and flaky.counts.n_failed > 0  # every third request failed
    never = read_level(folders / NEVER_RAN)
    assert never.summary is None and never.status == "failed"
    assert not level_done(STUDY, NEVER_RAN, root) and level_done(STUDY, NEVER_RAN, root, keep_failed=True)


def test_its_manifest_reads_as_a_typed_record(root: Path) -> None:
    m = read_manifest(STUDY, root)
    stored = json.loads((root / STUDY / "manifest.json").read_text())
    assert "schema_version" not in stored and m.schema_version == SCHEMA_VERSION
    assert m.spec.name == STUDY and [e.name for e in m.spec.engines] == ["wide", "flaky", "broken"]
    assert m.cpu.model == stored["cpu"]["model"] and m.cpu.flags == stored["cpu"]["flags"]
    assert m.hardware_probe is not None and m.hardware_probe.source == "test"
    assert m.git_sha == stored["git_sha"] and set(m.engines) == {"wide", "flaky"}
    assert load_results(STUDY, root).study == m.spec


def test_rewritten_by_todays_store_it_holds_the_same_content(root: Path, tmp_path: Path) -> None:
    """Each level and the manifest read and written again: today's files hold every field and
    number the old ones did (plus the version and the typed records' defaults), and load into the
    same table."""
    again = tmp_path / "again"
    folders = root / STUDY / "levels"
    for key in [*MEASURED, NEVER_RAN]:
        tables = read_level_tables(STUDY, key, root)
        write_level(read_level(folders / key), tables["requests"], tables["tokens"], tables["memory"], again)
        new = json.loads((again / STUDY / "levels" / key / LEVEL_FILE).read_text())
        old = json.loads((folders / key / LEVEL_FILE).read_text())
        assert new["schema_version"] == SCHEMA_VERSION
        flat = LevelSummary.model_validate(new["summary"]).columns() if new["summary"] else {}
        assert _same_json(flat, old["summary"])
        # the Parquet files are written anew: their checksums may differ, their row counts may not
        fields = {k: v for k, v in old.items() if k not in ("summary", "files")}
        assert _same_json(new, fields) and _same_json(
            new["files"], {n: {"rows": f["rows"]} for n, f in old["files"].items()}
        )
    write_manifest(STUDY, read_manifest(STUDY, root), again)
    old_manifest = json.loads((root / STUDY / "manifest.json").read_text())
    new_manifest = json.loads((again / STUDY / "manifest.json").read_text())
    assert _same_json(new_manifest, old_manifest) and new_manifest["schema_version"] == SCHEMA_VERSION
    expected = pd.read_parquet(FIXTURE / "levels_table.parquet")
    pd.testing.assert_frame_equal(_through_parquet(load_results(STUDY, again).levels), expected)


def test_a_file_of_a_later_schema_is_refused_not_guessed(root: Path) -> None:
    folder = root / STUDY / "levels" / "wide__chat__c0001"
    data = json.loads((folder / LEVEL_FILE).read_text())
    (folder / LEVEL_FILE).write_text(json.dumps({**data, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(InputError, match=f"newer cliffbench \\(schema_version {SCHEMA_VERSION + 1}\\)"):
        read_level(folder)
    assert not level_done(STUDY, folder.name, root)  # measured again by a run of this version
    assert "schema_version" in load_results(STUDY, root).damaged[folder.name]
    manifest = root / STUDY / "manifest.json"
    manifest.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(InputError, match=r"manifest\.json: stored by a newer cliffbench"):
        read_manifest(STUDY, root)


def test_a_version_1_level_with_phases_reads_its_transient_too(root: Path) -> None:
    """Studies stored after phases existed, before the records were typed: the transient's summary
    is a flat dict as the summary is, and upgrades the same way."""
    folder = root / STUDY / "levels" / "wide__chat__c0004"
    data = json.loads((folder / LEVEL_FILE).read_text())
    window = {"ramp_s": 0.0, "users": 4, "start_s": 0.01, "end_s": 0.05, "n_ramp": 3, "n_steady": 2, "n_drain": 3}
    (folder / LEVEL_FILE).write_text(json.dumps({**data, "steady": window, "transient": data["summary"]}))
    info = read_level(folder)
    assert info.steady is not None and info.steady.n_steady == 2
    assert info.transient is not None and _same_json(info.transient.columns(), data["summary"])
    row = load_results(STUDY, root).levels.set_index("level_key").loc[folder.name]
    assert row["transient_n_requests"] == data["summary"]["n_requests"] and row["n_steady"] == 2

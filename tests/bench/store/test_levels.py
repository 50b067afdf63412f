"""Tidy store: atomic levels, round trip, sweep parameters as columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cliffbench.bench.store.levels import LevelInfo, level_done, load_results, write_level, write_manifest
from cliffbench.config import InputError


def _info(key: str, engine: str, c: int) -> LevelInfo:
    return LevelInfo(
        study="s",
        level_key=key,
        engine=engine,
        engine_kind="llamacpp-slots",
        engine_hash="abc",
        level_set="chat",
        workload="fixed",
        level_index=0,
        concurrency=c,
        seed=0,
        status="ok",
        started_at="2026-01-01T00:00:00",
        wall_s=1.0,
        lag_p99_s=0.001,
        loop_cpu_share=0.1,
        lag_flagged=False,
        summary={"output_tok_s": 10.0 * c, "note": ""},
        engine_config={"slots": 4},
    )


def test_round_trip(tmp_path: Path) -> None:
    for c in (1, 2):
        req = pd.DataFrame({"request_id": [0, 1], "status": ["ok", "failed"], "ttft_s": [0.1, float("nan")]})
        tok = pd.DataFrame({"request_id": [0, 0], "k": [0, 1], "t_s": [0.1, 0.2]})
        mem = pd.DataFrame({"t_s": [0.0], "reserved_bytes": [10], "live_bytes": [2], "live_seqs": [1], "waiting": [0]})
        write_level(_info(f"e__chat__c{c:04d}", "e", c), req, tok, mem, root=tmp_path)
    write_manifest("s", {"git_sha": "x"}, root=tmp_path)
    res = load_results("s", root=tmp_path)
    assert len(res.levels) == 2 and sorted(res.levels["concurrency"]) == [1, 2]
    assert list(res.levels.sort_values("concurrency")["output_tok_s"]) == [10.0, 20.0]
    assert res.levels["cfg_slots"].tolist() == [4, 4]
    assert set(res.requests["concurrency"]) == {1, 2} and (res.requests["engine"] == "e").all()
    assert len(res.tokens) == 4 and "level_set" in res.tokens
    assert res.manifest["git_sha"] == "x"


def test_level_is_atomic(tmp_path: Path) -> None:
    class Boom(pd.DataFrame):
        def to_parquet(self, *a: object, **k: object) -> None:  # type: ignore[override]
            raise RuntimeError("disk full")

    info = _info("e__chat__c0001", "e", 1)
    with pytest.raises(RuntimeError):
        write_level(info, pd.DataFrame({"a": [1]}), Boom({"a": [1]}), pd.DataFrame(), root=tmp_path)
    assert not level_done("s", info.level_key, root=tmp_path)
    assert list((tmp_path / "s" / "levels").iterdir()) == []


def test_unknown_study(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no results"):
        load_results("nothing", root=tmp_path)

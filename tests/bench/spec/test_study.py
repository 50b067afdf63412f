"""Study validation: one-line errors naming the field; YAML round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cliffbench.bench.spec.study import StudySpec, load_study
from cliffbench.config import InputError

ROOT = Path(__file__).resolve().parents[3]


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_default_study_validates() -> None:
    spec = load_study(ROOT / "studies" / "default.yaml")
    assert [e.name for e in spec.engines] == [
        "vllm",
        "vllm-as-shipped",
        "vllm-fp32",
        "ollama",
        "llama-server",
        "llamacpp-f32-32",
        "llamacpp-bf16-32",
        "llamacpp-q8_0-32",
        "llamacpp-f32-32-reuse",
    ]
    assert StudySpec.model_validate(yaml.safe_load(spec.to_yaml())) == spec


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"engines": [{"kind": "ollama"}]}, "engines.0"),
        ({"engines": [{"kind": "vllm", "dtyp": "float32"}]}, "dtyp: unknown key"),
        ({"engines": [{"kind": "llamacpp-slots", "slots": 0}]}, "slots"),
        ({"engines": [{"kind": "vllm"}], "level_sets": [{"load": {"concurrency": [0, 2]}}]}, "concurrency"),
        ({"engines": [{"kind": "vllm"}], "level_sets": [{"load": {"arrival": "poisson", "rate_rps": [-1]}}]}, "rate"),
        ({"engines": [{"kind": "vllm"}], "slo": {"thresholds": {"latency": 1}}}, "unknown SLO metric 'latency'"),
        ({"engines": [{"kind": "vllm", "max_num_seqs": "many"}]}, "max_num_seqs"),
    ],
)
def test_bad_study_one_line(tmp_path: Path, data: dict[str, Any], needle: str) -> None:
    with pytest.raises(InputError) as exc:
        load_study(_write(tmp_path, data))
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg and msg.startswith("study.")


def test_missing_file() -> None:
    with pytest.raises(InputError, match="not found"):
        load_study("nope.yaml")


def test_one_level_set_cuts_the_study_to_one_engine_and_one_level_set() -> None:
    base = load_study(ROOT / "studies" / "default.yaml")
    rag = base.level_set_doc("rag")
    rag["load"].update(concurrency=[3], repeats=1, only_at={})
    es = next(e for e in base.engines if e.name == "vllm")
    cut = base.one_level_set("cut-1", es, rag, repeat=2, busy={"max_foreign_cores": 9.0, "reruns": 0})
    assert cut.name == "cut-1" and [e.name for e in cut.engines] == ["vllm"] and cut.engines[0] == es
    assert [ls.name for ls in cut.level_sets] == ["rag"] and cut.level_sets[0].load.concurrency == [3]
    assert cut.seed == base.seed + 14 and cut.busy.max_foreign_cores == 9.0 and cut.slo == base.slo
    assert base.level_set_doc("rag")["load"]["concurrency"] == [8]  # the base is unchanged
    with pytest.raises(KeyError, match=r"no-such-set.*allowed: chat, mixed"):
        base.level_set_doc("no-such-set")

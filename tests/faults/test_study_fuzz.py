"""Malformed study files, generated: random mutations of a valid study (keys dropped, wrong types,
negative, zero, huge and non-finite numbers, unknown keys, wrong enum values, nested garbage, a
file that is not a mapping, not YAML or not UTF-8) through `cliffbench run FILE --dry-run`. Never a traceback:
either exit 0 with the plan, or exit 2 with one line on stderr naming the field.

Only `fake` engines and the `fake` tokenizer, so a dry run needs no model."""

from __future__ import annotations

import copy
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cliffbench.cli import app
from cliffbench.config import RESULTS_DIR

VALID: dict[str, Any] = {
    "name": "fuzz",
    "description": "a valid study the fuzzer mutates",
    "tokenizer": "fake",
    "seed": 0,
    "keep_engines_loaded": True,
    "engines": [
        {"kind": "fake", "label": "a", "ttft_s": 0.01, "itl_s": 0.002, "max_batch": 8, "context_tokens": 2048},
        {"kind": "fake", "label": "b", "fail_every": 3},
    ],
    "level_sets": [
        {
            "name": "chat",
            "workload": {
                "kind": "lognormal",
                "prompt": {"dist": "lognormal", "mean": 16, "low": 4, "high": 64, "sigma": 0.5},
                "output": {"dist": "fixed", "mean": 8},
            },
            "load": {
                "arrival": "closed",
                "concurrency": [1, 2, 4],
                "requests_per_level": 8,
                "warmup_requests": 1,
                "request_timeout_s": 60.0,
                "repeats": 2,
                "only_at": {"b": [1, 4]},
            },
        },
        {
            "name": "open",
            "workload": {"kind": "mixed", "long_fraction": 0.2, "long_prompt_tokens": 512},
            "load": {"arrival": "poisson", "concurrency": [], "rate_rps": [0.5, 2.0], "duration_s": 30.0},
        },
    ],
    "slo": {"thresholds": {"ttft_s": 1.0, "tpot_s": 0.2}, "percentiles": {"ttft_s": 90.0, "e2e_s": 50.0}},
    "busy": {"max_foreign_cores": 0.5, "reruns": 1},
}

_numbers = st.one_of(
    st.sampled_from([0, -1, -0.5, 1e-300, 10**12, 2**63, 10**40, math.inf, -math.inf, math.nan]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _numbers,
    st.text(max_size=12),
    st.sampled_from(["fake", "vllm", "FIXED", "closed ", "", "auto", "1", "true", "null", "~", "[1, 2]"]),
)
# nested garbage: lists and mappings of garbage, a few levels deep
_garbage = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["kind", "preset", "label", "nme", "Name"]))


def _paths(doc: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `doc` (the root first), by its keys and indices."""
    out = [here]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*here, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*here, i))
    return out


def _mutate(doc: Any, data: st.DataObject) -> Any:
    path = data.draw(st.sampled_from(_paths(doc)), label="path")
    op = data.draw(st.sampled_from(["drop", "set", "set", "add"]), label="op")
    if not path:  # the root itself
        return doc if op == "drop" else data.draw(_garbage, label="whole study")
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "drop":
        del parent[last]
    elif op == "set":
        parent[last] = data.draw(_garbage, label="value")
    else:
        target = parent[last]
        if isinstance(target, dict):
            target[data.draw(_KEYS, label="key")] = data.draw(_garbage, label="value")
        elif isinstance(target, list):
            target.append(data.draw(_garbage, label="item"))
        else:
            parent[last] = data.draw(_garbage, label="value")
    return doc


def _content(doc: Any, data: st.DataObject) -> bytes:
    text = yaml.safe_dump(doc, sort_keys=False).encode()
    if data.draw(st.integers(0, 9), label="break the file") == 0:  # one file in 10 is not YAML, or not UTF-8
        cut = data.draw(st.integers(0, len(text)), label="cut")
        junk = data.draw(st.sampled_from([b"\t: [", b"{", b"key: : value", b"- ]", b"\x00", b"\xff\xfe", b"\xc3"]))
        text = text[:cut] + junk + text[cut:]
    return text


# one line: `error: <field>: <what>`, the field a path of names (`study.engines.0.fake.ttft_s`) or a flag
ONE_LINE = re.compile(r"^error: (study|engines|level_sets|--)[^\n]*?: \S[^\n]*$")


@pytest.mark.slow  # a hundred study files through the CLI's dry run: about 8 s
@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_study_files_give_a_plan_or_one_line_naming_the_field(data: st.DataObject) -> None:
    doc = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        doc = _mutate(doc, data)
    content = _content(doc, data)
    before = sorted(p.name for p in RESULTS_DIR.glob("*")) if RESULTS_DIR.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes(content)
        result = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--wait-quiet-s", "0"])
    where = f"study file:\n{content!r}\noutput:\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), where  # no traceback
    assert result.exit_code in (0, 2), where
    if result.exit_code == 0:
        assert re.search(r"study \S+: \d+ engine\(s\), \d+ level runs", result.stdout), where
        assert not result.stderr.strip(), where
    else:
        # split on newlines only: an unknown key is echoed as written, and str.splitlines would also
        # split on the control characters a generated key may hold (\x1c, \x1d, \x85...)
        lines = result.stderr.rstrip("\n").split("\n")
        assert len(lines) == 1 and ONE_LINE.match(lines[0]), where
    assert (sorted(p.name for p in RESULTS_DIR.glob("*")) if RESULTS_DIR.is_dir() else []) == before  # nothing written


def test_the_unmutated_study_is_valid() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(yaml.safe_dump(VALID, sort_keys=False))
        result = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--wait-quiet-s", "0"])
    assert result.exit_code == 0, result.output
    assert "study fuzz: 2 engine(s)" in result.output

"""The notebook parameters of report/params.py: notebook 10's flag form covers every engine kind
of `cliffbench run` (openai-http included), and errors name the parameter, not a CLI flag."""

from __future__ import annotations

from typing import Any

import pytest

from cliffbench.config import InputError, field_default
from cliffbench.engines.specs import ENGINE_KINDS
from cliffbench.report.params import (
    NOTEBOOK_PARAMS,
    BenchmarkParams,
    benchmark_spec,
    check_parameter_names,
    parameter_names,
    validate_params,
)

URL = "http://127.0.0.1:8000/v1"


def _spec(**params: Any) -> Any:
    return benchmark_spec(validate_params(BenchmarkParams, params))


def test_openai_http_with_url() -> None:
    spec = _spec(engine="openai-http", url=URL, concurrency=[1, 2])
    (engine,) = spec.engines
    assert engine.kind == "openai-http" and engine.url == URL
    assert spec.level_sets[0].load.concurrency == [1, 2]


@pytest.mark.parametrize("kind", ENGINE_KINDS)
def test_every_engine_kind_of_the_cli(kind: str) -> None:
    spec = _spec(engine=kind, url=URL if kind == "openai-http" else None)
    assert spec.engines[0].kind == kind


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"engine": "openai-http", "url": "ftp://x"}, "parameter url: must be an http:// or https:// URL"),
        ({"engine": "openai-http"}, "parameter url: give it exactly when parameter engine is openai-http"),
        ({"engine": "vllm", "url": URL}, "parameter url: give it exactly when parameter engine is openai-http"),
        ({"url": URL}, "parameter url: only for the flag form"),
        ({"engine": "ollama"}, "parameter engine: unknown engine 'ollama'; allowed: vllm"),
        ({"engine": "vllm", "workload": "poems"}, "parameter workload: unknown workload 'poems'"),
        ({"engine": "vllm", "concurrency": [0]}, "parameter concurrency: every concurrency must be"),
        ({"engine": "vllm", "slots": 2}, "parameter slots: only for parameter engine llamacpp-slots"),
        ({"engine": "vllm", "study_name": "a b"}, "parameter study_name: String should match pattern"),
        ({"engine": "vllm", "requests_per_level": 0}, "parameter requests_per_level: Input should be greater"),
        ({"url": 3}, "parameter url: Input should be a valid string"),
    ],
)
def test_errors_name_the_parameter(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as exc:
        _spec(**params)
    assert str(exc.value).startswith(message), str(exc.value)
    assert "--" not in str(exc.value)


def test_parameter_names_are_the_models_fields() -> None:
    fields = {n for cls in NOTEBOOK_PARAMS.values() for n in cls.model_fields}
    assert set(parameter_names()) == fields
    check_parameter_names(["url", "ttft_slo_s", "force_prepare"])
    with pytest.raises(InputError, match=r"^parameter speed: unknown; allowed: .*\burl\b"):
        check_parameter_names(["url", "speed"])


def test_no_field_declared_twice() -> None:
    # one name, one meaning: -p NAME goes to every notebook that declares NAME
    seen: dict[str, type] = {}
    for cls in NOTEBOOK_PARAMS.values():
        for name in cls.model_fields:
            assert seen.setdefault(name, cls) is cls, name


def test_defaults_validate() -> None:
    for cls in set(NOTEBOOK_PARAMS.values()):
        defaults = {n: field_default(cls, n) for n in cls.model_fields}
        assert validate_params(cls, defaults) == validate_params(cls, {})

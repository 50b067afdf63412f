"""A hand-built study for the matrix's measured rows: three engine families on an A100 40GB serving
Llama-3.1-8B, enough requests per level (3 repeats x 12) for every verdict to be decided. vLLM never
misses the SLO, llama-server (4 slots) misses from 8 users, Ollama (one at a time) from 4."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from cliffbench.audit.roofline import MODELS
from cliffbench.bench.store.levels import Results

USERS = [1, 2, 4, 8, 32]
# engine -> (kind, first level it misses at (None: never), output tok/s per level)
ENGINES = {
    "vllm": ("vllm", None, [60.0, 110.0, 200.0, 380.0, 1200.0]),
    "llama-server": ("llamacpp-slots", 8, [55.0, 100.0, 150.0, 160.0, 165.0]),
    "ollama": ("llamacpp-serial", 4, [55.0, 55.0, 55.0, 55.0, 55.0]),
}
STUDY = """\
name: a100-box
tokenizer: fake
engines:
  - {kind: fake, label: vllm}
level_sets:
  - {name: chat, workload: {prompt: {mean: 8}, output: {mean: 6}}, load: {concurrency: [1, 2, 4, 8, 32]}}
slo: {thresholds: {ttft_s: 2.0, tpot_s: 0.25}, percentiles: {ttft_s: 90.0, tpot_s: 50.0}}
"""


def gpu_study(gpu: str = "NVIDIA A100-SXM4-40GB", model: str = "llama-3.1-8b") -> Results:
    """The study as `load_results` returns it: its levels, requests and manifest."""
    shapes = {k: getattr(MODELS[model], k) for k in ("n_params", "n_layers", "n_kv_heads", "head_dim", "hidden_size")}
    levels, requests = [], []
    for engine, (kind, miss_from, tok_s) in ENGINES.items():
        for users, tok in zip(USERS, tok_s, strict=True):
            slow = miss_from is not None and users >= miss_from
            for rep in range(3):
                key = f"{engine}__chat__c{users:04d}" + (f"-rep{rep + 1}" if rep else "")
                ttft = np.linspace(3.0, 4.0, 12) if slow else np.linspace(0.1, 0.3, 12)
                levels.append(
                    {
                        "study": "a100-box",
                        "engine": engine,
                        "engine_kind": kind,
                        "level_set": "chat",
                        "concurrency": users,
                        "rate_rps": np.nan,
                        "repeat": rep,
                        "status": "ok",
                        "level_key": key,
                        "output_tok_s": tok * (1 + 0.05 * rep),
                        "ttft_s_p50": float(np.median(ttft)),
                        "ttft_s_p90": float(np.quantile(ttft, 0.9)),
                        "tpot_s_p50": 0.05,
                        "busy_flagged": False,
                    }
                )
                requests.append(
                    pd.DataFrame({"level_key": key, "warmup": False, "status": "ok", "ttft_s": ttft, "tpot_s": 0.05})
                )
    manifest = {
        "study": yaml.safe_load(STUDY),
        "cpu": {"usable_cpus": 16, "model": "test CPU"},
        "gpu": [{"name": gpu, "memory": "40960 MiB"}] if gpu else [],
        "models": {e: dict(shapes) for e in ENGINES},
    }
    return Results(
        pd.concat(requests, ignore_index=True), pd.DataFrame(), pd.DataFrame(levels), pd.DataFrame(), manifest
    )

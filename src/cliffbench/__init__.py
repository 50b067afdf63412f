"""cliffbench: find the concurrency cliff of LLM serving engines, in-process, and report it.

The notebook-facing API: validate a study, run it, load the tidy results.
"""

from __future__ import annotations

from cliffbench.bench.spec.study import StudySpec, load_study
from cliffbench.bench.store.levels import Results, load_results
from cliffbench.config import InputError

__all__ = ["InputError", "Results", "StudySpec", "load_results", "load_study"]
__version__ = "0.1.0"

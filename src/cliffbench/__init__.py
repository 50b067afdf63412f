"""cliffbench: find the concurrency cliff of LLM serving engines, in-process, and report it.

The notebook-facing API: validate a study, run it, load the tidy results.
"""

from __future__ import annotations

from cliffbench.config import InputError, StudySpec, load_study
from cliffbench.store import Results, load_results

__all__ = ["InputError", "Results", "StudySpec", "load_results", "load_study"]
__version__ = "0.1.0"

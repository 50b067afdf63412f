"""The report pipeline: papermill runs the notebooks, then the whitepaper PDF is rendered.

    cliffbench report --study-file studies/default.yaml [-p name value ...] [-f params.yaml]

While notebook 10 runs the study, its progress file (bench.progress.reporter.ProgressFile) is shown on
the terminal (report.terminal.StudyWatcher: level i/N, engine, users, repeat, tok/s, ETA).
Executed notebooks go to report/executed/ (sources untouched); the PDF (report/pdf.py) replaces
report/whitepaper.pdf only when rendering succeeded, so a failed run leaves the previous PDF as it
was. Every parameter is validated by the models of report/params.py before any notebook runs.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import psutil

from cliffbench.bench.progress.reporter import progress_path
from cliffbench.bench.progress.terminal import StudyWatcher
from cliffbench.config import PROJECT_ROOT, REPORT_DIR, InputError
from cliffbench.report.params import (
    NOTEBOOK_PARAMS,
    NOTEBOOKS,
    NOTEBOOKS_DIR,
    AnalysisParams,
    BenchmarkParams,
    PrepareParams,
    benchmark_spec,
    check_parameter_names,
    validate_params,
)
from cliffbench.report.pdf import render_pdf

__all__ = ["build_report", "execute_notebook"]

logger = logging.getLogger(__name__)
_INTERRUPT_GRACE_S = 30.0  # for the engines to stop after the kernel is interrupted


def _kernels() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("ipykernel" in part for part in child.cmdline()):
                out.append(child)
    return out


def _stop_kernels(grace_s: float = _INTERRUPT_GRACE_S) -> None:
    """Interrupt the running kernels (a KeyboardInterrupt in the cell: the sweep's finally blocks
    stop the engines, finished levels stay stored); kill those still alive after `grace_s` (the
    engines' reapers then stop vLLM's processes)."""
    kernels = _kernels()
    for k in kernels:
        with contextlib.suppress(psutil.Error):
            k.send_signal(signal.SIGINT)
    _, alive = psutil.wait_procs(kernels, timeout=grace_s)
    for k in alive:
        with contextlib.suppress(psutil.Error):
            k.kill()


def execute_notebook(name: str, params: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Run notebooks/`name` under papermill with those of `params` it declares (its params model's
    fields); the executed copy goes to `out_dir` (report/executed/).

    papermill runs in a worker thread: in the main thread nbclient would take SIGINT and SIGTERM
    for itself and ask a busy kernel to shut down, which a kernel running a study ignores for as
    long as the study runs. Here Ctrl-C (or SIGTERM) interrupts the kernel instead, waits for the
    engines to stop, and re-raises KeyboardInterrupt."""
    import papermill as pm
    from traitlets.config import Config

    out_dir = out_dir or REPORT_DIR / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    declared = NOTEBOOK_PARAMS[name].model_fields
    failure: list[BaseException] = []

    def work() -> None:
        try:
            pm.execute_notebook(
                str(NOTEBOOKS_DIR / f"{name}.ipynb"),
                str(out),
                parameters={k: v for k, v in params.items() if k in declared},
                cwd=str(NOTEBOOKS_DIR),
                kernel_name="python3",
                progress_bar=False,
                report_mode=True,
                # IPC sockets in Jupyter's runtime folder, not TCP on localhost: the kernel warns on
                # every start that TCP is unencrypted ("Kernel is running over TCP without
                # encryption"), and a local socket file is what that warning asks for
                config=Config({"KernelManager": {"transport": "ipc"}}),
            )
        except BaseException as exc:  # handed to the main thread, which raises it
            failure.append(exc)
        finally:
            # nbclient keeps an event loop per thread and never closes it: close this thread's
            from jupyter_core.utils import ensure_event_loop

            loop = ensure_event_loop()
            if not loop.is_running():
                loop.close()

    worker = threading.Thread(target=work, name=f"papermill-{name}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        _stop_kernels()
        worker.join(_INTERRUPT_GRACE_S)
        raise
    if failure:
        raise failure[0]
    return out


def build_report(params: dict[str, Any], out_pdf: Path | None = None) -> Path:
    """Run 00 -> 10 -> 20 -> 30 with `params` and render the whitepaper PDF. Every parameter is
    checked first (InputError naming it), so bad input runs nothing and leaves the PDF as it was."""
    from papermill.exceptions import PapermillExecutionError

    check_parameter_names(params)
    validate_params(PrepareParams, params)
    spec = benchmark_spec(validate_params(BenchmarkParams, params))
    params = {**params, "study": params.get("study", spec.name)}
    validate_params(AnalysisParams, params).matrix_params()  # the matrix's checks need data/matrix/ too
    executed = {}
    for name in NOTEBOOKS:
        logger.info("running notebooks/%s.ipynb", name)
        # notebook 10 runs the study: show its progress file while papermill holds its output
        watch: contextlib.AbstractContextManager[Any] = (
            StudyWatcher(progress_path(spec.name)) if name == "10_benchmark" else contextlib.nullcontext()
        )
        try:
            with watch:
                executed[name] = execute_notebook(name, params)
        except PapermillExecutionError as exc:
            raise InputError(f"notebook {name}: {exc.ename}: {str(exc.evalue).splitlines()[0]}") from None
    pdf = out_pdf or REPORT_DIR / "whitepaper.pdf"
    render_pdf(executed["30_whitepaper"], pdf, NOTEBOOKS_DIR)
    logger.info("wrote %s", pdf.relative_to(PROJECT_ROOT) if pdf.is_relative_to(PROJECT_ROOT) else pdf)
    return pdf

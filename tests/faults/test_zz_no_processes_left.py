"""Nothing of the kit outlives the tests: no engine, server, CLI or notebook kernel process.

Named `test_zz_*` so that it runs last in tests/faults (pytest runs a folder's files in name order);
in a whole `pytest tests` run it checks what the tests up to tests/faults left behind, and
tests/conftest.py's `pytest_sessionfinish` runs the same check (`tests.faults.kit_processes`, the
vLLM processes of session fixtures included) once every test and fixture is done. It looks at the
descendants of this pytest process and at engines and servers orphaned since the session began.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.faults import kit_processes, wait_no_kit_processes


def _seen(pid: int, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while not any(str(pid) == line.split()[0] for line in kit_processes()):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_the_check_sees_a_child_server() -> None:
    """A child process that looks like a kit server is found, then gone."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "llama-server"])
    try:
        assert _seen(proc.pid), "a child process named llama-server was not seen"
    finally:
        proc.kill()
        proc.wait()
    assert not any(str(proc.pid) == line.split()[0] for line in kit_processes())


@pytest.mark.parametrize("name", ["VLLM::EngineCore", "llama-server"])
def test_the_check_sees_an_orphaned_engine(name: str) -> None:
    """An engine process whose parent died (re-parented to init) is found: vLLM's engine core as a
    killed kit leaves it, a llama-server as a killed `cliffbench serve` would."""
    # the subshell starts it in the background and exits at once: its parent is gone
    started = subprocess.run(
        ["bash", "-c", f"(exec -a {name} sleep 30 >/dev/null 2>&1 & echo $!)"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(started.stdout.strip())
    try:
        assert _seen(pid), f"an orphaned {name} was not seen: {kit_processes()}"
    finally:
        subprocess.run(["kill", "-9", str(pid)], check=False)


def test_no_kit_process_is_left_running() -> None:
    """The last test of tests/faults."""
    left = wait_no_kit_processes(5.0)
    assert not left, f"processes left running by the tests: {left}"

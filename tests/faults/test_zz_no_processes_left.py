"""Nothing of the kit outlives the tests: no engine, server, CLI or notebook kernel process.

Named `test_zz_*` so that it runs last in tests/faults (pytest runs a folder's files in name order);
in a whole `pytest tests` run it checks what the tests up to tests/faults left behind. It looks
only at processes the tests can have started: descendants of this pytest process, and vLLM engine
processes (`VLLM::...`) re-parented to init since this session started (an orphan of a killed
parent). Anything else on the machine (a `make report` running beside the tests, with its own
engines) is not this suite's and is left out.
"""

from __future__ import annotations

import time

import psutil

# what the kit's processes carry in their command line: vLLM's engine core and workers, the
# reference servers, a `cliffbench` CLI, a notebook kernel of `cliffbench report`
KIT_MARKERS = ("VLLM::", "llama-server", "vllm serve", "cliffbench", "ipykernel")


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()) or p.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return ""  # gone, a zombie (not running) or not ours to read


def kit_processes() -> list[str]:
    """`pid cmdline` of each kit process the tests may have left running."""
    me = psutil.Process()
    # vLLM's processes under this pytest process belong to an in-process engine a session fixture
    # still holds (tests/conftest.py checks them at the very end, once every fixture has stopped)
    found = {
        p.pid: p
        for p in me.children(recursive=True)
        if any(m in _cmdline(p) for m in KIT_MARKERS) and "VLLM::" not in _cmdline(p)
    }
    for p in psutil.process_iter(["ppid", "create_time"]):
        try:
            orphan = p.info["ppid"] == 1 and (p.info["create_time"] or 0) >= me.create_time()
        except (psutil.NoSuchProcess, KeyError):
            continue
        if orphan and "VLLM::" in _cmdline(p):
            found[p.pid] = p
    return [f"{pid} {_cmdline(p)[:120]}" for pid, p in sorted(found.items()) if _cmdline(p)]


def test_the_check_sees_a_kit_process() -> None:
    """The check itself: a child process that looks like a kit server is found, then gone."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "llama-server"])
    try:
        deadline = time.monotonic() + 5.0
        while not any(str(proc.pid) == line.split()[0] for line in kit_processes()):
            assert time.monotonic() < deadline, "a child process named llama-server was not seen"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert not any(str(proc.pid) == line.split()[0] for line in kit_processes())


def test_no_kit_process_is_left_running() -> None:
    """The last test of tests/faults."""
    end = time.monotonic() + 5.0  # a process being stopped right now gets a moment to exit
    left = kit_processes()
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = kit_processes()
    assert not left, f"processes left running by the tests: {left}"

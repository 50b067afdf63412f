"""The harness's own check of a token event's path: event-loop lag and GIL wait (bench/load/driver.py
runs it beside every level)."""

from __future__ import annotations

import asyncio
import threading
import time

__all__ = ["LAG_PROBE_INTERVAL_S", "LagProbe"]

LAG_PROBE_INTERVAL_S = 0.005


class LagProbe:
    """The path of a token event from an engine thread, timed every LAG_PROBE_INTERVAL_S.

    A thread sleeps to an absolute grid, then posts a callback with `call_soon_threadsafe`.
    Thread wait: how late it woke holding the GIL, as an engine's worker thread (llama.cpp's) must
    before it can hand a token over. A loop that never idles starves other threads of the GIL
    (CPython's convoy effect): then this grows to the switch interval (5 ms) or far beyond, and
    the thread posts few callbacks. Loop lag: how long the posted callback waited for the loop,
    including any time the loop was blocked. (A timer probe would also count epoll's rounding of
    timeouts up to whole milliseconds, which no token sees.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop, lag_out: list[float], wait_out: list[float]) -> None:
        self._loop, self._lag, self._wait = loop, lag_out, wait_out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cliffbench-lag-probe", daemon=True)

    def _record(self, t_post: float) -> None:
        self._lag.append(time.perf_counter() - t_post)

    def _run(self) -> None:
        due = time.perf_counter()
        while True:
            due += LAG_PROBE_INTERVAL_S
            if self._stop.wait(max(0.0, due - time.perf_counter())):
                return
            now = time.perf_counter()
            self._wait.append(now - due)
            try:
                self._loop.call_soon_threadsafe(self._record, now)
            except RuntimeError:  # the loop closed under us: nothing left to measure
                return
            due = max(due, now - LAG_PROBE_INTERVAL_S)  # after a long stall, resume the grid from now

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

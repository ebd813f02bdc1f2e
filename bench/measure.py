"""Measuring helpers shared by the benchmarks."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


class PeakRss:
    """Samples the summed RSS of a process and all its descendants every 100 ms; ``peak`` in bytes.

    ``PeakRss()`` watches this process (and the workers it starts); ``PeakRss(child)`` a process
    started with ``psutil.Popen``.
    """

    def __init__(self, process: psutil.Process | None = None) -> None:
        self.process = process or psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                for proc in [self.process, *self.process.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.1)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

"""Measuring a run from outside: peak resident memory of a whole local Ray session (the
driver, GCS, raylet, object store, workers and actors), sampled on a background thread.
Used by ``scripts/benchmarks/map_throughput.py`` and the memory test."""

from __future__ import annotations

import threading


def session_processes() -> dict[str, int]:
    """Resident bytes of this process and of every process it started (a local ``ray.init``
    starts the GCS and raylet as children; workers are the raylet's children), keyed by
    ``pid name``."""
    import psutil

    me = psutil.Process()
    out = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            name = " ".join(p.cmdline()[:1]).rsplit("/", 1)[-1][:60] or p.name()
            out[f"{p.pid} {name}"] = p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def session_rss() -> int:
    """Bytes resident in the whole session (``session_processes`` summed)."""
    return sum(session_processes().values())


class PeakRSS:
    """``with PeakRSS() as m: ...`` then ``m.peak`` (bytes) and ``m.samples``."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()

    def _sample(self):
        procs = session_processes()
        total = sum(procs.values())
        if total > self.peak:
            self.peak, self.at_peak = total, procs
        self.samples += 1

    def _loop(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak, self.at_peak = 0, {}
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        return False

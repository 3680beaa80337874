"""What a person at the terminal sees: progress of long commands, and nothing of Ray's
native logging unless ``-v``.

``Progress``: ``map: 1,024/8,722 tiles  41.3 tiles/s  ETA 3m06s`` on stderr, redrawn in place
at most twice a second on a terminal; on a pipe or a log file, one line per tenth of the work
(or per minute), so job logs stay short. Off with ``LANDCOVER_PROGRESS=0``.

``hide_native_logs()``: Ray's C++ core prints its own log lines on the driver's stderr (for
example an error-level line about actor constructor arguments that Ray Data itself causes,
https://github.com/ray-project/ray/issues/53727). A plain run drops those lines (they stay in
the session's ``python-core-driver-*.log``); fatal ones and everything else pass through.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time

_NATIVE = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [IWE] \d+ \d+\] ")


_STARTED: list[float] = []


def mark_started(at: float | None = None) -> None:
    """The CLI's start (``at``; default now): a job's timings count from it."""
    _STARTED[:] = [at or time.time()]


def take_started() -> float | None:
    """The start marked by the CLI, once (a job's timings count from it)."""
    return _STARTED.pop() if _STARTED else None


def process_started() -> float | None:
    """When this process started (the command's start: interpreter and imports included),
    as a Unix time; None where the system does not tell."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class Progress:
    """Units done of a total, their rate and the time left, on stderr."""

    def __init__(self, what: str, total: int, unit: str = "tiles", stream=None, initial: int = 0):
        self.what, self.total, self.unit = what, max(int(total), 0), unit
        self._stream = stream  # None: sys.stderr when written (a Progress may be pickled, e.g. by Tune)
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = os.environ.get("LANDCOVER_PROGRESS", "1") != "0" and self.total > 0
        # ``initial``: units done before this run (a resumed job); the rate counts only this run's
        self.done, self.base, self.t0, self.last_tenth = initial, initial, time.monotonic(), 0
        self.last, self.printed = self.t0, False  # a pipe gets its first line at the first tenth

    @property
    def stream(self):
        return self._stream or sys.stderr

    def line(self) -> str:
        dt = max(time.monotonic() - self.t0, 1e-9)
        rate = (self.done - self.base) / dt
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f"ETA {int(left // 60)}m{int(left % 60):02d}s" if left == left else "ETA --"
        return (f"{self.what}: {self.done:,}/{self.total:,} {self.unit}  {rate:,.1f} {self.unit}/s  "
                f"{eta if self.done < self.total else 'done'}")

    def grow(self, total: int) -> None:
        """A new total (the map learns its tiles as its scenes are planned)."""
        self.total = max(int(total), self.done)
        self.enabled = os.environ.get("LANDCOVER_PROGRESS", "1") != "0" and self.total > 0

    def update(self, n: int) -> None:
        self.done = min(self.total, self.done + int(n))
        if not self.enabled:
            return
        now = time.monotonic()
        tenth = int(10 * self.done / self.total)
        if self.tty and (now - self.last >= 0.5 or self.done == self.total):
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()
            self.last, self.printed = now, True
        elif not self.tty and (tenth > self.last_tenth or now - self.last >= 60):
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.last, self.last_tenth, self.printed = now, tenth, True

    def close(self) -> None:
        if self.enabled and self.tty and self.printed:
            self.stream.write("\n")
            self.stream.flush()


class _NativeLogFilter:
    """fd 2 through a pipe; a thread copies it back, less Ray's native I/W/E log lines."""

    def __init__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self.r = r
        self.thread = threading.Thread(target=self._copy, name="native-log-filter", daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        with os.fdopen(self.r, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for ln in lines:
                    if not _NATIVE.match(ln):
                        os.write(self.saved, ln + b"\n")
                if pending and not _NATIVE.match(pending) and not pending.startswith(b"["):
                    os.write(self.saved, pending)  # a prompt or a progress line without a newline
                    pending = b""
            if pending:
                os.write(self.saved, pending)

    def close(self) -> None:
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # the pipe's last writer is gone: the thread drains and ends
        self.thread.join(timeout=5)
        os.close(self.saved)


_filter: _NativeLogFilter | None = None


def hide_native_logs() -> None:
    """Drop Ray's native log lines from this process's stderr until ``restore_stderr()``."""
    global _filter
    if _filter is None and os.environ.get("LANDCOVER_NATIVE_LOGS") != "1":
        _filter = _NativeLogFilter()


def restore_stderr() -> None:
    global _filter
    if _filter is not None:
        _filter.close()
        _filter = None

"""What a person at the terminal sees: progress of long commands, and nothing of Ray's
native logging unless ``-v``.

``Progress``: a tqdm bar redrawn in place on a terminal (the terminal the command started
on, also while the native-log filter pipes fd 2); on a pipe or a log file, one line per tenth
of the work (or per minute), ``map: 1,024/8,722 tiles  41.3 tiles/s  ETA 3m06s``, so job logs
stay short. Off with ``LANDCOVER_PROGRESS=0``.

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


def say(text: str) -> None:
    """One plain line for the person at the terminal (stderr, beside the progress lines): what
    the command is doing that they would wonder about (``landcover: building the built-in
    model ...``); logs (``-v``) carry the details."""
    print(f"landcover: {text}", file=sys.stderr, flush=True)


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
    """Units done of a total (which may grow: the map learns its tiles as it plans its
    scenes), their rate over the last ``WINDOW`` seconds and the time left, on stderr: a
    redrawing tqdm bar on a terminal, plain lines elsewhere (one per tenth of the work, or
    per minute). ``initial``: units done before (a resumed job, or the map's first rows,
    mapped while Ray started): counted, but not in the rate."""

    WINDOW = 30.0  # seconds of updates the rate is taken over

    def __init__(self, what: str, total: int, unit: str = "tiles", stream=None, initial: int = 0):
        self.what, self.total, self.unit = what, max(int(total), 0), unit
        self._stream = stream  # None: sys.stderr when written (a Progress may be pickled, e.g. by Tune)
        self.tty = is_terminal(self.stream)
        self.done = self.base = int(initial)
        self.t0 = self.last = time.monotonic()
        self.samples = [(self.t0, self.done)]  # (time, done): the rate's window
        self.printed_at = self.done  # plain lines: the count the last line showed
        self.bar = None

    def __getstate__(self):
        return {**self.__dict__, "bar": None}

    @property
    def stream(self):
        return self._stream or sys.stderr

    @property
    def enabled(self) -> bool:
        return os.environ.get("LANDCOVER_PROGRESS", "1") != "0" and self.total > 0

    def rate(self) -> float | None:
        """Units a second over the window; None until a second of this run has passed."""
        now = time.monotonic()
        t, d = next(((t, d) for t, d in self.samples if now - t <= self.WINDOW), self.samples[-1])
        if now - self.t0 < 1.0 or now - t < 1e-3:
            return None
        return (self.done - d) / (now - t)

    def line(self, final: bool = False) -> str:
        """The plain line; ``final``: the closing one (``done``; until then the total may still grow),
        with the whole run's rate."""
        rate = self.rate()
        if final:
            dt = time.monotonic() - self.t0
            rate = (self.done - self.base) / dt if self.done > self.base and dt > 0 else None
        left = (self.total - self.done) / rate if rate else float("nan")
        eta = f"ETA {int(left // 60)}m{int(left % 60):02d}s" if left == left else "ETA --"
        shown = f"{rate:,.1f}" if rate is not None else "--"
        return (f"{self.what}: {self.done:,}/{self.total:,} {self.unit}  {shown} {self.unit}/s  "
                f"{'done' if final else eta}")

    def grow(self, total: int) -> None:
        """A new total (the map learns its tiles as its scenes are planned)."""
        self.total = max(int(total), self.done)
        if self.bar is not None and self.bar.total != self.total:
            self.bar.total = self.total
            self.bar.refresh()

    def update(self, n: int) -> None:
        self.done = min(max(self.total, self.done), self.done + int(n))
        now = time.monotonic()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[1][0] > self.WINDOW:
            self.samples.pop(0)
        if not self.enabled:
            return
        if self.tty:
            self._bar().update(int(n))
        elif self.done < self.total and (self.done - self.printed_at >= max(1, self.total // 10)
                                         or now - self.last >= 60):
            self._print()

    def _bar(self):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.base, desc=self.what, unit=f" {self.unit}",
                            file=self.stream, dynamic_ncols=True, mininterval=0.5, smoothing=0.1, leave=True)
        return self.bar

    def _print(self, final: bool = False) -> None:
        self.stream.write(self.line(final) + "\n")
        self.stream.flush()
        self.last, self.printed_at = time.monotonic(), self.done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and not self.tty:
            self._print(final=True)


_TERMINAL: bool | None = None  # whether fd 2 was a terminal before ``hide_native_logs`` piped it


def is_terminal(stream) -> bool:
    """Whether ``stream`` shows on a terminal (stderr: as it was before the native-log filter)."""
    if stream is sys.stderr and _filter is not None and _TERMINAL is not None:
        return _TERMINAL
    return hasattr(stream, "isatty") and stream.isatty()


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
    global _filter, _TERMINAL
    if _filter is None and os.environ.get("LANDCOVER_NATIVE_LOGS") != "1":
        _TERMINAL = os.isatty(2)
        _filter = _NativeLogFilter()


def restore_stderr() -> None:
    global _filter
    if _filter is not None:
        _filter.close()
        _filter = None

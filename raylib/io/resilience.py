"""Reads that survive a flaky object store: per-read timeouts, retries with backoff, and
one reason code per failure (the ``reason`` of a map's error rows).

Reason codes: ``read_error`` (the store or network failed, after retries), ``timeout`` (a
read did not answer within ``read_timeout``, after retries), ``corrupt`` (the bytes are
not a readable raster: truncated, garbled, not a TIFF), ``not_found``,
``permission_denied``, ``band_mismatch``, ``all_nodata``, ``cloudy`` (a tile over
``max_tile_cloud``), ``cloud_mask`` (a quality asset that does not say what is cloud, or
holds a value that is none of its classes), ``unsupported`` (e.g. a
geographic CRS with a metric gsd), ``input_error`` (anything else about one scene),
``internal`` (a bug in this code met on one read: the traceback's type and message).
Only ``read_error`` and ``timeout`` are retried: the others give the same answer again.
"""

from __future__ import annotations

import os
import queue
import random
import re
import threading
import time

from raylib.errors import ConfigError

TRANSIENT = ("read_error", "timeout")


class ReadTimeout(TimeoutError):
    """A read did not answer within its time limit."""


def error_chain(exc: BaseException) -> list[str]:
    """The messages of ``exc`` and its causes (GDAL's real reason is often the last)."""
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        msg = str(exc).strip() or type(exc).__name__
        if "See previous exception" not in msg:
            out.append(msg)
        exc = exc.__cause__ or exc.__context__
    return out


_RULES = [
    ("permission_denied", r"HTTP response code: 403|AccessDenied|Access Denied|Permission denied|was denied|\bEACCES\b"),
    ("not_found", r"HTTP response code: 404|NoSuchKey|No such file|does not exist"),
    ("read_error", r"CURL error|HTTP response code: (?:0|429|5\d\d)|Connection (?:refused|reset)|"
                   r"Could not connect|timed out|Timeout was reached|Empty reply|transfer closed"),
    ("corrupt", r"Decod(?:e|ing) error|Read error at|not recognized as being in a supported file format|"
                r"TIFFRead|TIFFFetch|TIFFFill|IReadBlock failed|Not a TIFF|truncated|Cannot read TIFF header|"
                r"not a valid|corrupt"),
]


# errors of the code, not of the data or the store: never retried, reported as ``internal``
_BUGS = (TypeError, AttributeError, NameError, IndexError, KeyError, AssertionError, ZeroDivisionError)


def classify(exc: BaseException) -> tuple[str, str]:
    """``(reason code, message)`` for a failed read; the message is redacted."""
    if isinstance(exc, ReadTimeout):
        return "timeout", redact(str(exc))
    reason = getattr(exc, "reason", None)
    chain = error_chain(exc)
    text = " | ".join(chain)
    if not reason:
        fallback = "internal" if isinstance(exc, _BUGS) else "read_error"
        reason = next((code for code, pat in _RULES if re.search(pat, text)), fallback)
    return reason, redact(f"{type(exc).__name__}: {text}")


def backoff(attempt: int, base: float = 1.0, cap: float = 15.0) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): exponential with full jitter."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** attempt)


_SECRET_PARAMS = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+", re.I)
_AUTH_HEADER = re.compile(r"(Authorization:\s*)[^\r\n]+", re.I)


def redact(text: str) -> str:
    """``text`` without credentials: the values of the AWS secret/session variables, the
    access key id, signed-URL parameters and Authorization headers."""
    for var in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        val = os.environ.get(var)
        if val and len(val) >= 4:
            text = text.replace(val, "***")
    text = _SECRET_PARAMS.sub(r"\1***", text)
    return _AUTH_HEADER.sub(r"\1***", text)


class Watchdog:
    """Runs calls on a helper thread and gives up on one that takes longer than its
    timeout (a stuck NFS/FUSE read, an object store that stops answering).

    Python cannot stop a thread blocked in C, so a call that times out is abandoned with
    its thread (a daemon; it cannot hold the process at exit) and later calls get a new
    thread: state a call opened (a dataset) must be re-opened after a timeout. Every call
    runs inside ``setup()`` (e.g. ``rasterio.Env``) entered once per helper thread.
    """

    def __init__(self, setup=None):
        self._setup = setup
        self._jobs: queue.Queue | None = None

    def _start(self) -> queue.Queue:
        jobs: queue.Queue = queue.Queue()

        def loop():
            import contextlib

            with (self._setup() if self._setup else contextlib.nullcontext()):
                while True:
                    job = jobs.get()
                    if job is None:  # close()
                        return
                    fn, box, done = job
                    try:
                        box.append((True, fn()))
                    except BaseException as exc:  # handed back to the caller
                        box.append((False, exc))
                    done.set()

        threading.Thread(target=loop, name="landcover-read", daemon=True).start()
        return jobs

    def close(self) -> None:
        """Let the helper thread end (a stuck one ends when its call returns, if ever)."""
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None

    def call(self, fn, timeout: float, what: str = "read"):
        if self._jobs is None:
            self._jobs = self._start()
        box: list = []
        done = threading.Event()
        self._jobs.put((fn, box, done))
        if not done.wait(timeout):
            self._jobs.put(None)  # the stuck thread ends if its call ever returns
            self._jobs = None  # later calls get a new thread
            raise ReadTimeout(f"{what} did not answer within {timeout:g} s")
        ok, value = box[0]
        if ok:
            return value
        raise value


def retrying(fn, *, retries: int, on_retry=None, sleep=time.sleep):
    """``fn()``, retried up to ``retries`` times with backoff while it fails with a
    transient reason (``read_error``, ``timeout``). ``on_retry(exc)`` runs before each retry
    (e.g. to re-open a dataset). Raises the last exception."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if isinstance(exc, ConfigError):  # a setting is wrong: asking again will not help
                raise
            reason, _ = classify(exc)
            if reason not in TRANSIENT or attempt >= retries:
                raise
            sleep(backoff(attempt))
            attempt += 1
            if on_retry:
                on_retry(exc)

"""Connecting to Ray, once for every job (a cluster's address, or a local start, quiet
unless -v), and the user's error found inside what Ray raises."""

from __future__ import annotations

import importlib
import logging
import threading


def ensure_ray(address: str | None = None) -> None:
    """Connect to ``address`` / ``RAY_ADDRESS``, or start a local cluster; quiet unless -v.

    A local start has no dashboard (1.2 s less of Ray's 6 s start on a 2-core machine; for
    one, start Ray with ``ray start --head`` and pass its address), and ``ray.data`` (1 s to
    import) is imported while Ray starts."""
    import ray

    quiet = not logging.getLogger("raylib").isEnabledFor(logging.INFO)
    if quiet:  # this program's own lines and progress only (``-v`` shows Ray's)
        for name in ("ray.data", "ray", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if not ray.is_initialized():
        data = threading.Thread(target=importlib.import_module, args=("ray.data",), daemon=True)
        data.start()
        # quiet: workers' own output (library warnings, weight-loading bars) stays in the
        # session's log files; their failures still come back as exceptions and error rows
        ray.init(address=address, ignore_reinit_error=True, logging_level=logging.ERROR if quiet else logging.INFO,
                 log_to_driver=not quiet, include_dashboard=False)
        data.join()
    if quiet:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        # Ray Data sets up its loggers when it is imported (a console handler at INFO): its
        # lines ("execution finished", "progress bars disabled") reach the terminal only with -v;
        # its log files keep them
        for h in logging.getLogger("ray.data").handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setLevel(logging.ERROR)


def landcover_cause(exc: BaseException):
    """The user's error (a ``LandcoverError``) an exception from a Ray task or actor carries,
    however Ray and Ray Data wrapped it; None when there is none."""
    from raylib.errors import LandcoverError

    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, LandcoverError) and type(e).__module__.startswith("raylib."):  # not Ray's wrapper of it
            if e.args and isinstance(e.args[0], str):  # its one line (Ray Data appends its retry advice)
                e.args = (e.args[0].split("\n")[0], *e.args[1:])
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return None

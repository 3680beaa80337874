"""Named crash points for fault-injection tests: ``LANDCOVER_FAILPOINT=name[:n]`` makes the
process SIGKILL itself the ``n``-th time (default 1st) it passes ``failpoint(name)``.
Unset (always, outside tests) it costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def failpoint(name: str) -> None:
    spec = os.environ.get("LANDCOVER_FAILPOINT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

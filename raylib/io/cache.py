"""The local cache: converted and downloaded backbones, models copied from S3, the built-in
default model, model folders shipped to Ray workers.

``cached(dest, fill, ready)`` is the one way anything enters it: ``fill(tmp)`` writes into a
private sibling folder, which is renamed into place when complete, so a reader never sees a
half-written folder and two processes filling the same entry at once both end with one
whole copy (the second rename loses and its copy is dropped). ``ready(dest)`` says whether an
entry is complete and current; a stale one is replaced.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    """``LANDCOVER_CACHE``, else ``$XDG_CACHE_HOME/landcover-ray`` (``~/.cache/landcover-ray``)."""
    root = os.environ.get("LANDCOVER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "landcover-ray")
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


def cached(dest: Path, fill: Callable[[Path], None], ready: Callable[[Path], bool] | None = None) -> Path:
    """``dest``, filled once by ``fill(tmp)`` unless ``ready(dest)`` (default: it exists)."""
    ready = ready or Path.exists
    if ready(dest):
        return dest
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        fill(tmp)
        if dest.exists() and not ready(dest):  # stale: replaced by the fresh copy
            shutil.rmtree(dest, ignore_errors=True)
        try:
            tmp.rename(dest)
        except OSError:  # another process filled it first: its copy stands
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest

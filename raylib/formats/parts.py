"""A map folder's parts on disk: which exist, the debris of a killed run, moving them into
place.

A part is written whole or not at all (an atomic local rename, a single S3 upload) under
``_tmp/`` (``formats.partwriter``), and moved into place when the run ends: a part that
exists is complete.
"""

from __future__ import annotations

import hashlib
import json

from raylib.io import storage

TMP = "_tmp"


def digest(obj) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _is_hive(segment: str) -> bool:
    return "=" in segment and not segment.startswith(("_", "."))


def existing(out: str) -> dict[str, str]:
    """Part name -> URI of every ``part-*.parquet`` at ``out`` and under ``out/_tmp``; in a
    hive-partitioned map the name holds its partition folders (``zone=32614/part-00003.parquet``)."""
    found: dict[str, str] = {}
    for rel, uri in storage.files_by_name(out).items():
        if rel.startswith(TMP + "/"):
            rel = rel[len(TMP) + 1:]
        *folders, name = rel.split("/")
        if name.startswith("part-") and name.endswith(".parquet") and all(_is_hive(f) for f in folders):
            found.setdefault(rel, uri)
    return found


def read_records(folder: str, names: dict[int, str]) -> dict[int, dict]:
    """The JSON records ``folder/names[k]`` a killed run finished (a partition's sums), by
    ``k``: a missing one, or one cut short mid-write, is not done."""
    found = {}
    for k, name in names.items():
        uri = storage.join(folder, name)
        if storage.exists(uri):
            try:
                found[k] = json.loads(storage.read_bytes(uri))
            except ValueError:
                continue
    return found


def remove_tmp_debris(out: str, keep: set[str]) -> list[str]:
    """Delete what ``_tmp/`` holds besides the parts in ``keep`` (a killed run's leftovers)."""
    gone = []
    for rel, uri in storage.files_by_name(storage.join(out, TMP)).items():
        if rel not in keep:
            storage.delete_prefix(uri)
            gone.append(uri)
    return gone


def commit(out: str, names: list[str], after_each=None) -> None:
    """Move the parts ``names`` from ``_tmp/`` into place (those already there stay)."""
    for name in names:
        src = storage.join(out, TMP, name)
        if storage.exists(src):
            storage.move(src, storage.join(out, name))
        if after_each:
            after_each(name)

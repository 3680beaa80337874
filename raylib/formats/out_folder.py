"""A folder a verb writes into: what it holds already, and the one rule for a finished one.

Every verb's output ends with ``_SUCCESS``. A folder that holds one output is refused to a
verb writing another (an export into a map folder would mix the two, and ``--overwrite``
would clear the map), and a finished output of the same kind is refused without
``--overwrite``. The folder's own files tell what it holds: a map folder's marker names its
kind (``map``, ``remap``, ``change``), and the other outputs have a file of their own.
"""

from __future__ import annotations

import json

from raylib.errors import ConfigError
from raylib.formats.mapfile import MARKER, SUCCESS
from raylib.io import storage

# what a folder holds -> how a message names it
KINDS = {
    "map": "a map (landcover map)",
    "change": "a change map (landcover change)",
    "export": "an export (landcover export)",
    "assessment": "an assessment (landcover assess)",
    "accounts": "land accounts (landcover accounts)",
    "model": "a model directory",
    "embeddings": "embeddings (landcover embed --data)",
}
# a file of each kind's own (a map folder's kind is in its marker instead)
SIGNS = {"export.json": "export", "assessment.json": "assessment", "accounts.csv": "accounts", "model.json": "model",
         "embeddings.parquet": "embeddings"}
MARKER_KINDS = {"map": "map", "remap": "map", "change": "change"}


def holds(out: str) -> str | None:
    """The kind of output the folder ``out`` holds (``KINDS``), finished or not; None when it
    holds none of them."""
    marker = storage.join(out, MARKER)
    if storage.exists(marker):
        try:
            return MARKER_KINDS.get(json.loads(storage.read_bytes(marker)).get("kind"), "map")
        except ValueError:
            return "map"
    for name, kind in SIGNS.items():
        if storage.exists(storage.join(out, name)):
            return kind
    return None


def check(out: str, kind: str, overwrite: bool) -> None:
    """Refuse ``out`` for an output of ``kind`` when it holds another kind of output (always:
    ``--overwrite`` would clear it), or a finished one of this kind without ``overwrite``."""
    storage.check_bucket(out)
    found = holds(out)
    if found is not None and found != kind:
        raise ConfigError(f"{out} holds {KINDS[found]}, not {KINDS[kind]}.",
                          f"choose another --out: {KINDS[kind].split(' (')[0]} is a folder of its own.")
    if finished(out) and not overwrite:
        raise ConfigError(f"{out} already holds {KINDS[kind]}.", "pass --overwrite, or choose another --out.")


def success_uri(out: str) -> str:
    """The ``_SUCCESS`` marker of the output at ``out`` (its fingerprint tells which run
    finished it)."""
    return storage.join(out, SUCCESS)


def finished(out: str) -> bool:
    """Whether the output at ``out`` is complete (its ``_SUCCESS`` is there)."""
    return storage.exists(success_uri(out))


def unfinish(out: str) -> None:
    """Before rewriting ``out``: it is incomplete until ``finish``."""
    storage.delete_prefix(success_uri(out))


def finish(out: str) -> None:
    """``_SUCCESS``: the output at ``out`` is complete (written last)."""
    storage.write_bytes(success_uri(out), b"")

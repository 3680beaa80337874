"""A map folder's life, once for every job that writes one (``map``, ``remap``): made ready
for a job (an unfinished run of the same job resumed, a finished map refused without
``--overwrite``, this program's leftovers cleared), the run marker (``_landcover.json``),
the parts moved into place from ``_tmp/`` at the end, then ``_summary.json`` and, last,
``_SUCCESS`` (``out_folder``): a map folder without it is incomplete, and readers refuse it.
Every clearing of a map folder goes through ``start_over``."""

from __future__ import annotations

import json
import logging
import time

from raylib.errors import ConfigError
from raylib.formats import out_folder, parts
from raylib.formats.mapfile import MARKER, SUMMARY
from raylib.io import storage

log = logging.getLogger(__name__)
WHAT = "a landcover map"


def prepare(out: str, job: str, overwrite: bool) -> bool:
    """Make the map folder ``out`` ready for ``job``; True when it resumes an unfinished run
    of the same job (its marker names it). A finished map is refused without ``overwrite``;
    an unfinished run of another job, or a folder this program wrote, is cleared; any other
    non-empty folder is refused."""
    storage.check_bucket(out)
    marker = storage.join(out, MARKER)
    if out_folder.finished(out):
        if not overwrite:
            raise ConfigError(f"{out} already holds a finished map.", "pass --overwrite, or choose another --out.")
    elif storage.exists(marker) and not overwrite:
        try:
            same = json.loads(storage.read_bytes(marker)).get("job") == job
        except ValueError:
            same = False
        if same:
            return True
        log.warning("%s holds an unfinished run with other settings or inputs; starting over", out)
    start_over(out)
    return False


def start_over(out: str) -> None:
    """Empty the map folder ``out`` (keeping its ``_inputs/``); a folder this program did
    not write (no marker) is refused, naming it."""
    storage.clear_own_folder(out, MARKER, WHAT)


def check_ours(out: str) -> None:
    """Refuse ``out`` when it holds files but no map marker (someone else's folder)."""
    storage.check_own_folder(out, MARKER, WHAT)


def mark(out: str, job: str, kind: str, **about) -> None:
    """The run marker: which job (its settings and inputs' digest) writes ``out``, and when it
    started (a rerun of the same job resumes; ``prepare``)."""
    storage.write_bytes(storage.join(out, MARKER), json.dumps(
        {"job": job, "kind": kind, **about, "started": time.time()}).encode())


def commit(out: str, names: list[str], after_each=None) -> None:
    """The parts ``names`` moved from ``_tmp/`` into place, then ``_tmp/`` removed."""
    parts.commit(out, names, after_each=after_each)
    storage.delete_prefix(storage.as_prefix(storage.join(out, parts.TMP)))


def finish(out: str, summary: dict, after_summary=None) -> None:
    """``_summary.json``, then ``_SUCCESS`` when the run passed (``summary["result"] == "ok"``)."""
    storage.write_bytes(storage.join(out, SUMMARY), json.dumps(summary, indent=2).encode())
    if after_summary:
        after_summary()
    if summary["result"] == "ok":
        out_folder.finish(out)

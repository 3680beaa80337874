"""A finished map as the input of a later verb (``assess``, ``sample``, ``change``,
``accounts``): a map folder, its composite (``<map>/_composite``) or a change map, checked
(it exists, its run finished, it has the columns every reader needs) and read in its own
schema, with the same one-line errors for every verb."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.errors import InputError
from raylib.formats import mapfile
from raylib.io import storage

NEEDED = {"tile_id", "label", "status", "geometry", "scene_crs", "fill_fraction"}
_FIX = "give the --out folder of a landcover map run (or its _composite, or a landcover change folder)."


@dataclass
class MapInput:
    uri: str
    kind: str  # "map" | "composite" | "change"
    meta: dict  # the parts' ``landcover`` metadata: classes, model_id, grid, ...
    table: pa.Table


def is_composite(uri: str) -> bool:
    return uri.rstrip("/").rsplit("/", 1)[-1] == mapfile.COMPOSITE


def finished_folder(uri: str) -> str:
    """The folder whose ``_SUCCESS`` says ``uri`` is complete (a composite's: its map's)."""
    base = uri.rstrip("/")
    return (base.rsplit("/", 1)[0] if "/" in base else ".") if is_composite(base) else base


def read_map_input(uri: str, columns: list[str] | None = None) -> MapInput:
    """The map, composite or change map at ``uri`` (``columns``: some of its columns; a
    composite, which has no fill, gets ``fill_fraction`` 0)."""
    import pyarrow.dataset as pads

    if not storage.exists(uri) and not storage.is_prefix(uri):
        raise InputError(f"There is no map at {uri}.", _FIX)
    done = finished_folder(uri)
    if not storage.exists(storage.join(done, mapfile.SUCCESS)):
        raise InputError(f"The map {done} is incomplete (no _SUCCESS): its run has not finished or failed.",
                         "finish the map run first (re-run the same command).")
    try:
        meta = mapfile.read_metadata(uri)
        kind = "composite" if is_composite(uri) else ("change" if meta.get("kind") == "change" else "map")
        schema = {"composite": mapfile.COMPOSITE_SCHEMA, "change": mapfile.CHANGE_SCHEMA}.get(kind, mapfile.MAP_SCHEMA)
        fs, path = storage.arrow_filesystem(uri)
        want = None if columns is None else [c for c in columns if c in schema.names]
        table = pads.dataset(path, filesystem=fs, format="parquet", ignore_prefixes=mapfile.IGNORE_PREFIXES,
                             schema=schema).to_table(columns=want)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Cannot read the map {uri}: {exc}", _FIX) from None
    if "fill_fraction" not in table.column_names and (columns is None or "fill_fraction" in columns):
        table = table.append_column("fill_fraction", pa.array(np.zeros(table.num_rows, np.float32)))
    missing = (NEEDED if columns is None else NEEDED & set(columns)) - set(table.column_names)
    if missing or not meta.get("classes"):
        raise InputError(f"{uri} is not a landcover map: it has no column(s) {sorted(missing) or ['(metadata)']}.",
                         _FIX)
    return MapInput(uri, kind, meta, table)

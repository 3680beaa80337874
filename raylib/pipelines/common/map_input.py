"""A finished map as the input of a later verb (``assess``, ``sample``, ``change``,
``accounts``): a map folder, its composite (``<map>/_composite``) or a change map, checked
(it exists, its run finished, it has the columns every reader needs) and read in its own
schema, with the same one-line errors for every verb."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.errors import InputError
from raylib.formats import mapfile, out_folder
from raylib.io import storage

NEEDED = {"tile_id", "label", "status", "geometry", "scene_crs", "fill_fraction"}
_FIX = "give the --out folder of a landcover map run (or its _composite, or a landcover change folder)."


@dataclass
class MapSource:
    """A finished map, composite or change map, opened (checked, its metadata read) but not
    read: ``read`` gets some of its columns, of all its tiles or of a range of tile ids."""

    uri: str
    kind: str  # "map" | "composite" | "change"
    meta: dict  # the parts' ``landcover`` metadata: classes, model_id, grid, ...
    schema: pa.Schema

    def dataset(self):
        import pyarrow.dataset as pads

        fs, path = storage.arrow_filesystem(self.uri)
        return pads.dataset(path, filesystem=fs, format="parquet", ignore_prefixes=mapfile.IGNORE_PREFIXES,
                            schema=self.schema)

    def count(self) -> int:
        """Its rows (from the parts' footers)."""
        return self.dataset().count_rows()

    def read(self, columns: list[str] | None = None, ids: tuple[str, str | None] | None = None) -> pa.Table:
        """Its rows (``ids``: those whose ``tile_id`` lies in ``[lo, hi)``, ``hi`` None: no
        end), ``columns`` of them (a composite, which has no fill, gets ``fill_fraction`` 0)."""
        import pyarrow.dataset as pads

        want = None if columns is None else [c for c in columns if c in self.schema.names]
        where = None
        if ids is not None:
            lo, hi = ids
            where = pads.field("tile_id") >= lo
            if hi is not None:
                where = where & (pads.field("tile_id") < hi)
        table = self.dataset().to_table(columns=want, filter=where)
        if "fill_fraction" not in table.column_names and (columns is None or "fill_fraction" in columns):
            table = table.append_column("fill_fraction", pa.array(np.zeros(table.num_rows, np.float32)))
        return table


@dataclass
class MapInput:
    uri: str
    kind: str
    meta: dict
    table: pa.Table


def is_composite(uri: str) -> bool:
    return uri.rstrip("/").rsplit("/", 1)[-1] == mapfile.COMPOSITE


def finished_folder(uri: str) -> str:
    """The folder whose ``_SUCCESS`` says ``uri`` is complete (a composite's: its map's)."""
    base = uri.rstrip("/")
    return (base.rsplit("/", 1)[0] if "/" in base else ".") if is_composite(base) else base


def open_map_input(uri: str) -> MapSource:
    """The map, composite or change map at ``uri``, checked: it exists, its run finished,
    it has the columns every reader needs."""
    if not storage.exists(uri) and not storage.is_prefix(uri):
        raise InputError(f"There is no map at {uri}.", _FIX)
    done = finished_folder(uri)
    if not out_folder.finished(done):
        raise InputError(f"The map {done} is incomplete (no _SUCCESS): its run has not finished or failed.",
                         "finish the map run first (re-run the same command).")
    try:
        meta = mapfile.read_metadata(uri)
        kind = "composite" if is_composite(uri) else ("change" if meta.get("kind") == "change" else "map")
        schema = {"composite": mapfile.COMPOSITE_SCHEMA, "change": mapfile.CHANGE_SCHEMA}.get(kind, mapfile.MAP_SCHEMA)
    except Exception as exc:
        raise InputError(f"Cannot read the map {uri}: {exc}", _FIX) from None
    missing = NEEDED - set(schema.names) - {"fill_fraction"}
    if missing or not meta.get("classes"):
        raise InputError(f"{uri} is not a landcover map: it has no column(s) {sorted(missing) or ['(metadata)']}.",
                         _FIX)
    return MapSource(uri, kind, meta, schema)


def read_map_input(uri: str, columns: list[str] | None = None) -> MapInput:
    """The map, composite or change map at ``uri``, read (``columns``: some of its columns)."""
    src = open_map_input(uri)
    try:
        table = src.read(columns)
    except Exception as exc:
        raise InputError(f"Cannot read the map {uri}: {exc}", _FIX) from None
    return MapInput(uri, src.kind, src.meta, table)


def id_ranges(parts: int) -> list[tuple[str, str | None]]:
    """``parts`` ranges of tile ids ``[lo, hi)`` that cover every id (hex digests: even in
    number), for reading a map part by part."""
    parts = max(1, min(int(parts), 1 << 16))
    cuts = [format(k * (1 << 16) // parts, "04x") for k in range(parts)]
    return [("" if k == 0 else cuts[k], cuts[k + 1] if k + 1 < parts else None) for k in range(parts)]

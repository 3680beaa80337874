"""The map job's row blocks, written on the read workers and read back on the driver: one
home for their tile-table columns.

A read task's block (``source.read_units``) holds, per tile, the read's columns
(``reading.read_tiles``: pixels, statistics, status) and the tile's place as flat numpy
columns (``encode_tiles``: ``tile_id``, ``uri``, window, grid cell, ``scene_crs``,
``geometry``, ``bbox_xmin..bbox_ymax``, ``datetime``/``item_id``/``collection``), because
Ray Data carries numpy columns, not Arrow structs or nulls. A scene that cannot be mapped is
one row per read unit (``encode_failure``: ``span`` tiles from ``idx``), with every column
in the same types so blocks of both kinds concatenate. On the driver ``decode_tiles`` gives
a block's tiles back as the map's tile table (``tiling.tile_table``'s columns and the
scene's item columns), and ``decode_failure`` expands a failure row into the tile-table rows
it stands for (one ``unreadable_scene_row`` when not even the header could be read).

Imports stay light (numpy, pyarrow; no torch): read workers use this module.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raylib.formats import mapfile
from raylib.raster import scenes, tiling
from raylib.raster.read_block import BBOX, SPAN
from raylib.raster.reading import PixelFn, empty_rows

TILE_TABLE_COLUMNS = ("tile_id", "scene", "row_off", "col_off", "width", "height", "grid_row", "grid_col", "edge",
                      "scene_crs", "geometry")
BBOX_TYPE = mapfile.MAP_SCHEMA.field("bbox").type
_WINDOW = ("row_off", "col_off", "width", "height", "grid_row", "grid_col")


def _column(k: str) -> str:
    """A tile-table column's name in a block (``scene`` is ``uri`` there)."""
    return "uri" if k == "scene" else k


# ----------------------------------------------------------------- written on read workers


def encode_tiles(meta: dict, grid: tiling.GridSpec, lo: int, hi: int) -> dict:
    """The tile-table columns of tiles ``lo..hi`` of the scene whose record is ``meta``
    (``source.scene_meta``), as a block's numpy columns."""
    t = tiling.tile_table(scenes.SceneInfo.from_dict(meta["info"]), grid, lo, hi)
    out = {_column(k): t.column(k).to_numpy(zero_copy_only=False) for k in TILE_TABLE_COLUMNS}
    bb = t.column("bbox").combine_chunks()
    for k in BBOX:
        out["bbox_" + k] = bb.field(k).to_numpy(zero_copy_only=False).astype(np.float64)
    out.update(item_columns(meta, hi - lo))
    out[SPAN] = np.zeros(hi - lo, np.int64)
    return out


def encode_failure(meta: dict, grid: tiling.GridSpec, channels: int, lo: int, hi: int,
                   pixel_fn: PixelFn | None = None, pixel_type: str = "float32") -> dict:
    """One row standing for tiles ``lo..hi`` of a scene that cannot be mapped (``meta``'s
    ``failure``: reason, message), with every column a read task gives, in the same types."""
    reason, msg = meta["failure"]
    out = empty_rows(1, channels, grid.tile_size, pixel_fn, pixel_type)
    out.update(idx=np.array([lo], np.int64), status=np.array(["error"], object),
               error=np.array([f"{reason}: {msg}"], object), span=np.array([hi - lo], np.int64))
    for k in TILE_TABLE_COLUMNS:
        out[_column(k)] = np.array([None], object)
    for k in _WINDOW:
        out[k] = np.zeros(1, np.int32)
    out["edge"] = np.zeros(1, bool)
    for k in BBOX:
        out["bbox_" + k] = np.full(1, np.nan)
    out.update(item_columns(None, 1))
    return out


def item_columns(meta: dict | None, n: int) -> dict:
    """The scene's ``datetime`` (epoch seconds, -1: unknown), ``item_id`` and ``collection``
    (``""``: none; a column of Nones would not stay strings through Ray Data) on each of
    its ``n`` rows."""
    item = (meta or {}).get("item") or {}
    when = item.get("datetime")
    return {"datetime": np.full(n, -1 if when is None else int(when), np.int64),
            "item_id": np.full(n, item.get("item_id") or "", object),
            "collection": np.full(n, item.get("collection") or "", object)}


# ----------------------------------------------------------------- read on the driver


def decode_tiles(b: dict) -> pa.Table:
    """A block's tile rows (``span`` 0) -> their tile table with the item columns."""
    return pa.table({
        **{k: pa.array(b[_column(k)], mapfile.MAP_SCHEMA.field(k).type) for k in TILE_TABLE_COLUMNS},
        "bbox": pa.StructArray.from_arrays([pa.array(np.asarray(b["bbox_" + k], float)) for k in BBOX],
                                           fields=list(BBOX_TYPE)),
        **item_arrays(b),
    })


def decode_failure(meta: dict, grid: tiling.GridSpec, lo: int, span: int) -> pa.Table:
    """A failure row (tiles ``lo .. lo + span`` of the scene ``meta``) -> the tile-table
    rows (with item columns) it stands for: the scene's windows when its header was read,
    else its one ``unreadable_scene_row``."""
    if meta["info"] is None:
        t = unreadable_scene_row(meta["uri"], grid)
    else:
        t = tiling.tile_table(scenes.SceneInfo.from_dict(meta["info"]), grid, lo, lo + span)
    for k, v in item_arrays(item_columns(meta, t.num_rows)).items():
        t = t.append_column(k, v)
    return t


def unreadable_scene_row(uri: str, grid: tiling.GridSpec) -> pa.Table:
    """The one tile-table row that stands for a scene whose header cannot be read (no grid
    is known): no window, no geometry, ``grid_row = grid_col = -1``."""
    return pa.table({
        "tile_id": pa.array([tiling.tile_id(uri, -1, -1, 0, 0, grid)], pa.string()),
        "scene": pa.array([uri], pa.string()),
        **{k: pa.array([0], pa.int32()) for k in ("row_off", "col_off", "width", "height")},
        "grid_row": pa.array([-1], pa.int32()), "grid_col": pa.array([-1], pa.int32()),
        "edge": pa.array([False]), "scene_crs": pa.array([None], pa.string()),
        "geometry": pa.array([None], pa.binary()),
        "bbox": pa.array([None], BBOX_TYPE),
    })


def item_arrays(b: dict) -> dict:
    """The rows' ``datetime``, ``item_id`` and ``collection`` (``item_columns``) as Arrow
    arrays: a timestamp, and strings with nulls where unknown."""
    when = np.asarray(b["datetime"], np.int64)
    out = {"datetime": pa.array(when, pa.timestamp("s", tz="UTC"), mask=when < 0)}
    for k in ("item_id", "collection"):
        v = np.asarray(b[k], object).astype(str)
        out[k] = pa.array(v, pa.string(), mask=v == "")
    return out

"""``landcover map --stac``: the items a STAC search selects become the map's scenes.

The driver searches (``io.stac``) and writes each item's JSON under
``<out>/_inputs/stac/<collection>/<item id>.json`` (hrefs made absolute; rewritten only when
the item changed, so an incremental map sees an unchanged item as unchanged; an output's
``_inputs/`` survives the output being cleared for a new run). Those files are the scenes: the plan tasks turn each into a VRT of its band assets
(``raster.stac_vrt``, via ``raster.scene_source``), in parallel, so the driver reads no
asset header. An item without a band the model needs is its scene's error row
(``band_mismatch``), like a GeoTIFF without the bands."""

from __future__ import annotations

import json

from raylib.config import MapConfig
from raylib.errors import InputError
from raylib.io import stac, storage
from raylib.io.names import SAFE, safe_name

ITEMS = storage.STAC_INPUTS


def stac_query(cfg: MapConfig) -> stac.StacQuery:
    """The search ``cfg`` asks for; with an AOI, its bounding box (for the server) and its
    polygons (each item's footprint is tested against them here)."""
    bbox, shape = stac.parse_bbox(cfg.bbox), None
    if cfg.aoi:
        from raylib.raster import aoi

        shape = aoi.geojson(cfg.aoi)
        bbox = tuple(float(v) for v in aoi.load(cfg.aoi).bounds)
    return stac.StacQuery(source=cfg.stac, collections=tuple(cfg.collections or ()), bbox=bbox,
                          datetime=cfg.datetime, max_cloud=cfg.max_cloud, query=dict(cfg.query or {}),
                          max_items=cfg.max_items, intersects=shape)


def stac_scenes(cfg: MapConfig) -> list[str]:
    """Search ``cfg.stac``; the URIs of the items' JSON files under ``cfg.out`` (the scenes)."""
    q = stac_query(cfg)
    items = stac.search(q)
    if not items:
        shown = ", ".join(f"{k} {v}" for k, v in (("collections", ",".join(q.collections) or None),
                                                   ("aoi" if cfg.aoi else "bbox", cfg.aoi or q.bbox),
                                                   ("datetime", q.datetime),
                                                   ("max_cloud", q.max_cloud)) if v)
        raise InputError(f"No STAC items in {cfg.stac} match ({shown or 'no filters'}).",
                         "widen the aoi / bbox, datetime or max_cloud, or check the collection names.")
    out, seen = [], set()
    for it in items:
        col = _safe(str(it.get("collection") or "items"))
        name = _safe(str(it.get("id")))
        uri = storage.join(cfg.out, ITEMS, col, f"{name}.json")
        if uri in seen:
            raise InputError(f"Two STAC items of collection {col} have id {name}.",
                             "give one catalog per run, or filter by collection.")
        seen.add(uri)
        data = json.dumps(it, sort_keys=True, separators=(",", ":")).encode()
        try:
            same = storage.read_bytes(uri) == data
        except Exception:
            same = False
        if not same:
            storage.write_bytes(uri, data)
        out.append(uri)
    return out


def _safe(s: str) -> str:
    """An item's collection or id as a file name and an S3 key part (``io.names``, '+' kept)."""
    return safe_name(s, sep="_", allowed=SAFE + "+", default="_")

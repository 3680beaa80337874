"""A finished map (or its composite, or a change map) as rasters GIS users open: ``landcover
export``, and ``--cog`` on ``map``, ``remap`` and ``change`` (under ``<out>/_cog``).

Per CRS zone of the map's tiles (a map across UTM zones gives a raster per zone), on the
tile grid's own lines in that zone's CRS:

- ``classes-<crs>.tif``: one pixel per tile (``--resolution``: finer, each tile's pixels its
  class), uint8 with the quick-look's colours as its palette; 0 no data (error rows), the
  map's classes ``1..k`` (``label_index`` + 1), ``k + 1`` ``unknown``;
- ``confidence-<crs>.tif``: the top probability, 0-100 (255: no data); of a change map,
  ``p_change-<crs>.tif``: the probability that its first and last dates differ;
- with ``--probabilities``, ``probabilities-<crs>.tif``: a band per class, 0-100;

each a COG (``formats.cog``: 512-pixel tiles, ZSTD, overviews by ``MODE`` for classes and
``AVERAGE`` for percentages), validated. A tile paints the cells of its footprint (a tile
larger than the grid step, on an overlapping grid, paints the step-sized cells around its
centre). Then ``export.json`` (files, sizes, checksums, classes and values) and ``_SUCCESS``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from raylib.config import ExportConfig
from raylib.errors import ConfigError, InputError
from raylib.eval import reference, reports
from raylib.formats import cog, mapfile, stac_items
from raylib.io import storage
from raylib.pipelines.common.map_input import read_map_input

COG_FOLDER = "_cog"  # --cog: a map's export, in a folder every reader of the map skips
COLUMNS = ["tile_id", "geometry", "scene_crs", "label", "label_index", "confidence", "p_change", "probs", "status",
           "datetime"]


@dataclass
class ZoneGrid:
    """The pixel grid of one CRS zone's raster: origin (top left), pixel size, shape."""

    crs: str
    x0: float
    y1: float
    res: float
    width: int
    height: int

    @property
    def transform(self):
        from rasterio.transform import from_origin

        return from_origin(self.x0, self.y1, self.res, self.res)


def _step(boxes: np.ndarray) -> float:
    """The tile grid's step in a zone: the smallest spacing of the tiles' left edges (a lone
    tile: its width)."""
    xs = np.unique(np.round(boxes[:, 0], 3))
    gaps = np.diff(xs)
    gaps = gaps[gaps > 1e-6]
    return float(gaps.min()) if len(gaps) else float(np.max(boxes[:, 2] - boxes[:, 0]))


def _cells(boxes: np.ndarray, step: float, g: ZoneGrid) -> np.ndarray:
    """Each tile's cells (row0, row1, col0, col1) in the zone's raster."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    big = (w > step * 1.001) | (h > step * 1.001)  # an overlapping grid: the step around the centre
    x0 = np.where(big, cx - step / 2, boxes[:, 0])
    x1 = np.where(big, cx + step / 2, boxes[:, 2])
    y0 = np.where(big, cy - step / 2, boxes[:, 1])
    y1 = np.where(big, cy + step / 2, boxes[:, 3])
    c0 = np.clip(np.round((x0 - g.x0) / g.res), 0, g.width).astype(np.int64)
    c1 = np.clip(np.round((x1 - g.x0) / g.res), 0, g.width).astype(np.int64)
    r0 = np.clip(np.round((g.y1 - y1) / g.res), 0, g.height).astype(np.int64)
    r1 = np.clip(np.round((g.y1 - y0) / g.res), 0, g.height).astype(np.int64)
    return np.stack([r0, np.maximum(r1, r0 + 1), c0, np.maximum(c1, c0 + 1)], axis=1)


def _zone_name(crs: str, i: int) -> str:
    m = re.fullmatch(r"EPSG:(\d+)", crs.upper())
    return f"epsg{m.group(1)}" if m else f"crs{i}"


def _check_out(cfg: ExportConfig) -> None:
    storage.check_bucket(cfg.out)
    if storage.exists(storage.join(cfg.out, mapfile.SUCCESS)) and not cfg.overwrite:
        raise ConfigError(f"{cfg.out} already holds an export.", "pass --overwrite, or choose another --out.")


def export_map(cfg: ExportConfig, argv: list[str] | None = None) -> dict:
    t0 = time.time()
    _check_out(cfg)
    got = read_map_input(cfg.map, COLUMNS)
    classes = list(got.meta["classes"])
    k = len(classes)
    dtype, unknown_value = cog.class_values(k)
    table = got.table
    status = np.asarray(table.column("status").to_pylist(), object)
    label = np.asarray(table.column("label").to_pylist(), object)
    ok = status == "ok"
    if not ok.any():
        raise InputError(f"The map {cfg.map} has no mapped tile (every row is an error row).",
                         "export a map with predictions.")
    index = table.column("label_index").fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    value = np.where(ok & (index >= 0), index + 1, np.where(ok & (label == mapfile.UNKNOWN), unknown_value, 0))
    sure = "p_change" if got.kind == "change" else "confidence"  # how sure each tile is
    if cfg.probabilities and got.kind == "change":
        raise ConfigError(f"{cfg.map} is a change map: it has no class probabilities to export.",
                          "leave --probabilities out (its p_change raster is written), or export a map.")
    conf = np.nan_to_num(table.column(sure).cast(pa.float64()).fill_null(np.nan)
                         .to_numpy(zero_copy_only=False), nan=-1.0)
    percent = np.where(ok & (conf >= 0), np.round(conf * 100), cog.NODATA_PERCENT).astype(np.uint8)
    probs = None
    if cfg.probabilities:
        col = table.column("probs").combine_chunks()
        probs = np.full((table.num_rows, k), cog.NODATA_PERCENT, np.uint8)
        if ok.any():
            raw = np.asarray(col.filter(pa.array(ok)).flatten().to_numpy(zero_copy_only=False), float).reshape(-1, k)
            probs[ok] = np.round(np.clip(raw, 0, 1) * 100).astype(np.uint8)
    fp = reference.footprints(table)
    colours = reports.palette(classes)
    colormap = {0: (0, 0, 0, 0), **{i + 1: (*c, 255) for i, c in enumerate(colours)},
                unknown_value: (*reports.UNKNOWN, 255)}
    files, zones, items = {}, [], []
    when = _when(table, got)
    crs_all = np.asarray(fp.crs, object)
    plans = []
    for crs in sorted(set(fp.crs)):  # every zone's grid checked before anything is written
        sel = np.flatnonzero(crs_all == crs)
        step = _step(fp.box[sel])
        if cfg.resolution and cfg.resolution > step * 1.001:
            raise ConfigError(f"--resolution {cfg.resolution:g} is coarser than the tile grid's step in {crs} "
                              f"({step:g}): a pixel would hold several tiles.",
                              f"give a resolution of {step:g} or finer (leave it out for one pixel per tile).")
        plans.append((crs, sel, step))
    for zi, (crs, sel, step) in enumerate(plans):
        rows, boxes = fp.rows[sel], fp.box[sel]
        res = cfg.resolution or step
        x0, y1 = float(boxes[:, 0].min()), float(boxes[:, 3].max())
        g = ZoneGrid(crs, x0, y1, res, int(np.ceil((boxes[:, 2].max() - x0) / res - 1e-6)),
                     int(np.ceil((y1 - boxes[:, 1].min()) / res - 1e-6)))
        cells = _cells(boxes, step, g)
        order = np.argsort(ok[rows], kind="stable")  # error tiles first: a mapped tile paints over them
        rasters = {"classes": (np.zeros((1, g.height, g.width), dtype), value[rows], True, cog.NODATA_CLASS),
                   sure: (np.full((1, g.height, g.width), cog.NODATA_PERCENT, np.uint8), percent[rows][:, None],
                          False, cog.NODATA_PERCENT)}
        if probs is not None:
            rasters["probabilities"] = (np.full((k, g.height, g.width), cog.NODATA_PERCENT, np.uint8), probs[rows],
                                        False, cog.NODATA_PERCENT)
        name = _zone_name(crs, zi)
        single = bool(((cells[:, 1] - cells[:, 0]) == 1).all() and ((cells[:, 3] - cells[:, 2]) == 1).all())
        for what, (arr, vals, is_class, nodata) in rasters.items():
            if single:  # one pixel per tile: painted at once (in order: the last write of a cell stays)
                v = np.asarray(vals)[order].reshape(len(order), -1)
                arr[:, cells[order, 0], cells[order, 2]] = v.T
            else:
                for t in order:
                    r0, r1, c0, c1 = cells[t]
                    arr[:, r0:r1, c0:c1] = np.asarray(vals[t]).reshape(-1, 1, 1)
            uri = storage.join(cfg.out, f"{what}-{name}.tif")
            desc = [f"class (1..{k}: {', '.join(classes[:3])}{', ...' if k > 3 else ''}; 0: no data; "
                    f"{unknown_value}: unknown)"] if what == "classes" else (
                [f"{what} (%)"] if what == sure else [f"p({c}) (%)" for c in classes])
            info = cog.write_cog(uri, arr, g.transform, crs, nodata, classes=is_class,
                                 colormap=colormap if is_class else None, descriptions=desc,
                                 tags={"landcover_map": cfg.map, "model_id": got.meta.get("model_id")})
            problems = cog.validate(uri)
            if problems:
                raise RuntimeError(f"{uri} is not a valid COG: {problems}")
            files[f"{what}-{name}"] = {"uri": uri, **info}
            items.append(_item(cfg, got, what, name, g, arr, info, classes, colours, unknown_value, when))
        zones.append({"crs": crs, "name": name, "width": g.width, "height": g.height, "resolution": res,
                      "grid_step": step, "tiles": int(len(sel)), "transform": list(g.transform)[:6]})
    stac_files = _write_stac(cfg, got, items)
    result = {"result": "ok", "map": cfg.map, "stac": stac_files, "kind": got.kind, "out": cfg.out, "format": cfg.format,
              "classes": [{"value": i + 1, "name": c, "color_hint": "%02X%02X%02X" % colours[i]}
                          for i, c in enumerate(classes)]
              + [{"value": unknown_value, "name": mapfile.UNKNOWN, "color_hint": "%02X%02X%02X" % reports.UNKNOWN}],
              "nodata": {"classes": cog.NODATA_CLASS, "percent": cog.NODATA_PERCENT}, "dtype": dtype,
              "model_id": got.meta.get("model_id"), "zones": zones, "files": files,
              "tiles": int(table.num_rows), "mapped_tiles": int(ok.sum()),
              "note": None if dtype == "uint8" else f"{k} classes: the class raster is uint16",
              "created_by": " ".join(argv or []), "seconds": round(time.time() - t0, 2)}
    storage.write_bytes(storage.join(cfg.out, "export.json"), json.dumps(result, indent=2).encode())
    storage.write_bytes(storage.join(cfg.out, mapfile.SUCCESS), b"")
    return result


def export_after(out: str) -> dict:
    """``--cog`` on ``map``, ``remap``, ``change``: the finished map at ``out`` exported under
    ``<out>/_cog`` (replacing an earlier run's)."""
    r = export_map(ExportConfig(map=out, out=storage.join(out, COG_FOLDER), overwrite=True))
    return {"path": r["out"], "rasters": [f["uri"] for f in r["files"].values()], "collection": r["stac"]["collection"]}


# --------------------------------------------------------------------------- STAC


def _when(table: pa.Table, got) -> dict:
    """The Items' time: the map's acquisitions (one day, or a range), a change map's first
    and last dates, else the time of the export."""
    def iso(v) -> str:
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")

    days = table.column("datetime").drop_null() if "datetime" in table.column_names else pa.array([])
    if len(days):
        import pyarrow.compute as pc

        lo, hi = pc.min(days).as_py(), pc.max(days).as_py()
        return {"datetime": iso(lo)} if lo == hi else {"datetime": None, "start_datetime": iso(lo),
                                                       "end_datetime": iso(hi)}
    dates = [d.get("name") for d in got.meta.get("dates", []) if d.get("name")]
    if len(dates) >= 2 and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in dates):
        return {"datetime": None, "start_datetime": dates[0] + "T00:00:00Z", "end_datetime": dates[-1] + "T00:00:00Z"}
    return {"datetime": iso(datetime.now(timezone.utc))}


def _item(cfg: ExportConfig, got, what: str, zone: str, g: ZoneGrid, arr: np.ndarray, info: dict, classes: list,
          colours: list, unknown_value: int, when: dict) -> dict:
    """The STAC Item of one exported raster."""
    from raylib import __version__

    base = storage.basename(cfg.map.rstrip("/")) or "map"
    percent = {"nodata": cog.NODATA_PERCENT, "data_type": "uint8", "spatial_resolution": g.res, "scale": 0.01,
               "unit": "1"}
    entries = None
    if what == "classes":
        values, counts = np.unique(arr, return_counts=True)
        n = dict(zip(values.tolist(), counts.tolist()))
        mapped = sum(c for v, c in n.items() if v != cog.NODATA_CLASS)
        names = list(classes) + [mapfile.UNKNOWN]
        hints = list(colours) + [reports.UNKNOWN]
        entries = [{"value": v + 1, "name": stac_items.class_name(c), "title": c,
                    "color_hint": "%02X%02X%02X" % tuple(hints[v]), "count": int(n.get(v + 1, 0)),
                    "percentage": round(100 * n.get(v + 1, 0) / max(mapped, 1), 4)} for v, c in enumerate(names)]
        entries.append({"value": cog.NODATA_CLASS, "name": "no_data", "description": "error rows: no class",
                        "nodata": True})
        bands = [{"nodata": cog.NODATA_CLASS, "data_type": str(arr.dtype), "spatial_resolution": g.res}]
    elif what in ("confidence", "p_change"):
        bands = [percent]
    else:
        bands = [dict(percent) for _ in classes]
    processing = {"processing:software": {"landcover-ray": __version__},
                  "processing:lineage": f"landcover export of the {got.kind} {cfg.map} (model {got.meta.get('model_id')})",
                  "landcover:model_id": got.meta.get("model_id"), "landcover:kind": got.kind}
    links = [{"rel": r, "href": "../collection.json", "type": "application/json"} for r in ("root", "parent",
                                                                                             "collection")]
    links += [{"rel": "derived_from", "href": h, "type": "application/geo+json"} for h in _sources(cfg.map)]
    item = stac_items.raster_item(f"{base}-{what}-{zone}", f"../{what}-{zone}.tif",
                                  bounds=(g.x0, g.y1 - g.height * g.res, g.x0 + g.width * g.res, g.y1), crs=g.crs,
                                  shape=(g.height, g.width), transform=list(g.transform)[:6], when=when,
                                  title=f"{what} of {base} ({g.crs})", bands=bands, size=info["size"],
                                  sha256=info["sha256"], processing=processing, classes=entries, links=links)
    item["collection"] = f"{base}-export"
    return item


def _sources(map_uri: str) -> list[str]:
    """The STAC items a map was made from (``map --stac`` keeps them under ``_inputs/stac/``)."""
    folder = storage.join(map_uri.rstrip("/").removesuffix("/" + mapfile.COMPOSITE), "_inputs", "stac")
    try:
        return sorted(u for u in storage.folder_files(folder) if u.endswith(".json"))
    except Exception:
        return []


def _write_stac(cfg: ExportConfig, got, items: list[dict]) -> dict:
    """The Items under ``items/`` and the Collection over them, each validated."""
    base = storage.basename(cfg.map.rstrip("/")) or "map"
    hrefs = [f"./items/{i['id']}.json" for i in items]
    coll = stac_items.collection(f"{base}-export", f"Rasters exported from the land-cover {got.kind} {cfg.map} "
                                 f"(model {got.meta.get('model_id')})", items, hrefs)
    for obj in items + [coll]:
        problems = stac_items.validate(obj)
        if problems:
            raise RuntimeError(f"the STAC {obj['type']} {obj['id']} does not validate: {problems}")
    out = {"collection": storage.join(cfg.out, "collection.json"), "items": []}
    for item in items:
        uri = storage.join(cfg.out, "items", f"{item['id']}.json")
        storage.write_bytes(uri, json.dumps(item, indent=2).encode())
        out["items"].append(uri)
    storage.write_bytes(out["collection"], json.dumps(coll, indent=2).encode())
    return out

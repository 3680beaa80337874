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
``AVERAGE`` for percentages), validated, written a block at a time (``export_blocks``): a zone
of more than ``--max-pixels`` is cut into bands of rows, each its own COG written by a Ray Data
task, under ``<kind>-<zone>.vrt``. Each COG gets a STAC Item (``formats.stac_items``) under
``items/``, and ``collection.json`` is over them. Then ``export.json`` (files, sizes,
checksums, classes and values, zones) and ``_SUCCESS``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

import pyarrow as pa

from raylib.config import ExportConfig
from raylib.errors import ConfigError, InputError
from raylib.eval import reports
from raylib.formats import cog, mapfile, out_folder, stac_items
from raylib.io import storage
from raylib.pipelines.common.export_blocks import ExportJob, ZoneGrid, write_block, zone_grids
from raylib.pipelines.common.map_input import open_map_input
from raylib.pipelines.common.map_stac import stac_sources
from raylib.pipelines.common.ray_session import check_shared_paths

COG_FOLDER = "_cog"  # --cog: a map's export, in a folder every reader of the map skips


def _blocks(job: ExportJob, grids: list[ZoneGrid], max_pixels: int) -> list[tuple[int, int, int, str]]:
    """(zone, row0, row1, file suffix) of every block: a zone's raster in bands of rows of at
    most ``max_pixels`` pixels (one block: no suffix)."""
    out = []
    for z, g in enumerate(grids):
        per = max(1, max_pixels // max(1, g.width))
        cuts = list(range(0, g.height, per)) + [g.height]
        n = len(cuts) - 1
        out += [(z, a, b, "" if n == 1 else f"-b{i:03d}") for i, (a, b) in enumerate(zip(cuts, cuts[1:]))]
    return out


def _block_task(z: int, r0: int, r1: int, suffix: str, job: ExportJob, grids: list[ZoneGrid]) -> dict:
    """One block as a Ray Data task (``stages.tasks``)."""
    return write_block(job, grids[z], r0, r1, suffix)


def _write_blocks(cfg: ExportConfig, job: ExportJob, grids: list[ZoneGrid], blocks: list) -> list[dict]:
    """Every block's files: in this process when each zone is one block (and no cluster is
    named), else as Ray Data tasks."""
    if len(blocks) == len(grids) and cfg.ray_address is None:
        return [write_block(job, grids[z], r0, r1, suffix) for z, r0, r1, suffix in blocks]
    from raylib.pipelines.common.stages import tasks

    items = [{"z": z, "r0": r0, "r1": r1, "suffix": sfx} for z, r0, r1, sfx in blocks]
    out = dict(tasks(_block_task, items, {"job": job, "grids": grids}, cfg.ray_address))
    return [out[i] for i in range(len(blocks))]


def export_map(cfg: ExportConfig, argv: list[str] | None = None) -> dict:
    t0 = time.time()
    check_shared_paths(cfg.ray_address, {"--out": cfg.out, "--map": cfg.map})
    out_folder.check(cfg.out, "export", cfg.overwrite)
    source = open_map_input(cfg.map)
    classes = list(source.meta["classes"])
    k = len(classes)
    dtype, unknown_value = cog.class_values(k)
    if cfg.probabilities and source.kind == "change":
        raise ConfigError(f"{cfg.map} is a change map: it has no class probabilities to export.",
                          "leave --probabilities out (its p_change raster is written), or export a map.")
    grids, tiles, mapped = zone_grids(source, cfg.resolution)
    if not mapped:
        raise InputError(f"The map {cfg.map} has no mapped tile (every row is an error row).",
                         "export a map with predictions.")
    colours = reports.palette(classes)
    colormap = {0: (0, 0, 0, 0), **{i + 1: (*c, 255) for i, c in enumerate(colours)},
                unknown_value: (*reports.UNKNOWN, 255)}
    job = ExportJob(source, cfg.out, classes, dtype, unknown_value,
                    "p_change" if source.kind == "change" else "confidence", cfg.probabilities, colormap,
                    {"landcover_map": cfg.map, "model_id": source.meta.get("model_id")})
    blocks = _blocks(job, grids, cfg.max_pixels)
    results = _write_blocks(cfg, job, grids, blocks)
    when = _when(source)
    files, zones, items = {}, [], []
    for z, g in enumerate(grids):
        mine = [r for (bz, *_), r in zip(blocks, results) if bz == z]
        for what in mine[0]["files"]:
            parts = [r["files"][what] for r in mine]
            for p in parts:
                files[p["name"][: -len(".tif")]] = p
                counts = next(r["counts"] for r in mine if r["files"][what] is p) if what == "classes" else {}
                items.append(_item(cfg, source, what, p, g, counts, classes, colours, unknown_value, when))
            if len(parts) > 1:  # one raster of the blocks: a VRT beside them
                from rasterio.transform import from_origin

                vrt = storage.join(cfg.out, f"{what}-{g.name}.vrt")
                cog.write_vrt(vrt, parts, g.width, g.height, from_origin(g.x0, g.y1, g.res, g.res), g.crs,
                              dtype if what == "classes" else "uint8", k if what == "probabilities" else 1,
                              cog.NODATA_CLASS if what == "classes" else cog.NODATA_PERCENT,
                              colormap if what == "classes" else None)
                files[f"{what}-{g.name}-vrt"] = {"uri": vrt, "size": None, "sha256": None, "blocks": len(parts)}
        zones.append({"crs": g.crs, "name": g.name, "width": g.width, "height": g.height, "resolution": g.res,
                      "grid_step": g.step, "blocks": len(mine)})
    stac_files = _write_stac(cfg, source, items)
    result = {"result": "ok", "map": cfg.map, "stac": stac_files, "kind": source.kind, "out": cfg.out,
              "format": cfg.format,
              "classes": [{"value": i + 1, "name": c, "color_hint": "%02X%02X%02X" % colours[i]}
                          for i, c in enumerate(classes)]
              + [{"value": unknown_value, "name": mapfile.UNKNOWN, "color_hint": "%02X%02X%02X" % reports.UNKNOWN}],
              "nodata": {"classes": cog.NODATA_CLASS, "percent": cog.NODATA_PERCENT}, "dtype": dtype,
              "model_id": source.meta.get("model_id"), "zones": zones, "files": files, "blocks": len(blocks),
              "tiles": tiles, "mapped_tiles": mapped,
              "note": None if dtype == "uint8" else f"{k} classes: the class raster is uint16",
              "created_by": " ".join(argv or []), "seconds": round(time.time() - t0, 2)}
    storage.write_bytes(storage.join(cfg.out, "export.json"), json.dumps(result, indent=2).encode())
    out_folder.finish(cfg.out)
    return result


def export_after(out: str) -> dict:
    """``--cog`` on ``map``, ``remap``, ``change``: the finished map at ``out`` exported under
    ``<out>/_cog`` (replacing an earlier run's)."""
    r = export_map(ExportConfig(map=out, out=storage.join(out, COG_FOLDER), overwrite=True))
    return {"path": r["out"], "rasters": [f["uri"] for f in r["files"].values()], "collection": r["stac"]["collection"]}


# --------------------------------------------------------------------------- STAC


def _when(source) -> dict:
    """The Items' time: the map's acquisitions (one day, or a range; streamed), a change map's
    first and last dates, else the time of the export."""
    def iso(v) -> str:
        return datetime.fromtimestamp(v, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    lo = hi = None
    if "datetime" in source.schema.names:
        for batch in source.dataset().to_batches(columns=["datetime"]):
            v = batch.column(0).cast(pa.int64()).drop_null().to_numpy()
            if len(v):
                lo = int(v.min()) if lo is None else min(lo, int(v.min()))
                hi = int(v.max()) if hi is None else max(hi, int(v.max()))
    if lo is not None:
        return {"datetime": iso(lo)} if lo == hi else {"datetime": None, "start_datetime": iso(lo),
                                                       "end_datetime": iso(hi)}
    dates = [d.get("name") for d in source.meta.get("dates", []) if d.get("name")]
    if len(dates) >= 2 and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in dates):
        return {"datetime": None, "start_datetime": dates[0] + "T00:00:00Z", "end_datetime": dates[-1] + "T00:00:00Z"}
    return {"datetime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _item(cfg: ExportConfig, source, what: str, part: dict, g, counts: dict, classes: list, colours: list,
          unknown_value: int, when: dict) -> dict:
    """The STAC Item of one exported COG (a zone's raster, or a block of its rows)."""
    from raylib import __version__

    base = storage.basename(cfg.map.rstrip("/")) or "map"
    percent = {"nodata": cog.NODATA_PERCENT, "data_type": "uint8", "spatial_resolution": g.res, "scale": 0.01,
               "unit": "1"}
    entries = None
    if what == "classes":
        mapped = sum(c for v, c in counts.items() if int(v) != cog.NODATA_CLASS)
        n = {int(v): c for v, c in counts.items()}
        names = list(classes) + [mapfile.UNKNOWN]
        hints = list(colours) + [reports.UNKNOWN]
        entries = [{**e, "count": int(n.get(e["value"], 0)), "percentage": round(100 * n.get(e["value"], 0) /
                                                                                 max(mapped, 1), 4)}
                   for e in stac_items.class_entries(names, hints, 1)]
        entries.append({"value": cog.NODATA_CLASS, "name": "no_data", "description": "error rows: no class",
                        "nodata": True})
        bands = [{"nodata": cog.NODATA_CLASS, "data_type": cog.class_values(len(classes))[0],
                  "spatial_resolution": g.res}]
    elif what == "probabilities":
        bands = [dict(percent) for _ in classes]
    else:
        bands = [percent]
    processing = {"processing:software": {"landcover-ray": __version__},
                  "processing:lineage": f"landcover export of the {source.kind} {cfg.map} "
                                        f"(model {source.meta.get('model_id')})",
                  "landcover:model_id": source.meta.get("model_id"), "landcover:kind": source.kind}
    links = [{"rel": r, "href": "../collection.json", "type": "application/json"} for r in ("root", "parent",
                                                                                             "collection")]
    links += [{"rel": "derived_from", "href": h, "type": "application/geo+json"} for h in stac_sources(cfg.map)]
    y_top = g.y1 - part["row0"] * g.res
    stem = part["name"][: -len(".tif")]
    item = stac_items.raster_item(f"{base}-{stem}", f"../{part['name']}",
                                  bounds=(g.x0, y_top - part["rows"] * g.res, g.x0 + g.width * g.res, y_top),
                                  crs=g.crs, shape=(part["rows"], g.width),
                                  transform=[g.res, 0.0, g.x0, 0.0, -g.res, y_top], when=when,
                                  title=f"{what} of {base} ({g.crs})", bands=bands, size=part["size"],
                                  sha256=part["sha256"], processing=processing, classes=entries, links=links)
    item["collection"] = f"{base}-export"
    return item


def _write_stac(cfg: ExportConfig, source, items: list[dict]) -> dict:
    """The Items under ``items/`` and the Collection over them, each validated."""
    base = storage.basename(cfg.map.rstrip("/")) or "map"
    hrefs = [f"./items/{i['id']}.json" for i in items]
    coll = stac_items.collection(f"{base}-export", f"Rasters exported from the land-cover {source.kind} {cfg.map} "
                                 f"(model {source.meta.get('model_id')})", items, hrefs)
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

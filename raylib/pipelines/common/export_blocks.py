"""The export's rasters, a block at a time: each CRS zone's pixel grid found in one streamed
pass over the map (``zone_grids``), then each block of rows of a zone's raster read, painted
and written as COGs by one call of ``write_block`` (a Ray Data task for a large map), which
reads only the map's tiles of that zone and latitudes: no process holds the whole map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.errors import ConfigError
from raylib.raster.footprints import footprints
from raylib.formats import cog, mapfile
from raylib.io import storage
from raylib.pipelines.common.map_input import MapSource
from raylib.raster import tiling

COLUMNS = ["tile_id", "geometry", "scene_crs", "bbox", "label", "label_index", "confidence", "p_change", "probs",
           "status"]


@dataclass
class ZoneGrid:
    """The pixel grid of one CRS zone's raster: origin (top left), pixel size, shape, and the
    tile grid's step (a tile's cell size)."""

    crs: str
    name: str
    x0: float
    y1: float
    res: float
    width: int
    height: int
    step: float

    @property
    def transform(self):
        from rasterio.transform import from_origin

        return from_origin(self.x0, self.y1, self.res, self.res)


@dataclass
class ExportJob:
    """What every block needs (it travels to the Ray tasks)."""

    source: MapSource
    out: str
    classes: list[str]
    dtype: str
    unknown_value: int
    sure: str  # the column of how sure a tile is: confidence, or a change map's p_change
    probabilities: bool
    colormap: dict
    tags: dict


def _zone_name(crs: str, i: int) -> str:
    import re

    m = re.fullmatch(r"EPSG:(\d+)", crs.upper())
    return f"epsg{m.group(1)}" if m else f"crs{i}"


def zone_grids(source: MapSource, resolution: float | None) -> tuple[list[ZoneGrid], int, int]:
    """Each CRS zone's grid (the tiles' extent on their own lines; ``resolution`` finer than
    the tile grid's step, or the step), from a streamed pass over the map's footprints; and
    the map's tiles and mapped tiles."""
    ext: dict[str, list[float]] = {}
    steps: dict[str, float] = {}
    tiles = mapped = 0
    known = tiling.grid_step(source.meta.get("grid"))  # (a scene grid's: from its tiles)
    for batch in source.dataset().to_batches(columns=["geometry", "scene_crs", "status"]):
        t = pa.Table.from_batches([batch])
        tiles += t.num_rows
        mapped += int(np.sum(np.asarray(t.column("status").to_pylist(), object) == "ok"))
        fp = footprints(t)
        crs = np.asarray(fp.crs, object)
        for c in set(fp.crs):
            b = fp.box[crs == c]
            e = ext.setdefault(c, [np.inf, np.inf, -np.inf, -np.inf])
            e[:] = [min(e[0], b[:, 0].min()), min(e[1], b[:, 1].min()), max(e[2], b[:, 2].max()),
                    max(e[3], b[:, 3].max())]
            step = known or tiling.step_of(b[:, 0]) or float(np.max(b[:, 2] - b[:, 0]))
            steps[c] = min(steps.get(c, np.inf), step)
    grids = []
    for i, c in enumerate(sorted(ext)):
        step = steps[c]
        if resolution and resolution > step * 1.001:
            raise ConfigError(f"--resolution {resolution:g} is coarser than the tile grid's step in {c} ({step:g}): "
                              "a pixel would hold several tiles.",
                              f"give a resolution of {step:g} or finer (leave it out for one pixel per tile).")
        res = resolution or step
        x0, y0, x1, y1 = ext[c]
        grids.append(ZoneGrid(c, _zone_name(c, i), x0, y1, res, int(np.ceil((x1 - x0) / res - 1e-6)),
                              int(np.ceil((y1 - y0) / res - 1e-6)), step))
    return grids, tiles, mapped


def _cells(boxes: np.ndarray, g: ZoneGrid) -> np.ndarray:
    """Each tile's cells (row0, row1, col0, col1) in its zone's raster (a tile larger than the
    step, on an overlapping grid, paints the step-sized cells around its centre)."""
    step = g.step
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    big = (w > step * 1.001) | (h > step * 1.001)
    x0 = np.where(big, cx - step / 2, boxes[:, 0])
    x1 = np.where(big, cx + step / 2, boxes[:, 2])
    y0 = np.where(big, cy - step / 2, boxes[:, 1])
    y1 = np.where(big, cy + step / 2, boxes[:, 3])
    c0 = np.clip(np.round((x0 - g.x0) / g.res), 0, g.width).astype(np.int64)
    c1 = np.clip(np.round((x1 - g.x0) / g.res), 0, g.width).astype(np.int64)
    r0 = np.clip(np.round((g.y1 - y1) / g.res), 0, g.height).astype(np.int64)
    r1 = np.clip(np.round((g.y1 - y0) / g.res), 0, g.height).astype(np.int64)
    return np.stack([r0, np.maximum(r1, r0 + 1), c0, np.maximum(c1, c0 + 1)], axis=1)


def _latitudes(g: ZoneGrid, r0: int, r1: int) -> tuple[float, float]:
    """The latitudes rows ``r0..r1`` of the zone's raster span (with a margin)."""
    from rasterio.warp import transform

    ys = [g.y1 - r0 * g.res, g.y1 - r1 * g.res]
    xs = list(np.linspace(g.x0, g.x0 + g.width * g.res, 9))
    _, lat = transform(g.crs, "EPSG:4326", xs * 2, [ys[0]] * 9 + [ys[1]] * 9)
    return min(lat) - 0.01, max(lat) + 0.01


def write_block(job: ExportJob, g: ZoneGrid, r0: int, r1: int, suffix: str = "") -> dict:
    """Rows ``r0..r1`` of zone ``g``'s rasters: the tiles there read, painted, written as
    ``<kind>-<zone><suffix>.tif`` COGs. Their files and the class raster's pixel counts."""
    import pyarrow.dataset as pads

    lat0, lat1 = _latitudes(g, r0, r1)
    where = (pads.field("scene_crs") == g.crs) & (pads.field("bbox", "ymax") >= lat0) & \
        (pads.field("bbox", "ymin") <= lat1)
    table = job.source.dataset().to_table(columns=[c for c in COLUMNS if c in job.source.schema.names], filter=where)
    k = len(job.classes)
    status = np.asarray(table.column("status").to_pylist(), object)
    label = np.asarray(table.column("label").to_pylist(), object)
    ok = status == "ok"
    index = table.column("label_index").fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    value = np.where(ok & (index >= 0), index + 1, np.where(ok & (label == mapfile.UNKNOWN), job.unknown_value, 0))
    conf = np.nan_to_num(table.column(job.sure).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False),
                         nan=-1.0)
    percent = np.where(ok & (conf >= 0), np.round(conf * 100), cog.NODATA_PERCENT).astype(np.uint8)
    fp = footprints(table)
    rows, boxes = fp.rows, fp.box
    cells = _cells(boxes, g) if len(rows) else np.zeros((0, 4), np.int64)
    inside = (cells[:, 0] < r1) & (cells[:, 1] > r0)
    rows, cells = rows[inside], cells[inside]
    cells[:, 0] = np.maximum(cells[:, 0], r0) - r0
    cells[:, 1] = np.minimum(cells[:, 1], r1) - r0
    h = r1 - r0
    rasters = {"classes": (np.zeros((1, h, g.width), job.dtype), value[rows][:, None], True, cog.NODATA_CLASS),
               job.sure: (np.full((1, h, g.width), cog.NODATA_PERCENT, np.uint8), percent[rows][:, None], False,
                          cog.NODATA_PERCENT)}
    if job.probabilities:
        probs = np.full((len(rows), k), cog.NODATA_PERCENT, np.uint8)
        good = ok[rows]
        if good.any():
            col = table.column("probs").take(pa.array(rows[good])).combine_chunks()
            raw = np.asarray(col.flatten().to_numpy(zero_copy_only=False), float).reshape(-1, k)
            probs[good] = np.round(np.clip(raw, 0, 1) * 100).astype(np.uint8)
        rasters["probabilities"] = (np.full((k, h, g.width), cog.NODATA_PERCENT, np.uint8), probs, False,
                                    cog.NODATA_PERCENT)
    order = np.argsort(ok[rows], kind="stable")  # error tiles first: a mapped tile paints over them
    single = bool(((cells[:, 1] - cells[:, 0]) == 1).all() and ((cells[:, 3] - cells[:, 2]) == 1).all())
    from rasterio.transform import from_origin

    transform = from_origin(g.x0, g.y1 - r0 * g.res, g.res, g.res)
    files, counts = {}, {}
    for what, (arr, vals, is_class, nodata) in rasters.items():
        if single:  # one pixel per tile: painted at once (the last write of a cell stays)
            arr[:, cells[order, 0], cells[order, 2]] = np.asarray(vals)[order].reshape(len(order), -1).T
        else:
            for t in order:
                a, b, c, d = cells[t]
                arr[:, a:b, c:d] = np.asarray(vals[t]).reshape(-1, 1, 1)
        name = f"{what}-{g.name}{suffix}.tif"
        uri = storage.join(job.out, name)
        desc = [f"class (1..{k}; 0: no data; {job.unknown_value}: unknown)"] if is_class else (
            [f"{what} (%)"] if what == job.sure else [f"p({c}) (%)" for c in job.classes])
        info = cog.write_cog(uri, arr, transform, g.crs, nodata, classes=is_class,
                             colormap=job.colormap if is_class else None, descriptions=desc, tags=job.tags)
        problems = cog.validate(uri)
        if problems:
            raise RuntimeError(f"{uri} is not a valid COG: {problems}")
        files[what] = {"uri": uri, "name": name, "row0": r0, "rows": h, **info}
        if is_class:
            v, n = np.unique(arr, return_counts=True)
            counts = {int(a): int(b) for a, b in zip(v, n)}
    return {"files": files, "counts": counts}

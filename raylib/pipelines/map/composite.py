"""``landcover map --composite best|mean``: an area map beside the per-observation map,
one row per ground tile, under ``<out>/_composite/``.

On a ground grid every scene and date covering a place gives the same ``tile_id``, so the
map's rows group into the observations of each ground tile. A *clear* observation is a row
of status ok (``cloudy``, ``all_nodata``, ``mostly_fill`` and read failures are not).

- ``best``: the clearest clear observation (least cloud and cloud shadow, then least fill,
  then the most confident; the latest on a tie): its label, probabilities, scene, item and
  datetime.
- ``mean``: the mean of the class probabilities over the clear observations (label: their
  argmax); no scene, item or datetime of its own.

Both say ``n_obs`` (clear observations) and ``n_seen`` (observations). A ground tile
without a clear observation is an error row, reason ``no_clear_observation``, naming what
its observations were. Written after the map is complete (whole runs and incremental
ones: the composite is rebuilt from the whole map each run), on the driver: the map's
``tile_id``, ``probs`` and a few numbers per row are read, by column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raylib.formats import embstore, mapfile
from raylib.io import storage

FOLDER = mapfile.COMPOSITE
READ = ["tile_id", "scene", "scene_crs", "datetime", "item_id", "collection", "geometry", "bbox", "probs",
        "confidence", "status", "reason", "fill_fraction", "cloud_fraction", "shadow_fraction", "snow_fraction"]
ROWS_PER_FILE = 1_000_000


def build(table: pa.Table, how: str, classes: list[str], unknown_below: float | None = None) -> pa.Table:
    """The composite of map rows ``table`` (``READ`` columns), one row per ``tile_id``."""
    n, k = table.num_rows, len(classes)
    if n == 0:
        return mapfile.COMPOSITE_SCHEMA.empty_table()
    tid = np.asarray(table.column("tile_id").to_pylist(), object)
    status = np.asarray(table.column("status").to_pylist(), object)
    reason = np.asarray(table.column("reason").to_pylist(), object)
    ok = status == "ok"

    def num(name, fill):
        return np.nan_to_num(np.asarray(table.column(name).to_numpy(zero_copy_only=False), np.float64), nan=fill)

    obscured = num("cloud_fraction", 0.0) + num("shadow_fraction", 0.0)
    fill = num("fill_fraction", 1.0)
    conf = num("confidence", 0.0)
    when = table.column("datetime").cast(pa.int64()).to_numpy(zero_copy_only=False)
    when = np.nan_to_num(np.asarray(when, np.float64), nan=-np.inf)
    probs = np.full((n, k), np.nan, np.float32)
    col = table.column("probs").combine_chunks()
    if ok.any():
        probs[ok] = np.asarray(col.filter(pa.array(ok)).flatten().to_numpy(zero_copy_only=False),
                               np.float32).reshape(-1, k)
    # group by tile: rows in tile order, the clearest observation first within a tile
    order = np.lexsort((-when, -conf, fill, obscured, ~ok, tid.astype(str)))
    st = tid[order].astype(str)
    starts = np.flatnonzero(np.r_[True, st[1:] != st[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), sizes)
    n_obs = np.bincount(group, weights=ok[order], minlength=len(starts)).astype(np.int32)
    first = order[starts]  # each tile's clearest observation (an ok row when it has one)
    if how == "mean":
        sums = np.zeros((len(starts), k), np.float64)
        np.add.at(sums, group[ok[order]], probs[order][ok[order]])
        comp = (sums / np.maximum(n_obs, 1)[:, None]).astype(np.float32)
    else:
        comp = probs[first]
    clear = n_obs > 0
    out_status = np.where(clear, "ok", "error").astype(object)
    out_error = np.full(len(starts), "", object)
    for g in np.flatnonzero(~clear):
        rs = reason[order[starts[g]:starts[g] + sizes[g]]]
        seen: dict[str, int] = {}
        for r in rs:
            seen[str(r)] = seen.get(str(r), 0) + 1
        said = ", ".join(f"{r}: {c}" for r, c in sorted(seen.items()))
        out_error[g] = f"no_clear_observation: none of the tile's {sizes[g]} observation(s) is clear ({said})"
    rows = table.take(pa.array(first)).select(["tile_id", "scene", "scene_crs", "datetime", "item_id", "collection",
                                                "geometry", "bbox"])
    best = how == "best"
    cols = {c: rows.column(c) if best or c not in ("scene", "datetime", "item_id", "collection")
            else pa.nulls(len(starts), rows.schema.field(c).type) for c in rows.column_names}
    shares = {}
    for c in mapfile.CLOUD_COLUMNS:
        v = num(c, np.nan)
        if best:
            shares[c] = v[first]
        else:  # the mean over the clear observations
            m = ok[order] & np.isfinite(v[order])
            s = np.zeros(len(starts))
            np.add.at(s, group[m], v[order][m])
            cnt = np.bincount(group[m], minlength=len(starts))
            shares[c] = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)
    cols.update(
        **mapfile.prediction_columns(comp, clear, classes, unknown_below),
        n_obs=pa.array(n_obs, pa.int32()), n_seen=pa.array(sizes.astype(np.int32), pa.int32()),
        area_ha=mapfile.area_column(cols["geometry"], fill[first]),  # (less the clearest observation's fill)
        **{c: mapfile.nullable(np.asarray(v, np.float32)) for c, v in shares.items()},
        **mapfile.outcome_columns(out_status, out_error),
    )
    return pa.table({f.name: cols[f.name] for f in mapfile.COMPOSITE_SCHEMA}, schema=mapfile.COMPOSITE_SCHEMA)


def write(out: str, how: str, classes: list[str], model_id: str, extra: dict,
          unknown_below: float | None = None) -> dict:
    """Build the composite of the map at ``out`` and write it under ``<out>/_composite/``
    (earlier composite files replaced); what it holds, for the summary."""
    table = mapfile.read_map(out, columns=READ)
    comp = build(table, how, classes, unknown_below)
    comp = comp.take(pa.array(embstore.zorder(comp)))
    folder = storage.join(out, FOLDER)
    old = set(storage.folder_files(folder))
    written = []
    for i in range(0, max(comp.num_rows, 1), ROWS_PER_FILE):
        uri = storage.join(folder, f"part-{i // ROWS_PER_FILE:05d}.parquet")
        mapfile.write_part(comp.slice(i, ROWS_PER_FILE), uri, classes, model_id, {**extra, "composite": how})
        written.append(uri)
    for uri in old - set(written):
        storage.delete_prefix(uri)
    ok = comp.column("status").to_numpy(zero_copy_only=False) == "ok"
    picture = storage.join(out, mapfile.QUICKLOOKS, f"composite-{how}.png")
    storage.write_bytes(picture, picture_png(comp, how, classes, model_id, extra.get("grid")))
    return {"path": folder, "method": how, "tiles": comp.num_rows, "clear_tiles": int(ok.sum()),
            "no_clear_observation": int((~ok).sum()), "observations": table.num_rows, "quicklook": picture}


def picture_png(comp: pa.Table, how: str, classes: list[str], model_id: str, grid: dict | None) -> bytes:
    """The composite's class map, one panel per CRS (UTM zone): each ground tile at its place
    on the zone's grid (from its footprint's centre), black where it has no clear observation."""
    from raylib.eval import reports
    from raylib.pipelines.common.tile_grid import ground_cells

    label = comp.column("label_index").fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    grids, captions = [], []
    for z in ground_cells(comp, grid):
        grids.append(z.draw(label))
        captions.append(f"{z.zone}: {len(z.rows)} ground tiles")
    return reports.side_by_side_png(f"composite ({how}) | model {model_id}", grids, classes, captions,
                                    none_label="no clear observation")

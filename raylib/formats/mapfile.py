"""The map contract: GeoParquet 1.1 parts, one row per tile.

Geometry is the tile footprint as WKB polygons in OGC:CRS84 (longitude/latitude, WGS 84):
one dataset can hold scenes from any UTM zone or CRS, and every GeoParquet reader
(GeoPandas, DuckDB, QGIS/GDAL) understands it without a per-row CRS.  The scene's own
CRS is kept per row in ``scene_crs`` and the native pixel window in
``row_off``/``col_off``/``width``/``height``.  A ``bbox`` covering column (GeoParquet 1.1)
lets readers skip row groups by area.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raylib.io import storage
from raylib.raster.read_block import CLOUD_COLUMNS  # the read stage's shares of a quality asset
from raylib.raster.tiling import footprint_areas_ha

MARKER, SUCCESS, SUMMARY = "_landcover.json", "_SUCCESS", "_summary.json"  # a map folder's own files
UNKNOWN = "unknown"  # the label of a tile below --unknown-below
QUICKLOOKS = "_quicklook"  # the map's pictures: a class map per scene, composite-<how>.png, change.png


def quicklook_uri(out: str, tag: str, scene: str) -> str:
    """Where a map at ``out`` keeps a scene's quick-look: ``_quicklook/<tag>-<scene's stem>.png``
    (``tag``: the scene's place in the run, or its key in an incremental map)."""
    return storage.join(out, QUICKLOOKS, f"{tag}-{os.path.splitext(storage.basename(scene))[0]}.png")


COMPOSITE = "_composite"  # the area map of --composite (a "_" name: every reader of the map skips it)
# what a reader of a map folder skips: pyarrow's defaults (so the composite), and the embedding store beside the map
IGNORE_PREFIXES = [".", "_", "embeddings"]

ITEM_COLUMNS = ("datetime", "item_id", "collection")  # per scene, null where a scene does not tell

# What each column of a map, composite, change map or store holds: in the files themselves (each
# field's Arrow metadata ``description``, and the file's ``landcover_columns`` key, which DuckDB's
# parquet_kv_metadata and any Parquet reader show), and in docs/formats.md
COLUMN_DOCS = {
    "tile_id": "stable id of the tile: a hash of its scene, window and grid (on a ground grid: of the CRS, pixel "
               "size, tile size, stride and place only, the same for every scene and date)",
    "scene": "the scene's URI (a STAC item: its JSON kept under _inputs/stac/)",
    "row_off": "the tile's window in the scene's native pixels: first row", "col_off": "first column of the window",
    "width": "window width in native pixels (an edge tile's is clipped)", "height": "window height in native pixels",
    "grid_row": "row of the tile in its scene's grid (-1: a scene whose header could not be read)",
    "grid_col": "column of the tile in its scene's grid",
    "edge": "the tile is clipped at the scene's edge (padded on read)",
    "scene_crs": "the scene's own CRS (e.g. EPSG:32621): the CRS of the window and of the ground grid",
    "datetime": "acquisition time: the STAC item's datetime, else the date in the file name (null: neither tells)",
    "item_id": "the STAC item (null for a file scene)", "collection": "the STAC item's collection",
    "geometry": "the tile's footprint, WKB polygon in OGC:CRS84 (lon/lat on WGS 84)",
    "bbox": "GeoParquet 1.1 covering column of the footprint: xmin, ymin, xmax, ymax",
    "label": "the class (null on error rows; 'unknown' below unknown_below)",
    "label_index": "the class's index in the file metadata's classes (null on error rows and unknown)",
    "confidence": "the class's probability, the largest (temperature-scaled when the model has a temperature)",
    "probs": "every class's probability, in the order of the file metadata's classes",
    "ood": "out-of-distribution score: distance of the tile's embedding to the nearest training class, in units "
           "of the training tiles' 95th percentile (above 1: less like the training data than 95 % of it)",
    "fill_fraction": "share of the tile's pixels in the scene that are fill or nodata (padding outside the scene "
                     "not counted)",
    "area_ha": "ground area the tile maps, hectares: its footprint's geodesic area on WGS 84 less its fill",
    "cloud_fraction": "share of the tile's valid pixels its quality asset flags as cloud (null: no quality asset)",
    "shadow_fraction": "share flagged as cloud shadow", "snow_fraction": "share flagged as snow or ice",
    "band_mean": "mean of each band of the scene over the tile's valid pixels (reflectance where the sensor is "
                 "known, else value / dtype maximum)",
    "band_std": "standard deviation of each band over the tile's valid pixels",
    "ndvi": "mean NDVI (nir - red) / (nir + red) of the valid pixels (null without those bands)",
    "ndwi": "mean NDWI (green - nir) / (green + nir) of the valid pixels",
    "model_id": "the model directory's id (name@hash)",
    "status": "ok, or error: the tile has no class, and reason and error say why",
    "reason": "error rows: the reason code (all_nodata, mostly_fill, mostly_outside, cloudy, corrupt, timeout, ...; "
              "docs/reliability.md); null on ok rows",
    "error": "error rows: what happened, in words; null on ok rows",
    # the composite
    "n_obs": "clear observations of the ground tile (map rows of status ok)",
    "n_seen": "observations of the ground tile (map rows, whatever their status)",
    # the change map
    "from": "the class at the first date that observes the tile", "to": "the class the decisions hold at the last",
    "changed": "from != to: a change counted (thresholds, persistence)",
    "p_change": "probability that the first and last dates differ: 1 - sum of the products of their probabilities",
    "confidence_before": "the first date's top probability", "confidence_after": "the last date's top probability",
    "changed_at": "the date of the tile's first counted change (null: none)",
    "pending": "a change into the last date that persistence could not yet confirm (not counted)",
    "labels": "each date's class (null where the date has no observation)",
    # the embedding store
    "embedding": "the backbone's embedding of the tile (float16; null on error rows)",
    "stats_reflectance": "band_mean, band_std, ndvi and ndwi are reflectance (a known sensor)",
}

MAP_SCHEMA = pa.schema(
    [
        ("tile_id", pa.string()),
        ("scene", pa.string()),
        ("row_off", pa.int32()),
        ("col_off", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("grid_row", pa.int32()),
        ("grid_col", pa.int32()),
        ("edge", pa.bool_()),
        ("scene_crs", pa.string()),
        ("datetime", pa.timestamp("s", tz="UTC")),  # acquisition: a STAC item's datetime, or the file name's date
        ("item_id", pa.string()),  # the STAC item (null for a file scene)
        ("collection", pa.string()),
        ("geometry", pa.binary()),
        ("bbox", pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()),
                            ("ymax", pa.float64())])),
        ("label", pa.string()),
        ("label_index", pa.int16()),
        ("confidence", pa.float32()),
        ("probs", pa.list_(pa.float32())),
        ("ood", pa.float32()),
        ("fill_fraction", pa.float32()),
        ("area_ha", pa.float64()),  # the footprint's ground area less its fill: what the tile maps
        ("cloud_fraction", pa.float32()),  # shares of the tile a STAC item's quality asset flags (null: none)
        ("shadow_fraction", pa.float32()),
        ("snow_fraction", pa.float32()),
        ("band_mean", pa.list_(pa.float32())),
        ("band_std", pa.list_(pa.float32())),
        ("ndvi", pa.float32()),
        ("ndwi", pa.float32()),
        ("model_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
    ]
)


# ``landcover map --composite``: one row per ground tile (``pipelines.map.composite``)
COMPOSITE_SCHEMA = pa.schema(
    [MAP_SCHEMA.field(c) for c in ("tile_id", "scene", "scene_crs", "datetime", "item_id", "collection", "geometry",
                                   "bbox", "label", "label_index", "confidence", "probs", "area_ha")]
    + [pa.field("n_obs", pa.int32()), pa.field("n_seen", pa.int32())]
    + [MAP_SCHEMA.field(c) for c in (*CLOUD_COLUMNS, "status", "reason", "error")]
)


# ``landcover change``: one row per ground tile, a map whose classes are the transitions (``pipelines.change``)
CHANGE_SCHEMA = pa.schema(
    [MAP_SCHEMA.field(c) for c in ("tile_id", "scene_crs", "geometry", "bbox", "label", "label_index")]
    + [pa.field("from", pa.string()), pa.field("to", pa.string()), pa.field("changed", pa.bool_()),
       pa.field("p_change", pa.float32()), pa.field("confidence_before", pa.float32()),
       pa.field("confidence_after", pa.float32()), pa.field("changed_at", pa.string()),
       pa.field("pending", pa.bool_()), pa.field("labels", pa.list_(pa.string()))]
    + [MAP_SCHEMA.field(c) for c in ("fill_fraction", "area_ha", "status", "reason", "error")]
)


def documented(schema: pa.Schema) -> pa.Schema:
    """``schema`` with each field's ``description`` (``COLUMN_DOCS``) in its Arrow metadata."""
    return pa.schema([f.with_metadata({"description": COLUMN_DOCS[f.name]}) if f.name in COLUMN_DOCS else f
                      for f in schema], metadata=schema.metadata)


def schema_metadata(schema: pa.Schema) -> dict[bytes, bytes]:
    """File metadata every part of a map, composite, change map or store carries besides
    ``geo`` and ``landcover``: ``landcover_columns`` (what each column holds, for readers that
    show a file's key-value metadata) and ``pandas`` (its nullable integer columns as pandas'
    ``Int16``/``Int32``: ``label_index`` is null on error rows, and would read as float64)."""
    ints = [f for f in schema if pa.types.is_integer(f.type) and f.nullable]
    pandas = {"index_columns": [], "column_indexes": [], "pandas_version": "2.2.0",
              "columns": [{"name": f.name, "field_name": f.name, "pandas_type": str(f.type),
                           "numpy_type": str(f.type).capitalize(), "metadata": None} for f in ints]}
    docs = {f.name: COLUMN_DOCS[f.name] for f in schema if f.name in COLUMN_DOCS}
    return {b"landcover_columns": json.dumps(docs).encode(), b"pandas": json.dumps(pandas).encode()}


def geo_metadata(bbox: list[float] | None) -> dict:
    col = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        # "crs" omitted: GeoParquet's default, OGC:CRS84 (lon/lat on WGS 84)
        "covering": {"bbox": {"xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"],
                              "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"]}},
    }
    if bbox:
        col["bbox"] = bbox
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": col}}


def ragged(values: np.ndarray, counts: np.ndarray) -> pa.Array:
    """list<float32> of the first ``counts[i]`` values of each row (null where 0)."""
    counts = counts.astype(np.int64)
    keep = np.arange(values.shape[1])[None, :] < counts[:, None]
    flat = pa.array(values[keep].astype(np.float32))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, flat, mask=pa.array(counts == 0))


def nullable(v: np.ndarray) -> pa.Array:
    return pa.array(v.astype(np.float32), pa.float32(), mask=~np.isfinite(v))


def area_column(geometry, fill_fraction) -> pa.Array:
    """``area_ha``: each tile's footprint area (geodesic, hectares) less its fill share; null
    where a row has no footprint."""
    if isinstance(geometry, pa.ChunkedArray):
        geometry = geometry.combine_chunks()
    elif not isinstance(geometry, pa.Array):
        geometry = pa.array(geometry, pa.binary())
    fill = np.nan_to_num(np.asarray(fill_fraction, np.float64), nan=0.0)
    none = geometry.is_null().to_numpy(zero_copy_only=False)
    return pa.array(footprint_areas_ha(geometry) * (1.0 - fill), pa.float64(), mask=none)


def mapped_area_ha(table: pa.Table) -> np.ndarray:
    """Each row's mapped area in hectares (0 without a footprint): its ``area_ha``, or for a
    part written before that column, its footprint less its fill, as ``area_column`` makes it."""
    n = table.num_rows
    have = table.column("area_ha") if "area_ha" in table.column_names else pa.nulls(n, pa.float64())
    out = np.array(have.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False), np.float64)
    missing = np.isnan(out)
    if missing.any():
        fill = (table.column("fill_fraction").cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
                if "fill_fraction" in table.column_names else np.zeros(n))
        rows = pa.array(np.flatnonzero(missing))
        geom = table.column("geometry").take(rows)
        out[missing] = np.nan_to_num(np.asarray(area_column(geom, np.asarray(fill)[missing]).fill_null(0.0)
                                                .to_numpy(zero_copy_only=False), np.float64))
    return out


def outcome_columns(status: np.ndarray, error: np.ndarray, reason: np.ndarray | None = None) -> dict[str, pa.Array]:
    """The ``status``, ``reason`` and ``error`` columns of rows (one rule for maps, stores,
    composites and change maps): ``reason`` (the error's code: ``all_nodata``, ``cloudy``,
    ...; default the text before its first ``:``) and ``error`` (what happened, in words)
    are null on an ok row, never an empty string beside a null."""
    ok = np.asarray(status).astype(str) == "ok"
    text = [None if o or e is None or str(e) == "" else str(e) for e, o in zip(error, ok)]
    if reason is None:
        why = [None if t is None else t.split(":", 1)[0] for t in text]
    else:
        why = [None if o or r is None or str(r) == "" else str(r) for r, o in zip(reason, ok)]
    return {"status": pa.array(np.asarray(status).astype(str), pa.string()), "reason": pa.array(why, pa.string()),
            "error": pa.array(text, pa.string())}


def prediction_columns(probs: np.ndarray, ok: np.ndarray, classes: list[str],
                       unknown_below: float | None = None) -> dict[str, pa.Array]:
    """The ``label``, ``label_index``, ``confidence`` and ``probs`` columns of rows with class
    probabilities ``probs`` (n x k; rows not ``ok`` are null). With ``unknown_below``, a row whose
    top probability is below it is labelled ``unknown`` (label_index null)."""
    n, k = len(ok), len(classes)
    idx = np.where(ok, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), -1)
    conf = np.where(ok, probs.max(axis=1, initial=0.0, where=~np.isnan(probs)), np.nan)
    unknown = ok & (conf < unknown_below) if unknown_below is not None else np.zeros(n, bool)
    idx = np.where(unknown, -1, idx)
    flat = pa.array(np.asarray(probs, np.float32).reshape(-1))
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return dict(
        label=pa.array([classes[i] if i >= 0 else (UNKNOWN if u else None) for i, u in zip(idx, unknown)], pa.string()),
        label_index=pa.array(idx.astype(np.int16), pa.int16(), mask=~ok | unknown),
        confidence=pa.array(conf.astype(np.float32), pa.float32(), mask=~ok),
        probs=pa.ListArray.from_arrays(offsets, flat, mask=pa.array(~ok)),
    )


def no_stats(n: int) -> dict:
    """The per-tile statistics of ``n`` tiles that have none (a scene that cannot be read)."""
    return {"band_mean": np.zeros((n, 0), np.float32), "band_std": np.zeros((n, 0), np.float32),
            "n_stats": np.zeros(n, np.int8), "ndvi": np.full(n, np.nan), "ndwi": np.full(n, np.nan),
            "ood": np.full(n, np.nan)}


def stat_columns(stats: dict, fill_fraction: np.ndarray, status: np.ndarray, error: np.ndarray) -> dict:
    """The columns a map and a store both keep per tile, built once: the quality shares
    (null where the scene has no quality asset), the spectral statistics, the fill share and
    the outcome (``status``, ``reason``, ``error``)."""
    n = len(fill_fraction)
    return {
        **{c: nullable(np.asarray(stats[c], np.float32)) if c in stats else pa.nulls(n, pa.float32())
           for c in CLOUD_COLUMNS},
        "band_mean": ragged(stats["band_mean"], stats["n_stats"]),
        "band_std": ragged(stats["band_std"], stats["n_stats"]),
        "ndvi": nullable(np.asarray(stats["ndvi"], np.float32)),
        "ndwi": nullable(np.asarray(stats["ndwi"], np.float32)),
        "fill_fraction": pa.array(np.asarray(fill_fraction).astype(np.float32)),
        **outcome_columns(status, error),
    }


def build_table(manifest_rows: pa.Table, probs: np.ndarray, status: np.ndarray, error: np.ndarray,
                fill_fraction: np.ndarray, classes: list[str], model_id: str, stats: dict | None = None,
                unknown_below: float | None = None) -> pa.Table:
    """Join tile-table rows (``tiling.tile_table``) with predictions (and per-tile spectral statistics and
    out-of-distribution scores) into the map schema. With ``unknown_below``, a tile whose top
    probability is below it is labelled ``unknown`` (status ok, label_index null)."""
    n = manifest_rows.num_rows
    if stats is None:
        stats = no_stats(n)
    ok = status == "ok"
    cols = {name: manifest_rows.column(name) for name in manifest_rows.column_names}
    for name in ITEM_COLUMNS:  # rows of an older store, or of a file scene: null
        cols.setdefault(name, pa.nulls(n, MAP_SCHEMA.field(name).type))
    cols.update(
        **stat_columns(stats, fill_fraction, status, error),
        **prediction_columns(probs, ok, classes, unknown_below),
        ood=nullable(np.asarray(stats.get("ood", np.full(n, np.nan)), np.float32)),
        area_ha=area_column(cols["geometry"], fill_fraction),
        model_id=pa.array([model_id] * n, pa.string()),
    )
    return pa.table({f.name: cols[f.name] for f in MAP_SCHEMA}, schema=MAP_SCHEMA)


def write_part(table: pa.Table, uri: str, classes: list[str], model_id: str, extra: dict) -> None:
    """Write one complete GeoParquet file (atomically: whole object or nothing)."""
    bb = table.column("bbox").combine_chunks()
    bbox = None
    if table.num_rows:
        bbox = [float(np.min(bb.field("xmin"))), float(np.min(bb.field("ymin"))),
                float(np.max(bb.field("xmax"))), float(np.max(bb.field("ymax")))]
    meta = dict(table.schema.metadata or {})
    meta.update(schema_metadata(table.schema))
    meta[b"geo"] = json.dumps(geo_metadata(bbox)).encode()
    meta[b"landcover"] = json.dumps({"classes": classes, "model_id": model_id, **extra}).encode()
    table = table.cast(documented(table.schema)).replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=50_000)
    storage.write_bytes(uri, buf.getvalue())


def read_part(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Read one part (some columns)."""
    fs, path = storage.arrow_filesystem(uri)
    return pq.read_table(path, filesystem=fs, columns=columns)


def read_metadata(uri: str) -> dict:
    """The ``landcover`` metadata of a map folder's parts (classes, model, grid, ...)."""
    import pyarrow.dataset as pads

    fs, path = storage.arrow_filesystem(uri)
    meta = pads.dataset(path, filesystem=fs, format="parquet", ignore_prefixes=IGNORE_PREFIXES).schema.metadata or {}
    return json.loads(meta.get(b"landcover", b"{}"))


def read_map(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Read a whole map dataset (every part; some columns) as one Arrow table, in this
    version's schema: parts written before a column existed (an incremental map that spans
    versions) give it as nulls."""
    import pyarrow.dataset as pads

    fs, path = storage.arrow_filesystem(uri)
    return pads.dataset(path, filesystem=fs, format="parquet", ignore_prefixes=IGNORE_PREFIXES,
                        schema=MAP_SCHEMA).to_table(columns=columns)

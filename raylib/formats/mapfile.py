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

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raylib.io import storage
from raylib.raster.reading import CLOUD_COLUMNS  # the read stage's shares of a quality asset

MARKER, SUCCESS, SUMMARY = "_landcover.json", "_SUCCESS", "_summary.json"  # a map folder's own files
UNKNOWN = "unknown"  # the label of a tile below --unknown-below
COMPOSITE = "_composite"  # the area map of --composite (a "_" name: every reader of the map skips it)
# what a reader of a map folder skips: pyarrow's defaults (so the composite), and the embedding store beside the map
IGNORE_PREFIXES = [".", "_", "embeddings"]

ITEM_COLUMNS = ("datetime", "item_id", "collection")  # per scene, null where a scene does not tell

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
                                   "bbox", "label", "label_index", "confidence", "probs")]
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
    + [MAP_SCHEMA.field(c) for c in ("fill_fraction", "status", "reason", "error")]
)


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


def build_table(manifest_rows: pa.Table, probs: np.ndarray, status: np.ndarray, error: np.ndarray,
                fill_fraction: np.ndarray, classes: list[str], model_id: str, stats: dict | None = None,
                unknown_below: float | None = None) -> pa.Table:
    """Join tile-table rows (``tiling.tile_table``) with predictions (and per-tile spectral statistics and
    out-of-distribution scores) into the map schema. With ``unknown_below``, a tile whose top
    probability is below it is labelled ``unknown`` (status ok, label_index null)."""
    n = manifest_rows.num_rows
    if stats is None:
        stats = {"band_mean": np.zeros((n, 0), np.float32), "band_std": np.zeros((n, 0), np.float32),
                 "n_stats": np.zeros(n, np.int8), "ndvi": np.full(n, np.nan), "ndwi": np.full(n, np.nan),
                 "ood": np.full(n, np.nan)}
    ok = status == "ok"
    cols = {name: manifest_rows.column(name) for name in manifest_rows.column_names}
    for name in ITEM_COLUMNS:  # rows of an older store, or of a file scene: null
        cols.setdefault(name, pa.nulls(n, MAP_SCHEMA.field(name).type))
    cols.update(
        **{c: nullable(np.asarray(stats[c], np.float32)) if c in stats else pa.nulls(n, pa.float32())
           for c in CLOUD_COLUMNS},
        **prediction_columns(probs, ok, classes, unknown_below),
        ood=nullable(np.asarray(stats.get("ood", np.full(n, np.nan)), np.float32)),
        fill_fraction=pa.array(fill_fraction.astype(np.float32)),
        band_mean=ragged(stats["band_mean"], stats["n_stats"]),
        band_std=ragged(stats["band_std"], stats["n_stats"]),
        ndvi=nullable(np.asarray(stats["ndvi"], np.float32)),
        ndwi=nullable(np.asarray(stats["ndwi"], np.float32)),
        model_id=pa.array([model_id] * n, pa.string()),
        status=pa.array(status.astype(str), pa.string()),
        reason=pa.array([e.split(":", 1)[0] if not o else None for e, o in zip(error.astype(str), ok)], pa.string()),
        error=pa.array(error.astype(str), pa.string()),
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
    meta[b"geo"] = json.dumps(geo_metadata(bbox)).encode()
    meta[b"landcover"] = json.dumps({"classes": classes, "model_id": model_id, **extra}).encode()
    table = table.replace_schema_metadata(meta)
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

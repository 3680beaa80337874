"""The tile embedding store: GeoParquet, one row per tile of a map, keyed by the map's
``tile_id``, holding the backbone's embedding of the tile so that heads can be applied
(``landcover remap``), trained (``landcover train-head --store``) and searched
(``landcover similar``) without reading imagery or running the backbone again.

Columns: the map's tile columns (``tile_id``, ``scene``, window, grid position, ``edge``,
``scene_crs``, ``geometry`` in OGC:CRS84, ``bbox``), ``datetime`` (the acquisition date when
the scene's name tells it), ``embedding`` (``fixed_size_list<float16>``; null on error rows),
the per-tile spectral statistics (``band_mean``, ``band_std``, ``ndvi``, ``ndwi``, and
``stats_reflectance``: whether they are reflectance, which a spectral head needs; false in
stores older than the column), ``fill_fraction`` and ``status``/``reason``/``error``.

float16, not int8 with a per-row scale: half the size of float32 with a relative error of at
most 2^-11 (about 5e-4), no scale to carry, and every Arrow/Parquet reader knows the type.
The map job applies its head to the float16-rounded embedding, so a remap of the store with
the same head gives the map's probabilities exactly.

File metadata (``landcover_store``) names the backbone, a hash of its weights and a hash of
the preprocessing (bands, scaling, GSD, tile and input size, the model's normalisation):
a store never mixes two of them. Rows are sorted along a Z-order curve of their tile
centres and written in row groups of ``ROW_GROUP`` rows, whose ``bbox`` statistics let a
reader skip the row groups outside an area.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from raylib.errors import InputError
from raylib.formats.mapfile import (CLOUD_COLUMNS, MAP_SCHEMA, documented, geo_metadata, schema_metadata,
                                    stat_columns)
from raylib.io import storage
from raylib.raster.bands import MAX_STAT_BANDS as max_stats
from raylib.raster.scenes import acquired

META_KEY = b"landcover_store"
FOLDER = "_embeddings"  # a map's store (map --store): a '_' folder, which every reader of the map skips
LEGACY_FOLDER = "embeddings"  # where maps made before the '_' folder keep it
ROW_GROUP = 1024
TILE_COLUMNS = ("tile_id", "scene", "row_off", "col_off", "width", "height", "grid_row", "grid_col", "edge",
                "scene_crs", "geometry", "bbox")


def store_schema(dim: int) -> pa.Schema:

    fields = [MAP_SCHEMA.field(c) for c in TILE_COLUMNS]
    fields += [pa.field("datetime", pa.timestamp("s", tz="UTC")), MAP_SCHEMA.field("item_id"),
               MAP_SCHEMA.field("collection"),
               pa.field("embedding", pa.list_(pa.float16(), dim)),
               MAP_SCHEMA.field("band_mean"), MAP_SCHEMA.field("band_std"), MAP_SCHEMA.field("ndvi"),
               MAP_SCHEMA.field("ndwi"), pa.field("stats_reflectance", pa.bool_()), MAP_SCHEMA.field("fill_fraction"),
               *[MAP_SCHEMA.field(c) for c in CLOUD_COLUMNS], MAP_SCHEMA.field("status"),
               MAP_SCHEMA.field("reason"), MAP_SCHEMA.field("error")]
    return pa.schema(fields)


def weights_hash(folder: str | None, ref: str) -> str:
    """sha256 over the backbone's weight files (a hub id without a local folder: of the id)."""
    h = hashlib.sha256()
    if folder and Path(folder).is_dir():
        for f in sorted(Path(folder).rglob("*")):
            if f.is_file() and f.suffix in (".safetensors", ".json"):
                h.update(f.relative_to(folder).as_posix().encode())
                h.update(f.read_bytes())
    else:
        h.update(ref.encode())
    return h.hexdigest()[:16]


def preprocessing_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_table(rows: pa.Table, embeddings: np.ndarray, status: np.ndarray, error: np.ndarray,
                fill_fraction: np.ndarray, stats: dict) -> pa.Table:
    """Store rows of one part: the tile columns of the tile-table ``rows`` and the results."""

    ok = status == "ok"
    dim = embeddings.shape[1]
    flat = pa.array(np.nan_to_num(embeddings, nan=0.0).astype(np.float16).reshape(-1), pa.float16())
    emb = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(~ok))
    if "datetime" in rows.column_names:  # the map's own column (a STAC item's datetime)
        when = rows.column("datetime").cast(pa.timestamp("s", tz="UTC"))
    else:
        dates = {u: acquired(u) for u in set(rows.column("scene").to_pylist())}
        when = pa.array([dates[u] for u in rows.column("scene").to_pylist()], pa.timestamp("s", tz="UTC"))
    n = rows.num_rows
    cols = {c: rows.column(c) for c in TILE_COLUMNS}
    cols.update(
        {c: rows.column(c) if c in rows.column_names else pa.nulls(n, pa.string()) for c in ("item_id", "collection")},
        **stat_columns(stats, fill_fraction, status, error),
        datetime=when,
        embedding=emb,
        stats_reflectance=pa.array(np.asarray(stats.get("stats_reflectance", np.zeros(n, bool)), bool)),
    )
    schema = store_schema(dim)
    return pa.table({f.name: cols[f.name] for f in schema}, schema=schema)


def zorder(table: pa.Table) -> np.ndarray:
    """Row order along a Z-order (Morton) curve of the tile centres (rows without a
    geometry last, in their order)."""
    bb = table.column("bbox").combine_chunks()
    x = (np.asarray(bb.field("xmin").to_numpy(zero_copy_only=False), float)
         + np.asarray(bb.field("xmax").to_numpy(zero_copy_only=False), float)) / 2
    y = (np.asarray(bb.field("ymin").to_numpy(zero_copy_only=False), float)
         + np.asarray(bb.field("ymax").to_numpy(zero_copy_only=False), float)) / 2
    good = np.isfinite(x) & np.isfinite(y)
    key = np.full(len(x), np.iinfo(np.uint64).max, np.uint64)
    if good.any():
        qx = np.clip(((x[good] + 180.0) / 360.0 * 65535).astype(np.uint64), 0, 65535)
        qy = np.clip(((y[good] + 90.0) / 180.0 * 65535).astype(np.uint64), 0, 65535)
        key[good] = _interleave(qx) | (_interleave(qy) << np.uint64(1))
    return np.argsort(key, kind="stable")


def _interleave(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64)
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def write_part(table: pa.Table, uri: str, meta: dict) -> None:
    """One store part: rows in Z-order, row groups of ``ROW_GROUP`` rows (whole object or nothing)."""
    import pyarrow.parquet as pq

    table = table.take(pa.array(zorder(table)))
    bbox = None
    ok = table.column("geometry").is_valid()
    if pa.compute.any(ok).as_py():
        bb = table.filter(ok).column("bbox").combine_chunks()
        bbox = [float(np.min(bb.field("xmin"))), float(np.min(bb.field("ymin"))),
                float(np.max(bb.field("xmax"))), float(np.max(bb.field("ymax")))]
    md = dict(table.schema.metadata or {})
    md.update(schema_metadata(table.schema))
    md[b"geo"] = json.dumps(geo_metadata(bbox)).encode()
    md[META_KEY] = json.dumps(meta).encode()
    buf = io.BytesIO()
    pq.write_table(table.cast(documented(table.schema)).replace_schema_metadata(md), buf, compression="zstd",
                   row_group_size=ROW_GROUP)
    storage.write_bytes(uri, buf.getvalue())


def part_files(uri: str) -> list[str]:
    """The store's parts at ``uri`` (its ``_`` and ``.`` folders and files aside), sorted."""
    return sorted(u for name, u in storage.files_by_name(uri).items()
                  if name.endswith(".parquet") and "/_" not in "/" + name and "/." not in "/" + name)


def beside_map(out: str) -> str:
    """Where a map at ``out`` keeps its store: ``out/_embeddings``, or ``out/embeddings`` for a
    map that already has one there (made before the '_' folder: its runs go on adding to it)."""
    legacy = storage.join(out, LEGACY_FOLDER)
    return legacy if part_files(legacy) else storage.join(out, FOLDER)


def locate(uri: str) -> str:
    """The store a user names: the store's own folder, or a map folder holding one
    (``_embeddings``, or ``embeddings`` in maps made before it)."""
    for sub in (FOLDER, LEGACY_FOLDER):
        if part_files(storage.join(uri, sub)):
            return storage.join(uri, sub)
    return uri


def read_meta(uri: str) -> dict:
    """The store's metadata (from its first part); a clear error when there is no store.
    ``uri``: the store, or a map folder holding one (``locate``)."""
    import pyarrow.parquet as pq

    uri = locate(uri)
    files = part_files(uri) if storage.exists(uri) or storage.is_prefix(uri) else []
    if not files:
        raise InputError(f"There is no embedding store at {uri} (no parts).",
                         "build one with landcover map --store or landcover embed --scenes.")
    fs, path = storage.arrow_filesystem(files[0])
    md = pq.read_schema(path, filesystem=fs).metadata or {}
    if META_KEY not in md:
        raise InputError(f"{uri} is not an embedding store (no {META_KEY.decode()} metadata).",
                         "give the folder written by landcover map --store or landcover embed --scenes.")
    return json.loads(md[META_KEY])


def check_same(existing: dict, new: dict, where: str) -> None:
    """A store never mixes two backbones or two preprocessings."""
    for key, what in (("backbone", "backbone"), ("weights_hash", "backbone weights"),
                      ("preprocessing_hash", "preprocessing (bands, scaling, GSD, tile and input size)")):
        if existing.get(key) != new.get(key):
            raise InputError(f"The embedding store {where} holds tiles made with another {what} "
                             f"({existing.get(key)} there, {new.get(key)} now): a store never mixes them.",
                             "write to a new store (--out), or map with the settings the store was made with.")


def read(uri: str, columns: list[str] | None = None, bbox: list[float] | None = None) -> pa.Table:
    """The store's rows (some columns), optionally only the tiles whose bbox intersects
    ``bbox`` (W, S, E, N in lon/lat; row groups outside it are skipped by their statistics).
    ``uri``: the store, or a map folder holding one (``locate``)."""
    import pyarrow.dataset as pads

    uri = locate(uri)
    files = part_files(uri)
    if not files:
        read_meta(uri)  # raises the clear error
    fs, _ = storage.arrow_filesystem(files[0])
    ds = pads.dataset([storage.arrow_filesystem(f)[1] for f in files], filesystem=fs, format="parquet")
    return ds.to_table(columns=columns, filter=_bbox_filter(bbox) if bbox is not None else None)


def _bbox_filter(bbox):
    import pyarrow.compute as pc

    w, s, e, n = bbox
    return ((pc.field("bbox", "xmin") <= e) & (pc.field("bbox", "xmax") >= w)
            & (pc.field("bbox", "ymin") <= n) & (pc.field("bbox", "ymax") >= s))


def read_one(uri: str, bbox: list[float] | None = None, columns: list[str] | None = None) -> pa.Table:
    """One store part (only the tiles whose bbox meets ``bbox``, row groups outside it skipped)."""
    import pyarrow.dataset as pads

    fs, path = storage.arrow_filesystem(uri)
    ds = pads.dataset(path, filesystem=fs, format="parquet")
    return ds.to_table(columns=columns, filter=_bbox_filter(bbox) if bbox is not None else None)


def embeddings_of(table: pa.Table) -> np.ndarray:
    """(N, D) float32 of a table's (non-null) ``embedding`` column."""
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    return np.asarray(col.values.to_numpy(zero_copy_only=False), np.float32).reshape(-1, dim)


def stats_of(table: pa.Table) -> dict:
    """The spectral statistics of store rows as the arrays ``outputs.build_table`` takes."""

    n = table.num_rows
    out = {"band_mean": np.full((n, max_stats), np.nan, np.float32), "band_std": np.full((n, max_stats), np.nan, np.float32),
           "n_stats": np.zeros(n, np.int8), "ood": np.full(n, np.nan, np.float32)}
    for name in ("band_mean", "band_std"):
        col = table.column(name).combine_chunks()
        lengths = np.asarray(col.value_lengths().fill_null(0).to_numpy(zero_copy_only=False), np.int64)
        rows = np.repeat(np.arange(n), lengths)
        pos = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[name][rows, pos] = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32)
        out["n_stats"] = lengths.astype(np.int8)
    for name in ("ndvi", "ndwi", *CLOUD_COLUMNS):  # cloud shares: not in stores older than them
        if name in table.column_names:
            out[name] = np.asarray(table.column(name).to_numpy(zero_copy_only=False), np.float32)
    # statistics in reflectance (stores older than the column: unknown, so no spectral prior)
    out["stats_reflectance"] = (np.asarray(table.column("stats_reflectance").fill_null(False).to_numpy(
        zero_copy_only=False), bool) if "stats_reflectance" in table.column_names else np.zeros(n, bool))
    return out

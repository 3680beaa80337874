"""``landcover export-tiles``: the labelled tiles of an embedding store as an image folder,
their windows read from the scenes exactly as the map read them.

The other way to adapt a model to an area (beside a head on the store's embeddings) is to
fine-tune the backbone on a few labelled tiles. That needs their pixels: this module
re-plans each tile's scene with the store's recorded map settings (bands, scaling, sensor,
grid), reads the tile through the map's own read stage (``reading.read_tiles``: the same
windows, resampling, mirror fill and scaling) and writes ``<out>/<class>/<tile_id>.tif``
(uint16, scaled pixels x 10,000, georeferenced in the scene's CRS), the folder
``landcover finetune --data`` reads with its defaults. ``training_tiles.parquet`` beside
the class folders names the tiles; ``finetune`` copies it into its model directory, so
``landcover assess --exclude-training`` works for fine-tuned models too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from raylib.config import MapConfig
from raylib.errors import ConfigError, InputError
from raylib.formats import embstore
from raylib.io import storage
from raylib.models.default import default_model_dir
from raylib.models.model_dir import LandcoverModel
from raylib.pipelines.common.labelled_tiles import labelled_tiles, map_settings
from raylib.pipelines.common.planning import plan_scene, resolve_grid
from raylib.raster.patches import TRAINING_TILES
from raylib.raster.reading import read_tiles

SCALE = 10000.0  # pixels are written as uint16 x this: finetune's default divisor for non-uint8 files
MARKER = "_export.json"  # the export's summary, written last: marks a complete export folder
COLUMNS = [*embstore.TILE_COLUMNS, "status"]


def _map_config(meta: dict, scene: str):

    grid = meta["preprocessing"]["grid"]
    model = meta.get("model_uri")
    if model and not storage.parse(model).is_s3 and not Path(model).exists():
        if meta.get("backbone") != "default":
            raise InputError(f"The store was made with model {model}, which is not at hand.",
                             "copy that model directory back to its path (the read settings are in it).")
        model = default_model_dir()  # the built-in model, built again on this machine
    return MapConfig(scenes=[scene], out=".", model=model, tile_size=grid["tile_size"], stride=grid["stride"],
                     gsd=grid["gsd"] if grid["gsd"] is not None else "native",
                     max_fill_fraction=meta["preprocessing"].get("max_fill_fraction", 0.9),
                     **{k: v for k, v in map_settings(meta).items() if v is not None})


def read_store_tiles(meta: dict, table, rows: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Pixels (N, C, T, T) float32 of the store rows ``rows`` (of a store with metadata
    ``meta``), as the map's model saw them, and per tile its georeferencing (crs,
    transform). A scene that moved or changed is an error naming it."""
    col = {c: table.column(c).to_pylist() for c in COLUMNS}
    pixels, geo = None, [None] * len(rows)
    by_scene: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_scene.setdefault(col["scene"][int(r)], []).append(i)
    for scene, members in by_scene.items():
        cfg = _map_config(meta, scene)
        manifest = LandcoverModel.read_manifest(cfg.model)
        grid = resolve_grid(cfg, manifest)
        plan = plan_scene(scene, cfg, manifest, grid)
        if plan.failure:
            raise InputError(f"Scene {scene} of the store cannot be read now ({plan.failure[1]}).",
                             "put the scene back where the store found it.")
        n_cols = len(plan.layout.col_offs)
        local = [int(col["grid_row"][int(rows[i])]) * n_cols + int(col["grid_col"][int(rows[i])]) for i in members]
        wins = plan.layout.windows()
        for i, k in zip(members, local):
            r = int(rows[i])
            if k >= len(wins) or (wins["row_off"][k], wins["col_off"][k]) != (col["row_off"][r], col["col_off"][r]):
                raise InputError(f"Tile {col['tile_id'][r]} is not where the store put it in {scene}: the scene or "
                                 "the store's settings changed.", "build the store again from the scenes as they are.")
        spec = plan.read_spec(grid.tile_size, cfg.max_fill_fraction)
        out = read_tiles({"spec": [spec] * len(local), "base": [0] * len(local), "lo": local,
                          "hi": [k + 1 for k in local]}, cfg.read_timeout, cfg.read_retries)
        bad = [col["tile_id"][int(rows[members[j]])] for j in np.flatnonzero(out["status"] != "ok")]
        if bad:
            raise InputError(f"{len(bad)} labelled tile(s) of {scene} could not be read now (e.g. {bad[0]}: "
                             f"{out['error'][np.flatnonzero(out['status'] != 'ok')[0]]}).",
                             "check the scene, or leave those tiles out of the labels.")
        if pixels is None:
            pixels = np.zeros((len(rows), *out["pixels"].shape[1:]), np.float32)
        pixels[members] = out["pixels"]
        a, b, c, d, e, f = plan.info.transform[:6]
        th, tw = plan.layout.tile
        for i in members:
            r = int(rows[i])
            x0, y0 = a * col["col_off"][r] + b * col["row_off"][r] + c, d * col["col_off"][r] + e * col["row_off"][r] + f
            sx, sy = tw / grid.tile_size, th / grid.tile_size  # native pixels per output pixel
            geo[i] = {"crs": plan.info.crs, "transform": (a * sx, b * sy, x0, d * sx, e * sy, y0)}
    return pixels, geo


def export_tiles(cfg, argv: list[str] | None = None) -> dict:
    """Write the drawn labelled tiles of a store as ``<out>/<class>/<tile_id>.tif``."""
    from affine import Affine
    from rasterio.io import MemoryFile

    t0 = time.time()
    storage.check_bucket(cfg.out)
    if storage.check_own_folder(cfg.out, MARKER, "a folder of exported tiles") and not cfg.overwrite:
        raise ConfigError(f"{cfg.out} already holds exported tiles.", "pass --overwrite, or choose another --out.")
    lt = labelled_tiles(cfg, columns=COLUMNS)
    rows = lt.rows[lt.train]
    pixels, geo = read_store_tiles(lt.meta, lt.table, rows)
    storage.clear_own_folder(cfg.out, MARKER, "a folder of exported tiles")  # checked above; written from here
    channels = lt.meta["preprocessing"]["model_bands"].get("channels") or []
    ids = lt.tile_ids(lt.train)
    for i, (tid, y) in enumerate(zip(ids, lt.y[lt.train])):
        data = np.clip(np.rint(pixels[i] * SCALE), 0, 65535).astype(np.uint16)
        with MemoryFile() as mf:
            with mf.open(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                         dtype="uint16", crs=geo[i]["crs"], transform=Affine(*geo[i]["transform"]),
                         compress="deflate") as ds:
                ds.write(data)
                for b, name in enumerate(channels[:data.shape[0]], start=1):
                    ds.set_band_description(b, name)
            storage.write_bytes(storage.join(cfg.out, lt.classes[int(y)], f"{tid}.tif"), mf.read())
    storage.write_bytes(storage.join(cfg.out, TRAINING_TILES), lt.training_tiles_parquet())
    summary = {"out": cfg.out, "tiles": len(ids), "labelled_tiles": lt.counts, "not_used": lt.unused,
               "embeddings": cfg.embeddings, "map_settings": map_settings(lt.meta),
               "pixel_scale": SCALE, "seconds": round(time.time() - t0, 1)}
    storage.write_bytes(storage.join(cfg.out, MARKER), json.dumps(summary, indent=2).encode())  # written last
    return summary

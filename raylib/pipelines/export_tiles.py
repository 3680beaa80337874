"""``landcover export-tiles``: the labelled tiles of an embedding store as an image folder,
their windows read from the scenes exactly as the map read them.

The other way to adapt a model to an area (beside a head on the store's embeddings) is to
fine-tune the backbone on a few labelled tiles. That needs their pixels: this module
reads the drawn tiles again from their scenes as the map read them
(``common.store_tiles``) and writes ``<out>/<class>/<tile_id>.tif``
(uint16, scaled pixels x 10,000, georeferenced in the scene's CRS), the folder
``landcover finetune --data`` reads with its defaults. ``training_tiles.parquet`` beside
the class folders names the tiles; ``finetune`` copies it into its model directory, so
``landcover assess --exclude-training`` works for fine-tuned models too.
"""

from __future__ import annotations

import json
import time

import numpy as np

from raylib.errors import ConfigError
from raylib.io import storage
from raylib.pipelines.common.labelled_tiles import labelled_tiles, map_settings
from raylib.pipelines.common.store_tiles import COLUMNS, read_store_tiles
from raylib.raster.patches import TRAINING_TILES

SCALE = 10000.0  # pixels are written as uint16 x this: finetune's default divisor for non-uint8 files
MARKER = "_export.json"  # the export's summary, written last: marks a complete export folder


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
    pixels, geo, _ = read_store_tiles(lt.meta, lt.table, rows)
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
               "embeddings": cfg.store, "map_settings": map_settings(lt.meta),
               "pixel_scale": SCALE, "seconds": round(time.time() - t0, 1)}
    storage.write_bytes(storage.join(cfg.out, MARKER), json.dumps(summary, indent=2).encode())  # written last
    return summary

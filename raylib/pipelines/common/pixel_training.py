"""``train-head --pixels``: a pixel classifier of the drawn tiles' spectral bands.

The drawn tiles are read again from their scenes as the map read them
(``common.store_tiles``), each tile's statistics bands turned into per-pixel features
(``bands.pixel_features``: every ``STRIDE``-th pixel, texture over ``WINDOW`` pixels). Each pixel's label: with a class
raster its own (the raster reprojected onto the tile's grid, codes through the crosswalk;
pixels of a class the tile head has no tiles of, nodata and unmapped codes left out);
with points/polygons or a CSV the tile's label.
"""

from __future__ import annotations

import numpy as np

from raylib.errors import InputError
from raylib.eval import reference
from raylib.models.pixel_head import STRIDE, WINDOW, PixelHead, fit_pixel_head
from raylib.pipelines.common.store_tiles import read_store_tiles
from raylib.raster.bands import pixel_feature_count
from raylib.raster.reading import PixelFn


def train_pixel_head(cfg, lt, used: np.ndarray, n_bands: int) -> tuple[PixelHead, dict]:
    """(the pixel classifier, what it was trained on) for the drawn tiles ``lt.train`` of a
    store; ``used``: the tile head's classes (indices into ``lt.classes``), in its order;
    ``n_bands``: the store's statistics bands (``TileFeatures.n_bands``)."""
    rows = lt.rows[lt.train]
    if n_bands < 1:
        raise InputError(f"The store {cfg.store} has no per-tile spectral statistics, which a pixel "
                         "classifier reads.", "build the store again with this version (landcover map --store).")
    tile = int(lt.meta["preprocessing"]["grid"]["tile_size"])
    side = len(range(0, tile, STRIDE))
    width = pixel_feature_count(n_bands, WINDOW)
    fn = PixelFn(lambda f: f.reshape(len(f), -1), side * side * width, n_bands, STRIDE, WINDOW)
    _, geo, pixel_out = read_store_tiles(lt.meta, lt.table, rows, fn)
    feats = pixel_out.reshape(len(rows), side * side, width)
    raster = not cfg.labels.lower().endswith(".csv") and not reference.is_vector(cfg.labels)
    if raster:  # the classes of raster labels are the crosswalk's groups, in its order
        full = reference.raster_pixel_groups(cfg.labels, reference.load_crosswalk(cfg.crosswalk), geo, (tile, tile))
        groups = full[:, ::STRIDE, ::STRIDE].reshape(len(rows), -1)
    else:
        groups = np.repeat(lt.y[lt.train][:, None], side * side, axis=1)
    pos = np.full(len(lt.classes), -1)
    pos[used] = np.arange(len(used))  # class index -> the head's class position
    y = np.where(groups >= 0, pos[np.maximum(groups, 0)], -1).ravel()
    X = feats.reshape(-1, width)
    keep = (y >= 0) & ~np.isnan(X).any(axis=1)
    if len(np.unique(y[keep])) < 2:
        raise InputError(f"The drawn tiles' pixels hold {len(np.unique(y[keep]))} labelled class(es); a pixel "
                         "classifier needs at least 2.", "label tiles of at least two classes.")
    head = fit_pixel_head(X[keep], y[keep], n_bands, STRIDE, WINDOW, cfg.seed)
    counts = np.bincount(y[keep], minlength=len(used))
    return head, {"bands": n_bands, "stride": STRIDE, "window": WINDOW, "training_pixels": int(keep.sum()),
                  "pixels_per_class": {lt.classes[c]: int(k) for c, k in zip(used, counts)},
                  "labels": "pixel by pixel from the class raster" if raster else
                            "each tile's label for all its pixels"}

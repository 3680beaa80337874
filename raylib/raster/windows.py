"""Windowed reads of a scene: one tile's window, a grid row of tiles in one read, and the
whole scene decimated (thumbnails, statistics)."""

from __future__ import annotations

import math

import numpy as np

from raylib.raster.tiling import window_box


def _read(ds, bands: list[int], window, out_shape: tuple[int, int], resampled: bool, categorical: int) -> np.ndarray:
    """``ds.read`` of ``bands`` into ``out_shape``: bilinear when ``resampled``, except the
    last ``categorical`` bands (class codes: a cloud mask), always nearest."""
    from rasterio.enums import Resampling

    if not resampled or not categorical:
        return ds.read(bands, window=window, out_shape=(len(bands), *out_shape),
                       resampling=Resampling.bilinear if resampled else Resampling.nearest)
    cont, cat = bands[:-categorical], bands[-categorical:]
    a = ds.read(cont, window=window, out_shape=(len(cont), *out_shape), resampling=Resampling.bilinear)
    b = ds.read(cat, window=window, out_shape=(len(cat), *out_shape), resampling=Resampling.nearest)
    return np.concatenate([a, b.astype(a.dtype)])


def read_window(ds, row_off: int, col_off: int, height: int, width: int, native_tile: tuple[int, int],
                tile_size: int, bands: list[int], categorical: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Read one tile, resampled to ``tile_size`` and zero-padded at scene edges (the last
    ``categorical`` bands: nearest).

    Returns ``(pixels (C, T, T) in the file's dtype, inside (T, T) bool)`` where ``inside``
    marks pixels that lie in the scene (False for padding).
    """
    from rasterio.windows import Window

    th, tw = native_tile
    oh = max(1, min(tile_size, round(height * tile_size / th)))
    ow = max(1, min(tile_size, round(width * tile_size / tw)))
    data = _read(ds, bands, Window(col_off, row_off, width, height), (oh, ow), (th, tw) != (tile_size, tile_size),
                 categorical)
    out = np.zeros((len(bands), tile_size, tile_size), dtype=data.dtype)
    out[:, :oh, :ow] = data
    inside = np.zeros((tile_size, tile_size), dtype=bool)
    inside[:oh, :ow] = True
    return out, inside


def row_segments(wins: np.ndarray) -> list[np.ndarray]:
    """Split ``Layout.windows`` rows (row-major) into runs of adjacent tiles of one grid row
    each (an AOI may keep runs with gaps between them)."""
    if not len(wins):
        return []
    cuts = np.flatnonzero((np.diff(wins["grid_row"]) != 0) | (np.diff(wins["grid_col"]) != 1)) + 1
    return np.split(wins, cuts)


def row_aligned(wins: np.ndarray, native_tile: tuple[int, int], tile_size: int) -> bool:
    """True when the tiles of one grid row start on whole output pixels of their common
    bounding window (always for non-overlapping grids and for native-resolution grids), so
    that one resampled read of the window equals the tiles side by side."""
    return not ((wins["col_off"] - wins["col_off"][0]) * tile_size % native_tile[1]).any()


def read_row(ds, wins: np.ndarray, native_tile: tuple[int, int], tile_size: int,
             bands: list[int], categorical: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiles ``wins`` (one grid row, ascending columns, ``row_aligned``) in ONE read of
    the bounding window of their full-width tiles, resampled once and cut into tiles (a
    tile clipped by the scene's right edge is read on its own, so that the resampling ratio
    is exactly the per-tile one). The same pixels as ``read_window`` per tile (GDAL's
    resampled window reads already look past the window's edges), for a fraction of the
    per-read cost.

    Returns ``(pixels (N, C, T, T) in the file's dtype, inside (N, T, T) bool)``."""
    from rasterio.windows import Window

    th, tw = native_tile
    n = len(wins)
    full = np.flatnonzero(wins["width"] == tw)
    out = inside = None
    if len(full):
        r0, h = int(wins["row_off"][0]), int(wins["height"][0])
        c0, c1 = int(wins["col_off"][full[0]]), int(wins["col_off"][full[-1]]) + tw
        oh = max(1, min(tile_size, round(h * tile_size / th)))
        ow = (c1 - c0) * tile_size // tw
        data = _read(ds, bands, Window(c0, r0, c1 - c0, h), (oh, ow), (th, tw) != (tile_size, tile_size),
                     categorical)
        out = np.zeros((n, len(bands), tile_size, tile_size), dtype=data.dtype)
        inside = np.zeros((n, tile_size, tile_size), dtype=bool)
        for k, x in zip(full.tolist(), ((wins["col_off"][full] - c0) * tile_size // tw).tolist()):
            out[k, :, :oh, :] = data[:, :, x:x + tile_size]
            inside[k, :oh, :] = True
    for k in np.flatnonzero(wins["width"] != tw).tolist():  # clipped by the right edge
        px, ins = read_window(ds, *window_box(wins[k]), native_tile, tile_size, bands, categorical)
        if out is None:
            out = np.zeros((n, len(bands), tile_size, tile_size), dtype=px.dtype)
            inside = np.zeros((n, tile_size, tile_size), dtype=bool)
        out[k], inside[k] = px, ins
    return out, inside


def decimated_read(ds, bands: list[int], max_side: int = 1024, fill: float | None = None) -> np.ndarray:
    """The whole scene at reduced resolution: every ``f``-th pixel, ``f`` chosen so the
    longer side is at most ``max_side``. Uses the overviews when the file has them; else
    reads block-aligned strips at full resolution and subsamples them (GDAL's own
    decimated read of a file without overviews issues one request per row: minutes on
    S3). Blocks that cannot be read (a truncated or damaged file) are set to ``fill`` (0
    when None); if nothing can be read, the first error is raised."""
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    f = max(1, math.ceil(max(ds.width, ds.height) / max_side))
    if f > 1 and ds.overviews(bands[0]):
        return ds.read(bands, out_shape=(len(bands), max(1, ds.height // f), max(1, ds.width // f)),
                       resampling=Resampling.nearest)
    rows = np.arange(0, ds.height, f)
    cols = np.arange(0, ds.width, f)
    out = np.full((len(bands), len(rows), len(cols)), 0 if fill is None else fill, dtype=ds.dtypes[0])
    bh, bw = ds.block_shapes[0] if ds.block_shapes else (256, 256)
    step = max(bh, 256 // max(1, bh) * bh)  # whole blocks, at least 256 rows
    first_error, n_ok = None, 0
    for r0 in range(0, ds.height, step):
        r1 = min(ds.height, r0 + step)
        sel = (rows >= r0) & (rows < r1)
        if not sel.any():
            continue
        pieces = [(0, ds.width)]
        for attempt in range(2):  # the whole strip; if it fails, block by block across
            ok = True
            for c0, c1 in pieces:
                csel = (cols >= c0) & (cols < c1)
                if not csel.any():  # a block column between two sampled columns
                    continue
                try:
                    data = ds.read(bands, window=Window(c0, r0, c1 - c0, r1 - r0))
                    ri, ci = np.flatnonzero(sel), np.flatnonzero(csel)  # runs of every f-th pixel: slices
                    out[:, ri[0]:ri[-1] + 1, ci[0]:ci[-1] + 1] = data[:, rows[ri[0]] - r0::f, cols[ci[0]] - c0::f]
                    n_ok += 1
                except Exception as exc:
                    first_error = first_error or exc
                    ok = False
            if ok or attempt:
                break
            pieces = [(c, min(ds.width, c + bw)) for c in range(0, ds.width, bw)]
    if not n_ok:
        raise first_error
    return out

"""Scene -> tile grid -> windowed reads.

A grid is defined by the model input ``tile_size`` (pixels), a ``stride`` (pixels, same
units) and an optional target ground sampling distance ``gsd`` (metres/pixel).  With a
``gsd`` the native window of one tile is ``round(tile_size * gsd / native_res)`` pixels
and is resampled to ``tile_size`` on read; without one, windows are ``tile_size`` native
pixels.  Windows are recorded in *native* pixels of the scene (integers), so
``rasterio.windows.Window(col_off, row_off, width, height)`` reads exactly that tile.

Edge tiles are kept: they are clipped to the scene (``width``/``height`` smaller than
the nominal window, ``edge=True``) and zero-padded to ``tile_size`` on read, so with
``stride == tile_size`` every scene pixel is covered exactly once.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

import numpy as np

from raylib.errors import InputError
from raylib.io import storage
from raylib.io.resilience import classify

# --------------------------------------------------------------------------- grid spec


@dataclass(frozen=True)
class GridSpec:
    tile_size: int
    stride: int
    gsd: float | None = None  # None: native resolution
    # a ground grid: tiles on lines at whole multiples of the grid step in the scene's projected
    # CRS, the same for every scene and date (``ground_window``, ``ground_tile_id``)
    ground: bool = False

    def __post_init__(self):
        if self.tile_size <= 0 or self.stride <= 0:
            raise InputError(f"tile_size and stride must be positive (got {self.tile_size}, {self.stride}).")
        if self.stride > self.tile_size:
            raise InputError(
                f"stride {self.stride} is larger than tile_size {self.tile_size}: pixels would be skipped.",
                "use a stride <= tile_size.",
            )

    def key(self) -> str:
        return f"t{self.tile_size}s{self.stride}g{self.gsd if self.gsd else 'native'}" + ("-ground" if self.ground else "")

    def as_dict(self) -> dict:
        """The grid as the map's metadata and the run's records hold it (``ground`` only when set)."""
        return {"tile_size": self.tile_size, "stride": self.stride, "gsd": self.gsd,
                **({"ground": True} if self.ground else {})}


@dataclass(frozen=True)
class SceneInfo:
    uri: str
    width: int
    height: int
    count: int
    dtype: str
    crs: str  # "EPSG:xxxx" or WKT
    transform: tuple[float, ...]  # affine a, b, c, d, e, f
    res: tuple[float, float]
    nodata: float | None
    is_projected: bool
    # the tiles an AOI keeps, as runs (grid_row, first grid_col, last grid_col + 1); None: all
    runs: tuple[tuple[int, int, int], ...] | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "SceneInfo":
        """From ``dict(info.__dict__)`` after a JSON round trip (the scene's record)."""
        runs = d.get("runs")
        return cls(**{**d, "transform": tuple(d["transform"]), "res": tuple(d["res"]),
                      "runs": tuple(tuple(int(v) for v in r) for r in runs) if runs is not None else None})

    def keeping(self, keep: np.ndarray, n_cols: int) -> "SceneInfo":
        """This scene with only the tiles ``keep`` (a bool per tile of its full grid, row-major)."""
        import dataclasses

        runs = []
        for r, row in enumerate(np.asarray(keep, bool).reshape(-1, n_cols)):
            edges = np.flatnonzero(np.diff(np.r_[0, row.astype(np.int8), 0]))
            runs += [(r, int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
        return dataclasses.replace(self, runs=tuple(runs))


def _explain_open_failure(uri: str, exc: Exception) -> InputError:
    """Why a scene cannot be opened, with the fix."""
    loc = storage.parse(uri)
    if loc.is_s3:
        if not storage.exists(uri):  # raises a clear StorageError when unreachable/denied
            return InputError(f"Scene {uri} does not exist.", "check the key; list the prefix to see what is there.",
                              reason="not_found")
    elif not __import__("os").path.exists(loc.key):
        return InputError(f"Scene {uri} does not exist.", "check the path.", reason="not_found")

    reason, _ = classify(exc)
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if reason in ("read_error", "permission_denied", "timeout"):
        return InputError(f"Scene {uri} cannot be read ({msg}).",
                          "check access to it (credentials, network, permissions).", reason=reason)
    return InputError(
        f"Scene {uri} is not a readable raster ({msg}).",
        "give a GeoTIFF/COG; remove non-raster or damaged files from the input.", reason="corrupt",
    )


def open_scene(uri: str, gdal_path: str | None = None) -> SceneInfo:
    """Open a scene's header (no pixels read) and describe it (``gdal_path``: what GDAL
    opens for it, when not the file at ``uri``: a STAC item's VRT)."""
    import rasterio

    loc = storage.parse(uri)
    try:
        with storage.rasterio_env(), rasterio.open(gdal_path or loc.gdal_path) as ds:
            crs = ds.crs
            if crs is None:
                raise InputError(f"Scene {uri} has no CRS.", "georeference it (gdal_edit.py -a_srs) before mapping.",
                                 reason="unsupported")
            epsg = crs.to_epsg()
            return SceneInfo(
                uri=loc.uri,
                width=ds.width,
                height=ds.height,
                count=ds.count,
                dtype=ds.dtypes[0],
                crs=f"EPSG:{epsg}" if epsg else crs.to_wkt(),
                transform=tuple(ds.transform)[:6],
                res=(abs(ds.transform.a), abs(ds.transform.e)),
                nodata=ds.nodata,
                is_projected=bool(crs.is_projected),
            )
    except InputError:
        raise
    except Exception as exc:  # rasterio.errors.RasterioIOError and friends
        raise _explain_open_failure(uri, exc) from None


# --------------------------------------------------------------------------- windows


def centre_lonlat(info: SceneInfo) -> tuple[float, float] | None:
    """The scene centre in longitude/latitude (None when the scene has no CRS)."""
    from rasterio.warp import transform as warp_transform

    if not info.crs:
        return None
    a, b, c, d, e, f = info.transform
    x = a * info.width / 2 + b * info.height / 2 + c
    y = d * info.width / 2 + e * info.height / 2 + f
    lon, lat = warp_transform(info.crs, "EPSG:4326", [x], [y])
    return float(lon[0]), float(lat[0])


def native_tile_size(info: SceneInfo, grid: GridSpec) -> tuple[int, int]:
    """Native pixels (rows, cols) that one tile spans."""
    if grid.gsd is None:
        return grid.tile_size, grid.tile_size
    if not info.is_projected:
        raise InputError(
            f"Scene {info.uri} is in a geographic CRS ({info.crs}); a gsd in metres cannot be applied.",
            "reproject the scene to a projected CRS (e.g. UTM), or set gsd: native.", reason="unsupported",
        )
    ry, rx = info.res[1], info.res[0]
    return max(1, round(grid.tile_size * grid.gsd / ry)), max(1, round(grid.tile_size * grid.gsd / rx))


def _offsets(length: int, tile: int, stride: int) -> list[int]:
    """Window starts along one axis: stop after the first window reaching the end."""
    offs, off = [], 0
    while True:
        offs.append(off)
        if off + tile >= length:
            return offs
        off += stride


def tile_id(scene: str, row_off: int, col_off: int, height: int, width: int, grid: GridSpec) -> str:
    """Stable id: the same scene URI, window and grid give the same id on every run."""
    s = f"{scene}|{row_off}|{col_off}|{height}|{width}|{grid.key()}"
    return hashlib.sha1(s.encode()).hexdigest()[:20]


def ground_window(bounds: tuple[float, float, float, float], res: float, grid: GridSpec) -> tuple[float, ...]:
    """The ground grid's window over ``bounds`` (x0, y0, x1, y1 in a projected CRS) at pixel
    size ``res``: its corners on whole multiples of the grid step (``stride`` pixels) and a
    whole number of tiles across, covering the bounds. Returns (x0, y0, x1, y1)."""
    step, span = grid.stride * res, grid.tile_size * res
    bx0, by0, bx1, by1 = bounds
    x0 = math.floor(bx0 / step + 1e-9) * step
    y1 = math.ceil(by1 / step - 1e-9) * step
    cols = max(1, math.ceil((bx1 - x0 - span) / step - 1e-9) + 1)
    rows = max(1, math.ceil((y1 - by0 - span) / step - 1e-9) + 1)
    return x0, y1 - (rows - 1) * step - span, x0 + (cols - 1) * step + span, y1


def ground_tile_id(crs: str, x0: float, y1: float, res: float, grid: GridSpec) -> str:
    """The id of the ground-grid tile whose top-left corner is (x0, y1): the CRS, pixel size,
    tile size, stride and grid position only, whatever scene or date it was read from."""
    step = grid.stride * res
    s = f"ground|{crs}|{res:g}|{grid.tile_size}|{grid.stride}|{round(x0 / step)}|{round(y1 / step)}"
    return hashlib.sha1(s.encode()).hexdigest()[:20]


def _polygon_wkb(xs, ys) -> bytes:
    """WKB (little-endian) of a closed ring polygon."""
    n = len(xs)
    return struct.pack("<BIII", 1, 3, 1, n) + np.column_stack([xs, ys]).astype("<f8").tobytes()


# one tile's window in a scene's native pixels, and its place in the scene's grid
WINDOW = np.dtype([("grid_row", np.int64), ("grid_col", np.int64), ("row_off", np.int64), ("col_off", np.int64),
                   ("height", np.int64), ("width", np.int64)])


def window_box(w) -> tuple[int, int, int, int]:
    """(row_off, col_off, height, width) of one ``WINDOW`` record, as ints."""
    return int(w["row_off"]), int(w["col_off"]), int(w["height"]), int(w["width"])


@dataclass(frozen=True)
class Layout:
    """One scene's tile grid in native pixels: window size, window starts along each axis."""

    height: int
    width: int
    tile: tuple[int, int]  # native (rows, cols) of a full tile
    row_offs: tuple[int, ...]
    col_offs: tuple[int, ...]
    runs: tuple[tuple[int, int, int], ...] | None = None  # the tiles an AOI keeps (``SceneInfo.runs``)

    @property
    def n_tiles(self) -> int:
        if self.runs is not None:
            return sum(b - a for _, a, b in self.runs)
        return len(self.row_offs) * len(self.col_offs)

    def windows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Tiles ``start..stop`` (row-major; of the tiles an AOI keeps, when it keeps some) as
        a ``WINDOW`` array (fields ``grid_row``, ``grid_col``, ``row_off``, ``col_off``,
        ``height``, ``width``); edge windows are clipped to the scene."""
        stop = self.n_tiles if stop is None else stop
        k = np.arange(start, stop, dtype=np.int64)
        out = np.empty(len(k), WINDOW)
        if self.runs is not None:
            runs = np.asarray(self.runs, np.int64).reshape(-1, 3)
            ends = np.cumsum(runs[:, 2] - runs[:, 1])
            at = np.searchsorted(ends, k, side="right")
            out["grid_row"] = runs[at, 0]
            out["grid_col"] = runs[at, 1] + k - (ends[at] - (runs[at, 2] - runs[at, 1]))
        else:
            out["grid_row"], out["grid_col"] = np.divmod(k, len(self.col_offs))
        out["row_off"] = np.asarray(self.row_offs, np.int64)[out["grid_row"]]
        out["col_off"] = np.asarray(self.col_offs, np.int64)[out["grid_col"]]
        out["height"] = np.minimum(self.tile[0], self.height - out["row_off"])
        out["width"] = np.minimum(self.tile[1], self.width - out["col_off"])
        return out

    def to_dict(self) -> dict:
        return {"height": self.height, "width": self.width, "tile": list(self.tile),
                "row_offs": list(self.row_offs), "col_offs": list(self.col_offs),
                **({"runs": [list(r) for r in self.runs]} if self.runs is not None else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        runs = tuple(tuple(r) for r in d["runs"]) if d.get("runs") is not None else None
        return cls(d["height"], d["width"], tuple(d["tile"]), tuple(d["row_offs"]), tuple(d["col_offs"]), runs)


def layout(info: SceneInfo, grid: GridSpec) -> Layout:
    th, tw = native_tile_size(info, grid)
    sh = max(1, round(th * grid.stride / grid.tile_size))
    sw = max(1, round(tw * grid.stride / grid.tile_size))
    return Layout(info.height, info.width, (th, tw), tuple(_offsets(info.height, th, sh)),
                  tuple(_offsets(info.width, tw, sw)), info.runs)


def make_manifest(info: SceneInfo, grid: GridSpec, start: int = 0, stop: int | None = None):
    """The tile manifest of one scene (tiles ``start..stop`` in row-major order) as an
    Arrow table, one row per tile."""
    import pyarrow as pa
    from rasterio.warp import transform as warp_transform

    lay = layout(info, grid)
    arr = lay.windows(start, stop)
    th, tw = lay.tile
    r0, c0, hh, ww = arr["row_off"], arr["col_off"], arr["height"], arr["width"]
    # 4 corners (+ closing) per tile, in native CRS, then to lon/lat (OGC:CRS84 axis order)
    pc = np.stack([c0, c0 + ww, c0 + ww, c0, c0], axis=1).astype(float)
    pr = np.stack([r0, r0, r0 + hh, r0 + hh, r0], axis=1).astype(float)
    a, b, c, d, e, f = info.transform
    x = a * pc + b * pr + c
    y = d * pc + e * pr + f
    if len(arr):
        lon, lat = warp_transform(info.crs, "EPSG:4326", x.ravel().tolist(), y.ravel().tolist())
    else:
        lon, lat = [], []
    lon = np.asarray(lon, float).reshape(x.shape)
    lat = np.asarray(lat, float).reshape(x.shape)
    geoms = [_polygon_wkb(lon[i], lat[i]) for i in range(len(arr))]
    if grid.ground:  # the scene is a VRT on the ground grid (``scene_source``): tiles are whole steps from 0
        ids = [ground_tile_id(info.crs, float(a * cc + c), float(e * r + f), a, grid) for r, cc in zip(r0, c0)]
    else:
        ids = [tile_id(info.uri, int(r), int(cc), int(h), int(w), grid) for (_, _, r, cc, h, w) in arr.tolist()]
    return pa.table(
        {
            "tile_id": pa.array(ids, pa.string()),
            "scene": pa.array([info.uri] * len(arr), pa.string()),
            "row_off": pa.array(r0, pa.int32()),
            "col_off": pa.array(c0, pa.int32()),
            "width": pa.array(ww, pa.int32()),
            "height": pa.array(hh, pa.int32()),
            "grid_row": pa.array(arr["grid_row"], pa.int32()),
            "grid_col": pa.array(arr["grid_col"], pa.int32()),
            "edge": pa.array((hh < th) | (ww < tw)),
            "scene_crs": pa.array([info.crs] * len(arr), pa.string()),
            "geometry": pa.array(geoms, pa.binary()),
            "bbox": pa.StructArray.from_arrays(
                [pa.array(lon.min(1, initial=np.inf)), pa.array(lat.min(1, initial=np.inf)),
                 pa.array(lon.max(1, initial=-np.inf)), pa.array(lat.max(1, initial=-np.inf))],
                names=["xmin", "ymin", "xmax", "ymax"],
            ),
        }
    )


def unreadable_scene_row(uri: str, grid: GridSpec):
    """The one manifest row that stands for a scene whose header cannot be read (no grid
    is known): no window, no geometry, ``grid_row = grid_col = -1``."""
    import pyarrow as pa

    return pa.table({
        "tile_id": pa.array([tile_id(uri, -1, -1, 0, 0, grid)], pa.string()),
        "scene": pa.array([uri], pa.string()),
        **{k: pa.array([0], pa.int32()) for k in ("row_off", "col_off", "width", "height")},
        "grid_row": pa.array([-1], pa.int32()), "grid_col": pa.array([-1], pa.int32()),
        "edge": pa.array([False]), "scene_crs": pa.array([None], pa.string()),
        "geometry": pa.array([None], pa.binary()),
        "bbox": pa.array([None], pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()),
                                             ("xmax", pa.float64()), ("ymax", pa.float64())])),
    })


def grid_shape(info: SceneInfo, grid: GridSpec) -> tuple[int, int]:
    lay = layout(info, grid)
    return len(lay.row_offs), len(lay.col_offs)


# --------------------------------------------------------------------------- reads


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


def label_patches(label_uri: str, size: int, threshold: float = 0.85, nodata: float | None = None,
                  image_nodata_mask: np.ndarray | None = None) -> list[tuple[int, int, int, float]]:
    """Non-overlapping ``size`` px windows of a class raster where one class covers at least
    ``threshold`` of the pixels and no pixel is nodata (in the labels, or in the image mask).

    Returns ``(row_off, col_off, class_value, share)`` per kept window.
    """
    import rasterio

    with storage.rasterio_env(), rasterio.open(storage.parse(label_uri).gdal_path) as ds:
        lab = ds.read(1)
        nd = ds.nodata if nodata is None else nodata
    kept = []
    for r in range(0, lab.shape[0] - size + 1, size):
        for c in range(0, lab.shape[1] - size + 1, size):
            win = lab[r : r + size, c : c + size]
            if nd is not None and (win == nd).any():
                continue
            if image_nodata_mask is not None and image_nodata_mask[r : r + size, c : c + size].any():
                continue
            values, counts = np.unique(win, return_counts=True)
            k = int(counts.argmax())
            share = counts[k] / win.size
            if share >= threshold:
                kept.append((r, c, int(values[k]), float(share)))
    return kept


def acquired(uri: str):
    """The acquisition date a scene's file name tells (Landsat / Sentinel-2 product ids, NAIP
    quarter quads ``m_..._YYYYMMDD``), as a UTC timestamp, or None."""
    import datetime as dt
    import re

    name = storage.basename(uri)
    for pat in (r"_L[12]\w\w_\d{6}_(\d{8})_", r"_MSI(?:L1C|L2A)_(\d{8})T", r"^m_\d{7}_[ns][ew]_\d{2}_\d_(\d{8})"):
        m = re.search(pat, name)
        if m:
            try:
                return dt.datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=dt.timezone.utc)
            except ValueError:
                return None
    return None

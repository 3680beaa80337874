"""A scene's header: size, CRS, transform, resolution and no-data (no pixel read), why it
cannot be opened, where it is, and when it was acquired (from its name)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raylib.errors import InputError
from raylib.io import storage
from raylib.io.resilience import classify


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

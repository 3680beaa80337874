"""An area of interest: the polygons a map is restricted to (``landcover map --aoi``).

Read from GeoJSON (a geometry, feature or feature collection), GeoParquet, GeoPackage or
anything else GDAL reads as vectors, local or ``s3://``, as one (multi)polygon in
longitude/latitude. A STAC search takes its bounding box and keeps the items whose
footprint meets it; planning keeps, of each scene's tiles, those whose footprint meets it
(``tile_runs``), in the scene's own CRS: a scene in another UTM zone tests the same AOI on
its own zone's grid."""

from __future__ import annotations

import functools
import json

import numpy as np

from raylib.errors import InputError
from raylib.io import storage

_FIX = "give polygons as GeoJSON (WGS 84), GeoParquet or GeoPackage."


def read_features(uri: str, what: str = "file"):
    """Every feature of a vector file as a GeoDataFrame in EPSG:4326, empty geometries
    dropped (``what`` names the file in errors)."""
    import geopandas as gpd

    local = storage.parse(uri)
    try:
        if local.uri.lower().endswith((".parquet", ".geoparquet")):
            fs, path = storage.arrow_filesystem(uri)
            with fs.open_input_file(path) as f:
                gdf = gpd.read_parquet(f)
        elif local.uri.lower().endswith((".geojson", ".json")):
            gdf = _geojson(json.loads(storage.read_bytes(uri)))
        else:
            gdf = gpd.read_file(local.gdal_path if local.is_s3 else local.uri)
    except InputError:
        raise
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"Cannot read the {what} {uri} as points/polygons ({msg}).", _FIX) from None
    if gdf.crs is None:
        raise InputError(f"The {what} {uri} has no CRS.", "write the file with its CRS (GeoJSON is WGS 84).")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    return gdf.to_crs(4326)


def _geojson(doc: dict):
    """A GeoJSON geometry, feature or feature collection as a GeoDataFrame (RFC 7946: WGS 84)."""
    import geopandas as gpd

    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        return gpd.GeoDataFrame.from_features(doc["features"], crs=4326)
    if kind == "Feature":
        return gpd.GeoDataFrame.from_features([doc], crs=4326)
    if kind in ("Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "MultiLineString",
                "GeometryCollection"):
        return gpd.GeoDataFrame.from_features([{"type": "Feature", "geometry": doc, "properties": {}}], crs=4326)
    raise InputError(f"The GeoJSON has type {kind!r}, not a geometry, feature or feature collection.", _FIX)


@functools.lru_cache(maxsize=4)
def _load(uri: str, _version: str):
    import shapely

    gdf = read_features(uri, "AOI")
    polys = [g for g in gdf.geometry.values if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polys:
        kinds = sorted({g.geom_type for g in gdf.geometry.values}) or ["nothing"]
        raise InputError(f"The AOI {uri} holds no polygon (it holds {', '.join(kinds)}).",
                         "give the area as polygons.")
    geom = shapely.union_all(shapely.make_valid(np.array(polys, object)))
    w, s, e, n = geom.bounds
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise InputError(f"The AOI {uri} is not in longitude/latitude bounds ({geom.bounds}).",
                         "give it in WGS 84, or with its CRS in the file.")
    return geom


def load(uri: str):
    """The AOI at ``uri`` as one shapely (multi)polygon in longitude/latitude (cached per
    process and file version)."""
    return _load(uri, storage.fingerprint(uri))


def geojson(uri: str) -> dict:
    """The AOI as a GeoJSON geometry (what a STAC search tests item footprints against)."""
    import shapely

    return json.loads(shapely.to_geojson(load(uri)))


def tiles_meeting(geom, crs: str, transform: tuple[float, ...], windows: np.ndarray) -> np.ndarray:
    """Of a scene's tile ``windows`` (``tiling.WINDOW``, native pixels of a scene in ``crs``
    with the affine ``transform``), which meet ``geom`` (lon/lat): a bool per window. The
    AOI is brought into the scene's CRS (densified, so its edges follow the projection)."""
    import shapely
    from pyproj import Transformer

    if not len(windows):
        return np.zeros(0, bool)
    tf = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    w, s, e, n = geom.bounds
    step = max(e - w, n - s) / 256 or 1e-3
    local = shapely.transform(shapely.segmentize(geom, step), lambda x, y: tf.transform(x, y), interleaved=False)
    a, b, c, d, ee, f = transform
    c0, r0 = windows["col_off"].astype(float), windows["row_off"].astype(float)
    c1, r1 = c0 + windows["width"], r0 + windows["height"]
    xs = np.stack([a * c0 + b * r0 + c, a * c1 + b * r1 + c], 1)
    ys = np.stack([d * c0 + ee * r0 + f, d * c1 + ee * r1 + f], 1)
    boxes = shapely.box(xs.min(1), ys.min(1), xs.max(1), ys.max(1))
    shapely.prepare(local)
    return np.asarray(shapely.intersects(local, boxes), bool)

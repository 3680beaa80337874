"""Test STAC catalogs built from the shipped scenes: a window of the README's Landsat scene
split into one COG per band (rio-cogeo), as a static catalog, a stac-geoparquet file, or
items for a STAC API (``rustac serve``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .conftest import LANDSAT

WINDOW = (700, 800, 256, 256)  # row, col, height, width of the Landsat scene (30 m)
ITEM_ID = "LC08_L1TP_224078_20200518_20200518_01_RT"  # the scene's product id: the same sensor preset
BANDS = {"blue": 1, "green": 2, "red": 3}  # the file's bands: B2, B3, B4


def window_profile():
    import rasterio
    from rasterio.windows import Window

    r, c, h, w = WINDOW
    with rasterio.open(LANDSAT) as ds:
        win = Window(c, r, w, h)
        data = ds.read(window=win)
        prof = ds.profile.copy()
        prof.update(width=w, height=h, transform=ds.window_transform(win), driver="GTiff", tiled=False)
        prof.pop("blockxsize", None), prof.pop("blockysize", None)
    return data, prof


def write_scene(folder: Path) -> Path:
    """The same window as one 3-band GeoTIFF (what --scenes maps), named like the scene."""
    import rasterio

    data, prof = window_profile()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ITEM_ID}.TIF"
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return path


def _cog(data: np.ndarray, prof: dict, path: Path, factor: int = 1) -> None:
    """One band as a COG (``factor`` > 1: on a coarser grid, block means)."""
    import rasterio
    from rasterio.io import MemoryFile
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    p = dict(prof, count=1)
    if factor > 1:
        h, w = data.shape[0] // factor, data.shape[1] // factor
        data = data[: h * factor, : w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3)).round()
        data = data.astype(prof["dtype"])
        p.update(width=w, height=h, transform=prof["transform"] @ rasterio.Affine.scale(factor))
    with MemoryFile() as mem:
        with mem.open(**p) as tmp:
            tmp.write(data, 1)
        with mem.open() as src:
            cog_translate(src, str(path), cog_profiles.get("deflate"), quiet=True, in_memory=True)


def item(folder: Path, item_id: str = ITEM_ID, datetime: str = "2020-05-18T13:30:00Z", cloud: float = 5.0,
         coarse_red: bool = False, scale: float | None = None, offset: float | None = None,
         collection: str = "landsat-test", bands: dict | None = None,
         quality: tuple[str, np.ndarray, dict] | None = None, crs: str | None = None,
         origin: tuple[float, float] | None = None) -> dict:
    """An item whose band assets are COGs written into ``folder`` (hrefs relative to the
    item's JSON in ``folder``); ``quality``: a quality asset (key, its pixels on the
    window's grid, more of its STAC fields); ``crs`` and ``origin`` (x, y of its top-left
    corner) place the same pixels elsewhere (another UTM zone)."""
    import rasterio
    from rasterio.warp import transform_bounds

    data, prof = window_profile()
    if crs or origin:
        tf = prof["transform"]
        x, y = origin or (tf.c, tf.f)
        prof.update(crs=rasterio.crs.CRS.from_string(crs or str(prof["crs"])),
                    transform=rasterio.Affine(tf.a, 0, x, 0, tf.e, y))
    folder.mkdir(parents=True, exist_ok=True)
    assets = {}
    for name, b in (bands or BANDS).items():
        href = f"{item_id}_{name}.tif"
        _cog(data[b - 1], prof, folder / href, factor=2 if (coarse_red and name == "red") else 1)
        raster = {"data_type": "uint16", "spatial_resolution": 60.0 if (coarse_red and name == "red") else 30.0}
        if scale is not None:
            raster["scale"] = scale
        if offset is not None:
            raster["offset"] = offset
        assets[name] = {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"], "eo:bands": [{"name": f"B{b + 1}", "common_name": name}],
                        "raster:bands": [raster]}
    if quality is not None:
        key, mask, extra = quality
        href = f"{item_id}_{key}.tif"
        _cog(mask, dict(prof, dtype=str(mask.dtype), nodata=None), folder / href)
        assets[key] = {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "roles": ["data"], **extra}
    assets["thumbnail"] = {"href": f"{item_id}_thumb.png", "type": "image/png", "roles": ["thumbnail"]}
    tf = prof["transform"]
    x0, y1 = tf.c, tf.f
    x1, y0 = x0 + tf.a * prof["width"], y1 + tf.e * prof["height"]
    w, s, e, n = transform_bounds(prof["crs"], "EPSG:4326", x0, y0, x1, y1)
    epsg = prof["crs"].to_epsg()
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": datetime, "eo:cloud_cover": cloud, "proj:epsg": epsg, "platform": "landsat-8"},
        "assets": assets, "links": [],
    }


def static_catalog(folder: Path, collections: dict[str, list[dict]]) -> Path:
    """catalog.json -> <collection>/collection.json -> <collection>/<id>/<id>.json (relative
    links); each item's assets must already be in ``<folder>/<collection>/<id>/`` (``item``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.json").write_text(json.dumps({
        "type": "Catalog", "stac_version": "1.0.0", "id": "test", "description": "test catalog",
        "links": [{"rel": "child", "href": f"./{c}/collection.json"} for c in collections]}))
    for collection, items in collections.items():
        col = folder / collection
        col.mkdir(exist_ok=True)
        links = []
        for it in items:
            links.append({"rel": "item", "href": f"./{it['id']}/{it['id']}.json"})
            (col / it["id"]).mkdir(exist_ok=True)
            (col / it["id"] / f"{it['id']}.json").write_text(json.dumps(it))
        bboxes = np.array([it["bbox"] for it in items])
        (col / "collection.json").write_text(json.dumps({
            "type": "Collection", "stac_version": "1.0.0", "id": collection, "description": "test",
            "license": "other", "links": links,
            "extent": {"spatial": {"bbox": [[*bboxes[:, :2].min(0), *bboxes[:, 2:].max(0)]]},
                       "temporal": {"interval": [[None, None]]}}}))
    return folder / "catalog.json"


def absolute(items: list[dict], folder: Path) -> list[dict]:
    """The items with their assets' hrefs made absolute under ``folder``."""
    out = []
    for it in items:
        it = json.loads(json.dumps(it))
        for a in it["assets"].values():
            a["href"] = str(folder / a["href"])
        out.append(it)
    return out


def geoparquet(items: list[dict], path: Path) -> Path:
    """The items as a stac-geoparquet file (GeoParquet metadata included)."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    to_parquet(parse_stac_items_to_arrow(items), path)
    return path


def scl_mask() -> np.ndarray:
    """A Sentinel-2 SCL-coded mask of the 256 x 256 window, laid on its 64-pixel tiles:
    tiles (0, 0) and (1, 0) cloud (9), tile (0, 1) half cloud shadow (3), tile (2, 0) a
    share 10/64 cloud (8), tile (3, 3) half snow (11); the rest
    vegetation (4)."""
    m = np.full((256, 256), 4, np.uint8)
    m[0:128, 0:64] = 9
    m[0:64, 64:96] = 3
    m[128:138, 0:64] = 8
    m[192:224, 192:256] = 11
    return m


NAIP_DATES = {"20100629": "2010-06-29T17:00:00Z", "20150926": "2015-09-26T17:00:00Z",
              "20200831": "2020-08-31T17:00:00Z"}


def naip_item(folder: Path, date: str, mask: np.ndarray | None = None) -> dict:
    """A STAC item of the shipped NAIP scene of ``date`` (its one 4-band asset, absolute
    href) with, when ``mask`` is given, an SCL-coded quality COG on the scene's grid
    written into ``<folder>/<item id>/`` (``folder``: the collection's, as
    ``static_catalog`` lays it out)."""
    import rasterio
    from rasterio.warp import transform_bounds

    from .conftest import NAIP

    src = Path(str(NAIP).replace("20150926", date))
    with rasterio.open(src) as ds:
        prof = ds.profile.copy()
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    item_id = src.stem
    assets = {"image": {"href": str(src), "type": "image/tiff; application=geotiff", "roles": ["data"],
                        "eo:bands": [{"name": b, "common_name": b} for b in ("red", "green", "blue", "nir")]}}
    if mask is not None:
        (folder / item_id).mkdir(parents=True, exist_ok=True)
        p = dict(prof, count=1, dtype="uint8", nodata=None)
        for k in ("blockxsize", "blockysize", "tiled", "compress", "photometric", "interleave"):
            p.pop(k, None)
        _cog(mask, p, folder / item_id / f"{item_id}_scl.tif")
        assets["scl"] = {"href": f"{item_id}_scl.tif",
                         "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"]}
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "naip-test", "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": NAIP_DATES[date]}, "assets": assets, "links": [],
    }

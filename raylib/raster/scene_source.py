"""What GDAL opens for a scene URI: the file itself (a GeoTIFF/COG, local or ``/vsis3/``),
or a VRT (``stac_vrt``), built once per process and scene version: of a STAC item's band
assets (its JSON, ``landcover map --stac``), and, on a ground grid, of the file's or the
item's bands laid on the grid (``tiling.ground_window``)."""

from __future__ import annotations

import functools
import json

from raylib.errors import InputError
from raylib.io import storage
from raylib.raster import cloud_mask, scenes, stac_vrt, tiling

# bands the per-tile statistics use when an item has them (after the model's channels)
EXTRA_BANDS = ("nir", "swir16")


def is_stac_item(uri: str) -> bool:
    return uri.lower().endswith(".json")


def gdal_path(uri: str, channels: tuple[str, ...] = (), grid: tiling.GridSpec | None = None,
              fill: float | None = None, cloud_asset: str = "none", version: str | None = None) -> str:
    """A GDAL path for the scene: a file's path, or a VRT (``channels``: the band names a
    STAC item's scene reads, in the model's order; ``EXTRA_BANDS`` follow where the item has
    them, then its quality asset, ``cloud_asset``: see ``cloud``). On a ground grid
    (``grid.ground``) the VRT of a file or an item is laid on the ground grid at the grid's
    GSD (``tiling.ground_window``), ``fill`` outside the scene where it has no nodata.
    ``version``: the scene's ``storage.fingerprint`` where the caller knows it (else asked)."""
    ground = grid if grid is not None and grid.ground else None
    if not is_stac_item(uri) and ground is None:
        return storage.parse(uri).gdal_path
    return _vrt(uri, tuple(channels), version or storage.fingerprint(uri), ground, fill, cloud_asset)


def cloud(uri: str, channels: tuple[str, ...] = (), cloud_asset: str = "none",
          version: str | None = None) -> tuple[int, dict] | None:
    """A STAC item's quality asset in its VRT: ``(1-based VRT band, cloud_mask decoder)``, the
    VRT's last band; None for a file, or an item without one (``cloud_asset`` auto) or with
    ``cloud_asset`` none."""
    if not is_stac_item(uri) or cloud_asset == "none":
        return None
    _item, bands, dec = _item_bands(uri, tuple(channels), version or storage.fingerprint(uri), cloud_asset)
    return (len(bands), dec) if dec is not None else None


def data_box(uri: str, channels: tuple[str, ...], grid: tiling.GridSpec | None, cloud_asset: str = "none",
             version: str | None = None) -> tuple[int, int, int, int] | None:
    """Where the scene's own pixels lie in what ``gdal_path`` opens, as (row0, col0, row1,
    col1) of its pixels: on a ground grid the VRT reaches out to the grid's lines, and its
    pixels beyond the scene are nodata, not the scene's fill; None off a ground grid (the
    scene is the whole raster)."""
    if grid is None or not grid.ground:
        return None
    _item, _bands, _grids, window, res, scene = _ground(uri, tuple(channels), version or storage.fingerprint(uri),
                                                        grid, cloud_asset)
    west, north = window[0], window[3]
    return (int(round((north - scene[3]) / res)), int(round((scene[0] - west) / res)),
            int(round((north - scene[1]) / res)), int(round((scene[2] - west) / res)))


def _ground(uri: str, channels: tuple[str, ...], version: str, ground, cloud_asset: str):
    """The scene's bands and their grids, and on the ground grid ``ground``: the VRT's bounds,
    its pixel size and the scene's own bounds."""
    if is_stac_item(uri):
        item, bands, _dec = _item_bands(uri, channels, version, cloud_asset)
        grids = stac_vrt.asset_grids(bands)
    else:
        item, bands, grids = _file_bands(uri)
    crs = {g.crs_wkt for g in grids}
    if len(crs) > 1:
        raise InputError(f"STAC item {item.get('id')}: its band assets are in different CRSs.",
                         "give items whose band assets share one projection.", reason="unsupported")
    if ground is None:
        return item, bands, grids, None, None, None
    import rasterio.crs

    if not grids[0].crs_wkt or not rasterio.crs.CRS.from_wkt(grids[0].crs_wkt).is_projected:
        raise InputError(f"Scene {uri} is not in a projected CRS: a ground grid is laid in metres.",
                         "reproject it (e.g. to its UTM zone), or map it with grid: scene.", reason="unsupported")
    res = ground.gsd or min(abs(g.transform[0]) for g in grids)
    scene = stac_vrt.union_bounds(grids)
    return item, bands, grids, tiling.ground_window(scene, res, ground), res, scene


@functools.lru_cache(maxsize=64)
def _vrt(uri: str, channels: tuple[str, ...], version: str, ground, fill, cloud_asset: str) -> str:
    item, bands, grids, window, res, _scene = _ground(uri, channels, version, ground, cloud_asset)
    if ground is None:
        return stac_vrt.item_vrt(item, bands, grids)
    return stac_vrt.item_vrt(item, bands, grids, bounds=window, res=res, fill=fill)


@functools.lru_cache(maxsize=64)
def _item_json(uri: str, _version: str) -> dict:
    try:
        item = json.loads(storage.read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise InputError(f"STAC item {uri} is not JSON ({exc.msg}).", "rerun the map: its items are rewritten.",
                         reason="corrupt") from None
    if item.get("type") != "Feature":
        raise InputError(f"{uri} is not a STAC item (type {item.get('type')!r}).",
                         "give scenes as GeoTIFFs, or a catalog with --stac.", reason="unsupported")
    return item


def item_properties(uri: str, version: str | None = None) -> dict:
    """What the map's ``datetime``, ``item_id`` and ``collection`` columns say of a scene: a
    STAC item's datetime (or start_datetime; epoch seconds), id and collection; a file's
    acquisition date from its name where it tells one (``scenes.acquired``), no id or
    collection. Never raises: an item that cannot be read gives what its path tells."""
    if not is_stac_item(uri):
        when = scenes.acquired(uri)
        return {"datetime": int(when.timestamp()) if when else None, "item_id": None, "collection": None}
    from raylib.io import stac

    parts = storage.parse(uri).key.rstrip("/").split("/")
    out = {"datetime": None, "item_id": parts[-1][:-5], "collection": parts[-2] if len(parts) > 1 else None}
    try:
        item = _item_json(uri, version or storage.fingerprint(uri))
        lo, _hi = stac.item_datetime(item)
    except Exception:
        return out
    return {"datetime": int(lo.timestamp()) if lo else None, "item_id": str(item.get("id", out["item_id"])),
            "collection": item.get("collection") or None}


@functools.lru_cache(maxsize=64)
def _item_bands(uri: str, channels: tuple[str, ...], _version: str,
                cloud_asset: str) -> tuple[dict, list[stac_vrt.BandAsset], dict | None]:
    item = _item_json(uri, _version)
    if not channels:
        raise InputError(f"STAC item {uri}: the model names no bands to pick.",
                         "set stac_bands (common names or asset keys, in the model's channel order).",
                         reason="band_mismatch")
    bands = stac_vrt.pick_bands(item, list(channels))
    for name in EXTRA_BANDS:
        if name not in channels:
            try:
                bands += stac_vrt.pick_bands(item, [name])
            except InputError:
                pass
    mask = cloud_mask.band(item, cloud_asset)
    if mask is None:
        return item, bands, None
    return item, bands + [mask[0]], mask[1]


def _file_bands(uri: str) -> tuple[dict, list[stac_vrt.BandAsset], list[stac_vrt.AssetGrid]]:
    """A GeoTIFF as an 'item' of one asset holding every band (its descriptions kept), and
    the bands' grids (the file's: its header is not opened a third time)."""
    info = scenes.open_scene(uri)
    import rasterio
    import rasterio.crs

    with storage.rasterio_env(), rasterio.open(storage.parse(uri).gdal_path) as ds:
        names = [d or "" for d in ds.descriptions]
        scales, offsets = ds.scales, ds.offsets
        colors = [c.name.capitalize() if c.name != "undefined" else None for c in ds.colorinterp]
    bands = [stac_vrt.BandAsset(name=names[i], asset="file", href=uri, band=i + 1, color=colors[i],
                                scale=scales[i] if scales[i] != 1.0 or offsets[i] != 0.0 else None,
                                offset=offsets[i] if scales[i] != 1.0 or offsets[i] != 0.0 else None,
                                nodata=info.nodata) for i in range(info.count)]
    grid = stac_vrt.AssetGrid(info.width, info.height, info.transform,
                              rasterio.crs.CRS.from_user_input(info.crs).to_wkt(), info.dtype, info.nodata)
    return {"id": storage.basename(uri)}, bands, [grid] * len(bands)

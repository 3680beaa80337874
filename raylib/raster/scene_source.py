"""What GDAL opens for a scene URI: the file itself (a GeoTIFF/COG, local or ``/vsis3/``),
or, for a STAC item's JSON (``landcover map --stac``), a VRT of its band assets
(``stac_vrt``), built once per process and item."""

from __future__ import annotations

import functools
import json

from raylib.errors import InputError
from raylib.io import storage
from raylib.raster import stac_vrt

# bands the per-tile statistics use when an item has them (after the model's channels)
EXTRA_BANDS = ("nir", "swir16")


def is_stac_item(uri: str) -> bool:
    return uri.lower().endswith(".json")


def gdal_path(uri: str, channels: tuple[str, ...] = ()) -> str:
    """A GDAL path for the scene: a file's path, or a STAC item's VRT XML (``channels``: the
    band names the model reads, in its order; ``EXTRA_BANDS`` follow where the item has them)."""
    if not is_stac_item(uri):
        return storage.parse(uri).gdal_path
    return _item_vrt(uri, tuple(channels), storage.fingerprint(uri))


@functools.lru_cache(maxsize=64)
def _item_vrt(uri: str, channels: tuple[str, ...], _version: str) -> str:
    try:
        item = json.loads(storage.read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise InputError(f"STAC item {uri} is not JSON ({exc.msg}).", "rerun the map: its items are rewritten.",
                         reason="corrupt") from None
    if item.get("type") != "Feature":
        raise InputError(f"{uri} is not a STAC item (type {item.get('type')!r}).",
                         "give scenes as GeoTIFFs, or a catalog with --stac.", reason="unsupported")
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
    grids = [stac_vrt.asset_grid(b) for b in bands]
    crs = {g.crs_wkt for g in grids}
    if len(crs) > 1:
        raise InputError(f"STAC item {item.get('id')}: its band assets are in different CRSs.",
                         "give items whose band assets share one projection.", reason="unsupported")
    return stac_vrt.item_vrt(item, bands, grids)

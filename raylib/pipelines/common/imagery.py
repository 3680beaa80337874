"""A map's imagery in true colour on a ground zone's grid: what a change picture shows its
classes and changes against (a map of classes alone cannot tell a real change from a
misclassified one).

The scenes are those of the map's rows in the zone, read as the map read them (its recorded
bands and fill: ``_summary.json``'s config), warped onto the zone's grid at a few pixels per
tile (``WarpedVRT``, averaging) and stretched as the quick-looks are. A zone whose date holds
more than ``MAX_SCENES`` scenes, or a scene that cannot be read, gives no imagery: the
picture is drawn without it (the change map stands).
"""

from __future__ import annotations

import json
import logging

import numpy as np

from raylib.eval import reports
from raylib.formats import mapfile
from raylib.io import storage
from raylib.pipelines.common.map_input import MapSource, finished_folder
from raylib.pipelines.common.tile_grid import ZoneCells

log = logging.getLogger(__name__)
MAX_SCENES = 12  # scenes of one date and zone read for a picture, at most


def read_settings(uri: str) -> dict:
    """How the map at ``uri`` (or its composite) read its scenes: its config's ``bands``,
    ``fill_value`` and ``stac_bands`` (none when its summary is missing)."""
    try:
        cfg = json.loads(storage.read_bytes(storage.join(finished_folder(uri), mapfile.SUMMARY))).get("config") or {}
    except Exception:  # (a map without a summary: the scenes' own tags decide)
        cfg = {}
    return {k: cfg.get(k) for k in ("bands", "fill_value", "stac_bands")}


def zone_imagery(src: MapSource, zone: ZoneCells, scale: int) -> np.ndarray | None:
    """(h, w, 3) uint8: the scenes of ``src`` in ``zone`` on its grid, ``scale`` px per
    tile; None when there are none, too many, or none could be read."""
    import pyarrow.compute as pc

    table = src.read(["scene", "scene_crs"])
    here = table.filter(pc.equal(table.column("scene_crs"), zone.zone))
    scenes = sorted(s for s in set(here.column("scene").to_pylist()) if s)
    if not scenes or len(scenes) > MAX_SCENES:
        return None
    settings = read_settings(src.uri)
    h, w = zone.shape[0] * scale, zone.shape[1] * scale
    rgb = np.full((3, h, w), np.nan, np.float32)
    eight_bit = True
    for uri in scenes:
        try:
            data, is_byte = _warped(uri, settings, zone, scale, (h, w))
        except Exception as exc:  # a picture: its loss is logged, the change map stands
            log.warning("no imagery of %s in the change picture: %s", uri, str(exc).splitlines()[0][:200])
            continue
        eight_bit &= is_byte
        empty = np.isnan(rgb[0])
        rgb[:, empty] = data[:, empty]
    valid = ~np.isnan(rgb[0])
    if not valid.any():
        return None
    return reports.stretch(np.nan_to_num(rgb), valid, common=eight_bit)


def _warped(uri: str, settings: dict, zone: ZoneCells, scale: int, shape: tuple[int, int]):
    """One scene's R, G, B on the zone's grid (NaN outside it), and whether it is 8-bit."""
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from raylib.raster import bands as bandlib
    from raylib.raster import scene_source

    item = scene_source.is_stac_item(uri)
    channels = tuple(settings.get("stac_bands") or ("red", "green", "blue"))
    path = scene_source.gdal_path(uri, channels if item else ())
    x0, y0 = zone.origin
    transform = Affine(zone.step / scale, 0, x0, 0, -zone.step / scale, y0)
    with storage.rasterio_env(), rasterio.open(path) as ds:
        if item or ds.count < 3:
            which = [1, 2, 3] if ds.count >= 3 else [1, 1, 1]
        else:
            which = bandlib.band_indices(settings.get("bands"), 3, ds.colorinterp)
        fill = settings.get("fill_value")
        fill = ds.nodata if fill is None else fill
        with WarpedVRT(ds, crs=zone.zone, transform=transform, width=shape[1], height=shape[0],
                       resampling=Resampling.average, src_nodata=fill) as vrt:
            data = vrt.read(which, masked=True)
        out = np.where(np.ma.getmaskarray(data), np.nan, np.ma.getdata(data)).astype(np.float32)
        return out, ds.dtypes[0] == "uint8"

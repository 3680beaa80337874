"""A map's tile footprints back in their scenes' CRS: the map stores each tile's footprint
in OGC:CRS84; reference rasters, zones and exports work in the scene's own grid, where a
tile is an axis-aligned box."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Footprints:
    """Tile footprints of a map in each scene's CRS (axis-aligned boxes; the map's tiles
    are windows of north-up scenes)."""

    rows: np.ndarray  # map table row of each footprint
    crs: list[str]  # per footprint
    box: np.ndarray  # (n, 4) xmin, ymin, xmax, ymax in that CRS


def footprints(table) -> Footprints:
    """Footprints of the map's tiles that have a geometry, back in their scene CRS."""
    import shapely
    from rasterio.warp import transform

    geoms = table.column("geometry").to_pylist()
    crs = table.column("scene_crs").to_pylist()
    keep = np.array([g is not None and c for g, c in zip(geoms, crs)], bool)
    rows = np.flatnonzero(keep)
    box = np.zeros((len(rows), 4))
    by_crs: dict[str, list[int]] = {}
    for k, r in enumerate(rows):
        by_crs.setdefault(crs[r], []).append(k)
    for c, ks in by_crs.items():
        polys = shapely.from_wkb([geoms[rows[k]] for k in ks])
        xy = shapely.get_coordinates(polys)  # 5 corners per tile (closed ring)
        x, y = transform("EPSG:4326", c, xy[:, 0].tolist(), xy[:, 1].tolist())
        x = np.asarray(x).reshape(len(ks), -1)
        y = np.asarray(y).reshape(len(ks), -1)
        box[ks] = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
    return Footprints(rows, [crs[r] for r in rows], box)

"""Map tiles in regions (zones): how much of each tile lies in each zone, for land accounts.

Tiles are the footprints of a map's rows (lon/lat polygons of boxes in each tile's UTM
zone, ``scene_crs``); zones are polygons in lon/lat. Each tile is tested in its own CRS
(the zones reprojected there), so a share is a ratio of planar areas in the projection the
tile was cut in: ``share`` gives every (tile, zone) pair the tile's share of area inside the
zone, ``centre`` gives the whole tile to the zone holding its centre (a centre on a border:
to one of them, once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Membership:
    """(tile, zone, share) triples: a tile's row in the map table, a zone's index, and the
    share of the tile that counts in the zone (1 with ``centre``)."""

    tile: np.ndarray
    zone: np.ndarray
    share: np.ndarray


def memberships(table, zones: list, assign: str = "share") -> Membership:
    """Which tiles of ``table`` (``geometry``, ``scene_crs``) count in which of ``zones``
    (shapely polygons in lon/lat), and by how much."""
    import shapely
    from pyproj import Transformer

    from raylib.raster.footprints import footprints

    fp = footprints(table)
    tiles, zs, shares = [], [], []
    crs = np.asarray(fp.crs, object)
    for c in sorted(set(fp.crs)):
        sel = np.flatnonzero(crs == c)
        to = Transformer.from_crs("EPSG:4326", c, always_xy=True)
        local = [shapely.transform(z, lambda xy: np.column_stack(to.transform(xy[:, 0], xy[:, 1]))) for z in zones]
        tree = shapely.STRtree(local)
        boxes = shapely.box(*fp.box[sel].T)
        if assign == "centre":
            t, z = tree.query(shapely.centroid(boxes), predicate="intersects")
            t, first = np.unique(t, return_index=True)  # a centre on a border: the first zone only, once
            z, share = z[first], np.ones(len(t))
        else:
            t, z = tree.query(boxes, predicate="intersects")
            inter = shapely.area(shapely.intersection(boxes[t], np.asarray(local, object)[z]))
            share = inter / np.maximum(shapely.area(boxes[t]), 1e-12)
            keep = share > 1e-9  # (a tile that only touches a zone's border)
            t, z, share = t[keep], z[keep], share[keep]
        tiles.append(fp.rows[sel[t]])
        zs.append(z)
        shares.append(np.minimum(share, 1.0))
    if not tiles:
        return Membership(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return Membership(np.concatenate(tiles), np.concatenate(zs).astype(np.int64), np.concatenate(shares))

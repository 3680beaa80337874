import math

import numpy as np
import pytest
import rasterio

from raylib.errors import InputError
from raylib.raster import tiling

from ..conftest import LANDSAT, NAIP


def coverage(table, info):
    cov = np.zeros((info.height, info.width), np.int32)
    for r, c, h, w in zip(*(table[k].to_numpy() for k in ("row_off", "col_off", "height", "width"))):
        cov[r : r + h, c : c + w] += 1
    return cov


def test_landsat_native_grid_exact_count_and_single_coverage():
    info = tiling.open_scene(str(LANDSAT))
    assert (info.width, info.height, info.count) == (2041, 1860, 3)
    grid = tiling.GridSpec(tile_size=256, stride=256)
    t = tiling.make_manifest(info, grid)
    assert t.num_rows == math.ceil(2041 / 256) * math.ceil(1860 / 256) == 64
    cov = coverage(t, info)
    assert cov.min() == 1 and cov.max() == 1  # every pixel exactly once
    assert int((t["width"].to_numpy() * t["height"].to_numpy()).sum()) == 2041 * 1860
    edge = t["edge"].to_numpy()
    assert edge.sum() == 8 + 8 - 1  # last column and last row
    assert tiling.grid_shape(info, grid) == (8, 8)


def test_gsd_resampling_grid():
    info = tiling.open_scene(str(LANDSAT))  # 30 m
    grid = tiling.GridSpec(tile_size=64, stride=64, gsd=10.0)
    assert tiling.native_tile_size(info, grid) == (21, 21)
    t = tiling.make_manifest(info, grid)
    assert t.num_rows == math.ceil(2041 / 21) * math.ceil(1860 / 21) == 98 * 89
    cov = coverage(t, info)
    assert cov.min() == 1 and cov.max() == 1
    naip = tiling.open_scene(str(NAIP))  # 5 m -> 10 m: 128 native px per 64 px tile
    assert tiling.native_tile_size(naip, grid) == (128, 128)
    assert tiling.make_manifest(naip, grid).num_rows == math.ceil(934 / 128) * math.ceil(723 / 128) == 48


def test_overlapping_stride_covers_everything_and_ends_at_edge():
    info = tiling.open_scene(str(NAIP))
    t = tiling.make_manifest(info, tiling.GridSpec(tile_size=256, stride=128))
    cov = coverage(t, info)
    assert cov.min() >= 1
    cols = sorted(set(t["col_off"].to_numpy().tolist()))
    assert cols == [0, 128, 256, 384, 512, 640, 768]  # 768+256 >= 934: stop


def test_tile_ids_stable_and_grid_specific():
    info = tiling.open_scene(str(NAIP))
    a = tiling.make_manifest(info, tiling.GridSpec(64, 64))["tile_id"].to_pylist()
    b = tiling.make_manifest(tiling.open_scene(str(NAIP)), tiling.GridSpec(64, 64))["tile_id"].to_pylist()
    c = tiling.make_manifest(info, tiling.GridSpec(64, 64, gsd=10.0))["tile_id"].to_pylist()
    assert a == b
    assert len(set(a)) == len(a)
    assert not set(a) & set(c)


def test_footprints_inside_scene_bounds():
    import shapely
    from rasterio.warp import transform_bounds

    info = tiling.open_scene(str(LANDSAT))
    t = tiling.make_manifest(info, tiling.GridSpec(256, 256))
    with rasterio.open(LANDSAT) as ds:
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    geoms = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
    b = shapely.bounds(geoms)
    eps = 1e-9
    assert (b[:, 0] >= west - eps).all() and (b[:, 2] <= east + eps).all()
    assert (b[:, 1] >= south - eps).all() and (b[:, 3] <= north + eps).all()
    # tiles tile the scene: their areas add up to the scene's footprint area
    with rasterio.open(LANDSAT) as ds:
        l, bt, r, tp = ds.bounds
    scene = shapely.Polygon([(l, bt), (r, bt), (r, tp), (l, tp)])
    from rasterio.warp import transform_geom

    scene_ll = shapely.geometry.shape(transform_geom(info.crs, "EPSG:4326", shapely.geometry.mapping(scene)))
    assert abs(shapely.area(geoms).sum() / scene_ll.area - 1) < 1e-3


def test_read_window_pads_edge_tiles():
    info = tiling.open_scene(str(NAIP))
    with rasterio.open(NAIP) as ds:
        px, inside = tiling.read_window(ds, 700, 900, 23, 34, (64, 64), 64, [1, 2, 3])
        ref = ds.read([1, 2, 3], window=rasterio.windows.Window(900, 700, 34, 23))
    assert px.shape == (3, 64, 64)
    assert np.array_equal(px[:, :23, :34], ref)  # byte-exact at native resolution
    assert inside.sum() == 23 * 34 and not px[:, 23:, :].any()
    assert info.nodata == 0


def test_open_scene_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        tiling.open_scene(str(tmp_path / "missing.tif"))
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a raster")
    with pytest.raises(InputError, match="not a readable raster"):
        tiling.open_scene(str(bad))


def test_bad_grid():
    with pytest.raises(InputError, match="stride"):
        tiling.GridSpec(64, 128)

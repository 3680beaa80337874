import math

import numpy as np
import pytest
import rasterio

from raylib.errors import InputError
from raylib.raster import scenes, tiling, windows

from ..conftest import LANDSAT, NAIP


def coverage(table, info):
    cov = np.zeros((info.height, info.width), np.int32)
    for r, c, h, w in zip(*(table[k].to_numpy() for k in ("row_off", "col_off", "height", "width"))):
        cov[r : r + h, c : c + w] += 1
    return cov


def test_landsat_native_grid_exact_count_and_single_coverage():
    info = scenes.open_scene(str(LANDSAT))
    assert (info.width, info.height, info.count) == (2041, 1860, 3)
    grid = tiling.GridSpec(tile_size=256, stride=256)
    t = tiling.tile_table(info, grid)
    assert t.num_rows == math.ceil(2041 / 256) * math.ceil(1860 / 256) == 64
    cov = coverage(t, info)
    assert cov.min() == 1 and cov.max() == 1  # every pixel exactly once
    assert int((t["width"].to_numpy() * t["height"].to_numpy()).sum()) == 2041 * 1860
    edge = t["edge"].to_numpy()
    assert edge.sum() == 8 + 8 - 1  # last column and last row
    assert tiling.grid_shape(info, grid) == (8, 8)


def test_gsd_resampling_grid():
    info = scenes.open_scene(str(LANDSAT))  # 30 m
    grid = tiling.GridSpec(tile_size=64, stride=64, gsd=10.0)
    assert tiling.native_tile_size(info, grid) == (21, 21)
    t = tiling.tile_table(info, grid)
    assert t.num_rows == math.ceil(2041 / 21) * math.ceil(1860 / 21) == 98 * 89
    cov = coverage(t, info)
    assert cov.min() == 1 and cov.max() == 1
    naip = scenes.open_scene(str(NAIP))  # 5 m -> 10 m: 128 native px per 64 px tile
    assert tiling.native_tile_size(naip, grid) == (128, 128)
    assert tiling.tile_table(naip, grid).num_rows == math.ceil(934 / 128) * math.ceil(723 / 128) == 48


def test_overlapping_stride_covers_everything_and_ends_at_edge():
    info = scenes.open_scene(str(NAIP))
    t = tiling.tile_table(info, tiling.GridSpec(tile_size=256, stride=128))
    cov = coverage(t, info)
    assert cov.min() >= 1
    cols = sorted(set(t["col_off"].to_numpy().tolist()))
    assert cols == [0, 128, 256, 384, 512, 640, 768]  # 768+256 >= 934: stop


def test_tile_ids_stable_and_grid_specific():
    info = scenes.open_scene(str(NAIP))
    a = tiling.tile_table(info, tiling.GridSpec(64, 64))["tile_id"].to_pylist()
    b = tiling.tile_table(scenes.open_scene(str(NAIP)), tiling.GridSpec(64, 64))["tile_id"].to_pylist()
    c = tiling.tile_table(info, tiling.GridSpec(64, 64, gsd=10.0))["tile_id"].to_pylist()
    assert a == b
    assert len(set(a)) == len(a)
    assert not set(a) & set(c)


def test_footprints_inside_scene_bounds():
    import shapely
    from rasterio.warp import transform_bounds

    info = scenes.open_scene(str(LANDSAT))
    t = tiling.tile_table(info, tiling.GridSpec(256, 256))
    with rasterio.open(LANDSAT) as ds:
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    geoms = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
    b = shapely.bounds(geoms)
    eps = 1e-9
    assert (b[:, 0] >= west - eps).all() and (b[:, 2] <= east + eps).all()
    assert (b[:, 1] >= south - eps).all() and (b[:, 3] <= north + eps).all()
    # tiles tile the scene: their areas add up to the scene's footprint area
    with rasterio.open(LANDSAT) as ds:
        left, bt, r, tp = ds.bounds
    scene = shapely.Polygon([(left, bt), (r, bt), (r, tp), (left, tp)])
    from rasterio.warp import transform_geom

    scene_ll = shapely.geometry.shape(transform_geom(info.crs, "EPSG:4326", shapely.geometry.mapping(scene)))
    assert abs(shapely.area(geoms).sum() / scene_ll.area - 1) < 1e-3


def test_read_window_pads_edge_tiles():
    info = scenes.open_scene(str(NAIP))
    with rasterio.open(NAIP) as ds:
        px, inside = windows.read_window(ds, 700, 900, 23, 34, (64, 64), 64, [1, 2, 3])
        ref = ds.read([1, 2, 3], window=rasterio.windows.Window(900, 700, 34, 23))
    assert px.shape == (3, 64, 64)
    assert np.array_equal(px[:, :23, :34], ref)  # byte-exact at native resolution
    assert inside.sum() == 23 * 34 and not px[:, 23:, :].any()
    assert info.nodata == 0


def test_open_scene_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        scenes.open_scene(str(tmp_path / "missing.tif"))
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a raster")
    with pytest.raises(InputError, match="not a readable raster"):
        scenes.open_scene(str(bad))


def test_bad_grid():
    with pytest.raises(InputError, match="stride"):
        tiling.GridSpec(64, 128)


def test_the_ground_grid_window_is_on_whole_steps_and_covers_the_bounds():
    g = tiling.GridSpec(64, 64, 10.0, ground=True)
    x0, y0, x1, y1 = tiling.ground_window((485900.0, 5205630.0, 490570.0, 5209245.0), 10.0, g)
    assert (x0, y1) == (485760.0, 5209600.0)  # 759 and 8140 steps of 640 m
    assert x0 <= 485900 and y0 <= 5205630 and x1 >= 490570 and y1 >= 5209245
    assert ((x1 - x0) / 640, (y1 - y0) / 640) == (8, 7)  # whole tiles, no partial edge
    # overlapping tiles (stride 32): whole steps of 320 m, and a whole tile at the end
    o = tiling.GridSpec(64, 32, 10.0, ground=True)
    x0, y0, x1, y1 = tiling.ground_window((100.0, 0.0, 1000.0, 500.0), 10.0, o)
    assert x0 == 0.0 and y1 == 640.0 and (x1 - x0 - 640) % 320 == 0 and x1 >= 1000 and y0 <= 0
    # ids depend on the CRS, pixel size, tile, stride and position only
    a = tiling.ground_tile_id("EPSG:32614", 485760.0, 5209600.0, 10.0, g)
    assert a == tiling.ground_tile_id("EPSG:32614", 485760.0 + 1e-7, 5209600.0, 10.0, g)
    assert a != tiling.ground_tile_id("EPSG:32615", 485760.0, 5209600.0, 10.0, g)
    assert a != tiling.ground_tile_id("EPSG:32614", 486400.0, 5209600.0, 10.0, g)
    assert g.key() != tiling.GridSpec(64, 64, 10.0).key() and g.as_dict()["ground"] is True
    assert "ground" not in tiling.GridSpec(64, 64, 10.0).as_dict()


def test_three_dates_of_a_place_share_ground_tile_ids():
    from raylib.raster import scene_source

    g = tiling.GridSpec(64, 64, 10.0, ground=True)
    ids, geoms = [], []
    for date in ("20100629", "20150926", "20200831"):  # the 2020 quad is 1 m off the others
        uri = str(NAIP).replace("20150926", date)
        info = scenes.open_scene(uri, scene_source.gdal_path(uri, (), g))
        m = tiling.tile_table(info, g)
        assert info.transform[:6] == (10.0, 0.0, 485760.0, 0.0, -10.0, 5209600.0)
        assert m.num_rows == 8 * 7 and not any(m["edge"].to_pylist())
        ids.append(m["tile_id"].to_pylist())
        geoms.append(m["geometry"].to_pylist())
    assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 56
    assert geoms[0] == geoms[2]
    # the scene grid's ids are per scene
    assert not set(tiling.tile_table(scenes.open_scene(str(NAIP)), g.__class__(64, 64, 10.0))["tile_id"].to_pylist()) \
        & set(ids[0])
    # the VRT reads the scene's pixels on the ground grid: the overlap with the file agrees
    with rasterio.open(scene_source.gdal_path(str(NAIP), (), g)) as v, rasterio.open(NAIP) as f:
        assert v.count == f.count and v.colorinterp[:3] == f.colorinterp[:3]
        band, inside = v.read(1), v.read_masks(1) > 0  # outside the quad: its nodata
        assert 0.6 < inside.mean() < 0.95 and abs(float(band[inside].mean()) - float(f.read(1).mean())) < 1.5


def test_an_aoi_keeps_exactly_the_tiles_it_meets():
    """An AOI whose corners are tile centres (in the scene's CRS, sent to lon/lat): the
    tiles kept are exactly the block of rows 3..7 and columns 5..12, in grid order, and
    the windows, ids and reads of the kept tiles are those of the full grid."""
    import shapely
    from pyproj import Transformer

    from raylib.raster import aoi

    info = scenes.open_scene(str(LANDSAT))
    grid = tiling.GridSpec(tile_size=64, stride=64, gsd=None)
    full = tiling.layout(info, grid)
    a, _, c, _, e, f = info.transform
    centre = lambda r, k: (c + a * (full.col_offs[k] + 32), f + e * (full.row_offs[r] + 32))  # noqa: E731
    to_ll = Transformer.from_crs(info.crs, "EPSG:4326", always_xy=True)
    ring = [to_ll.transform(*centre(r, k)) for r, k in ((3, 5), (3, 12), (7, 12), (7, 5))]
    keep = aoi.tiles_meeting(shapely.Polygon(ring), info.crs, info.transform, full.windows())
    kept = info.keeping(keep, len(full.col_offs))
    assert kept.runs == tuple((r, 5, 13) for r in range(3, 8))
    lay = tiling.layout(scenes.SceneInfo.from_dict(dict(kept.__dict__)), grid)  # (its JSON round trip)
    assert lay.n_tiles == 5 * 8 and tiling.Layout.from_dict(lay.to_dict()) == lay
    wins = lay.windows()
    np.testing.assert_array_equal(wins, full.windows()[keep])
    np.testing.assert_array_equal(lay.windows(7, 21), wins[7:21])
    assert [len(s) for s in windows.row_segments(wins)] == [8] * 5
    ids = tiling.tile_table(kept, grid).column("tile_id").to_pylist()
    assert ids == [i for i, k in zip(tiling.tile_table(info, grid).column("tile_id").to_pylist(), keep) if k]
    # two runs in one row: read as two segments
    two = np.zeros(full.n_tiles, bool)
    two[[2, 3, 6]] = True
    lay2 = tiling.layout(info.keeping(two, len(full.col_offs)), grid)
    assert [s["grid_col"].tolist() for s in windows.row_segments(lay2.windows())] == [[2, 3], [6]]


def test_the_grid_step_from_the_metadata_or_from_the_tiles():
    """A ground grid's step is in its metadata (stride x GSD, metres); a scene grid's is found
    from its tiles, in metres or degrees alike, positions within a millionth of their span
    being one."""
    assert tiling.grid_step({"tile_size": 64, "stride": 32, "gsd": 10.0, "ground": True}) == 320.0
    assert tiling.grid_step({"tile_size": 64, "stride": 64, "gsd": 10.0}) is None  # (a scene grid: its scenes')
    assert tiling.grid_step(None) is None
    metres = np.r_[500000.0, 500640.0, 500640.0 + 1e-4, 501280.0]
    assert tiling.step_of(metres) == pytest.approx(640.0)
    degrees = -78.9 + 0.00058 * np.r_[0, 1, 2, 5] + np.r_[0, 1e-12, 0, 0]
    assert tiling.step_of(degrees) == pytest.approx(0.00058)
    assert tiling.step_of([3.0, 3.0]) is None and tiling.step_of([1.0]) is None

"""The map job's read stage: one read per row of tiles, and what a damaged block costs."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from raylib.raster import bands as bandlib
from raylib.raster import reading, scenes, tiling, windows

from ..conftest import DATA, LANDSAT, NAIP


def per_tile(ds, wins, lay, t, bands):
    got = [windows.read_window(ds, *tiling.window_box(w), lay.tile, t, bands) for w in wins]
    return np.stack([g[0] for g in got]), np.stack([g[1] for g in got])


@pytest.mark.parametrize("tile,stride", [(64, 64), (64, 48)])  # plain and overlapping grids
def test_row_read_equals_tile_reads_at_native_resolution(tile, stride):
    info = scenes.open_scene(str(NAIP))
    lay = tiling.layout(info, tiling.GridSpec(tile, stride))
    wins = lay.windows()
    segs = windows.row_segments(wins)
    assert len(segs) == len(lay.row_offs) and sum(map(len, segs)) == lay.n_tiles
    with rasterio.open(NAIP) as ds:
        for seg in (segs[0], segs[len(segs) // 2], segs[-1]):  # the last row holds the clipped edge tiles
            assert windows.row_aligned(seg, lay.tile, tile)
            px, inside = windows.read_row(ds, seg, lay.tile, tile, [1, 2, 3])
            ref_px, ref_inside = per_tile(ds, seg, lay, tile, [1, 2, 3])
            assert np.array_equal(px, ref_px) and np.array_equal(inside, ref_inside)  # byte-exact
    assert not inside.all()  # the edge tiles were padded


def test_row_read_resampled_equals_tile_reads():
    """Landsat at 30 m on a 10 m grid: 21 native pixels -> 64 (bilinear). One resampled
    read of the row gives the same pixels as one read per tile."""
    info = scenes.open_scene(str(LANDSAT))
    grid = tiling.GridSpec(64, 64, gsd=10.0)
    lay = tiling.layout(info, grid)
    assert lay.tile == (21, 21)
    segs = windows.row_segments(lay.windows())
    with rasterio.open(LANDSAT) as ds:
        for seg in (segs[0], segs[40], segs[-1]):  # the last row is clipped by the bottom edge
            px, inside = windows.read_row(ds, seg, lay.tile, 64, [1, 2, 3])
            ref_px, ref_inside = per_tile(ds, seg, lay, 64, [1, 2, 3])
            assert np.array_equal(inside, ref_inside) and not inside[-1].all()  # the right edge tile is clipped
            assert np.array_equal(px, ref_px)
    assert not inside[0, -1].any()
    # overlapping 10 m tiles do not start on whole output pixels: read tile by tile
    over = tiling.layout(info, tiling.GridSpec(64, 32, gsd=10.0))
    assert not windows.row_aligned(windows.row_segments(over.windows())[0], over.tile, 64)


def _scene_with_a_bad_block(path, bad_block=(1, 2)):
    """A 256 x 320 uint16 3-band tiled LZW GeoTIFF (64-px blocks) whose block
    ``bad_block`` (row, col) holds garbage bytes; also returns the clean pixels."""
    rng = np.random.default_rng(0)
    data = rng.integers(1, 4000, (3, 256, 320), dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=320, height=256, count=3, dtype="uint16",
                       crs="EPSG:32614", transform=from_origin(500000, 5200000, 10, 10), tiled=True,
                       blockxsize=64, blockysize=64, compress="lzw") as ds:
        ds.write(data)
    with rasterio.open(path) as ds:
        r, c = bad_block
        off = int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[off:off + size] = bytes([0xFF]) * size
    path.write_bytes(bytes(raw))
    return data


def _spec(path, lay, tile):
    scaler = bandlib.Scaler(np.full(3, 1 / 4000, np.float32), np.zeros(3, np.float32), 0,
                            np.full(3, 0.5, np.float32))
    return json.dumps({"uri": str(path), "gdal_path": str(path), "bands": [1, 2, 3], "layout": lay.to_dict(),
                       "tile_size": tile, "gain": scaler.gain.tolist(), "offset": scaler.offset.tolist(),
                       "fill_value": 0, "target_mean": scaler.target_mean.tolist(), "pixel_type": "uint16"})


def test_a_damaged_block_costs_only_the_tiles_it_touches(tmp_path):
    path = tmp_path / "bad.tif"
    data = _scene_with_a_bad_block(path)
    info = scenes.open_scene(str(path))
    lay = tiling.layout(info, tiling.GridSpec(32, 32))  # 8 x 10 tiles of 32 px
    spec = _spec(path, lay, 32)
    units = [(0, 32), (32, 64), (64, 80)]  # three read units in one task, cutting through grid rows
    out = reading.read_tiles({"spec": np.array([spec] * 3), "base": np.array([100] * 3),
                              "lo": np.array([u[0] for u in units]), "hi": np.array([u[1] for u in units])},
                             read_timeout=30, read_retries=0)
    assert np.array_equal(out["idx"], np.arange(100, 180))
    gi, gj = np.divmod(np.arange(80), 10)
    bad = (gi // 2 == 1) & (gj // 2 == 2)  # block (1, 2) = tiles rows 2-3, cols 4-5
    assert bad.sum() == 4
    assert list(out["status"][bad]) == ["error"] * 4 and all(e.startswith("corrupt: ") for e in out["error"][bad])
    assert (out["status"][~bad] == "ok").all()
    tiles = data.reshape(3, 8, 32, 10, 32).transpose(1, 3, 0, 2, 4).reshape(80, 3, 32, 32)
    # the tiles cross to the model in the scene's type, with their scaling: every other tile, exact
    assert out["pixels"].dtype == np.uint16 and np.array_equal(out["pixels"][~bad], tiles[~bad])
    assert (out["gain"][~bad] == np.float32(1 / 4000)).all() and (out["offset"][~bad] == 0).all()
    np.testing.assert_allclose(reading.scaled_pixels(out)[~bad], tiles[~bad] / np.float32(4000), rtol=1e-6)
    assert (out["fill_fraction"][~bad] == 0).all()


def test_decimated_read_of_a_damaged_scene_keeps_the_readable_blocks(tmp_path):
    """Scaling statistics of a damaged scene come from the blocks that decode, also when
    the sampling step (160 px here) is wider than a block (64 px)."""
    path = tmp_path / "bad.tif"
    data = _scene_with_a_bad_block(path)
    with rasterio.open(path) as ds:
        assert np.array_equal(windows.decimated_read(ds, [1, 2, 3], max_side=2, fill=0)[:, :, 0], data[:, ::160, 0])
        sample = windows.decimated_read(ds, [1, 2, 3], max_side=64, fill=0)  # every 5th pixel
    ref = data[:, ::5, ::5]
    assert sample.shape == ref.shape == (3, 52, 64)
    left = 128 // 5 + 1  # sampled columns left of the bad block's column of blocks: exact
    assert np.array_equal(sample[:, :, :left], ref[:, :, :left])
    assert (sample[:, 64 // 5 + 1:128 // 5 + 1, left:192 // 5 + 1] == 0).all()  # the bad block: fill


def test_tile_statistics_of_all_bands_in_reflectance():
    """The read stage summarises every band of the NC Landsat 7 scene (the model reads 3):
    band means in TOA reflectance equal a direct computation; NDVI and NDWI from the bands
    the descriptions name (B3 red, B4 NIR, B2 green)."""
    from raylib.config import MapConfig
    from raylib.models.model_dir import ModelManifest
    from raylib.pipelines.common import planning

    img = DATA / "labelled-scenes" / "nc-wake-landsat7-landclass96" / "image_landsat7_2000.tif"
    man = ModelManifest(id="m@0", kind="head", backbone={}, head={}, classes=["a"], tile_size=64, gsd=None,
                        bands={"channels": ["red", "green", "blue"], "mean": [0.3] * 3, "std": [0.1] * 3},
                        metrics={}, created_by="")
    cfg = MapConfig(scenes=[str(img)], out="/tmp/unused", bands=[3, 2, 1], sensor="landsat-etm-l1", sun_elevation=60)
    grid = tiling.GridSpec(64, 64, None)
    plan = planning.plan_scene(str(img), cfg, man, grid)
    assert plan.failure is None and plan.stats["bands"] == [1, 2, 3, 4, 5, 6]
    assert plan.stats["roles"] == {"green": 1, "red": 2, "nir": 3, "swir16": 4} and plan.stats["units"] == "reflectance"
    out = reading.read_tiles({"spec": np.array([plan.read_spec(64)]), "base": np.array([0]), "lo": np.array([0]),
                              "hi": np.array([16])}, read_timeout=30, read_retries=0)
    k = 9  # grid (1, 1): an interior tile
    r0, c0 = tiling.window_box(plan.layout.windows()[k])[:2]
    with rasterio.open(img) as ds:
        raw = ds.read(window=rasterio.windows.Window(int(c0), int(r0), 64, 64)).astype(np.float64)
    rho = raw * np.array(plan.stats["gain"])[:, None, None] + np.array(plan.stats["offset"])[:, None, None]
    valid = ~np.all(raw[[2, 1, 0]] == 0, axis=0)
    assert out["n_stats"][k] == 6
    for b in range(5):
        m = valid & (raw[b] != 0)
        assert out["band_mean"][k, b] == pytest.approx(rho[b][m].mean(), rel=1e-4)
        assert out["band_std"][k, b] == pytest.approx(rho[b][m].std(), rel=1e-3)
    nir, red, green = rho[3][valid], rho[2][valid], rho[1][valid]
    assert out["ndvi"][k] == pytest.approx(((nir - red) / (nir + red)).mean(), rel=1e-4)
    assert out["ndwi"][k] == pytest.approx(((green - nir) / (green + nir)).mean(), rel=1e-4)

import numpy as np
import pytest
import rasterio

from raylib.errors import ConfigError, InputError
from raylib.raster import bands, windows

from ..conftest import LANDSAT, LANDSAT_B2, NAIP


def test_presets_and_auto():
    assert bands.resolve_bands("landsat8-b234", 3, "x", 3) == [3, 2, 1]
    assert bands.resolve_bands("naip", 4, "x", 3) == [1, 2, 3]
    assert bands.resolve_bands(None, 4, "x", 3) == [1, 2, 3]
    assert bands.resolve_bands([4, 3, 2], 13, "x", 3) == [4, 3, 2]
    with pytest.raises(ConfigError, match="Unknown band preset"):
        bands.resolve_bands("landsat9", 3, "x", 3)
    with pytest.raises(ConfigError, match="selects 2 band"):
        bands.resolve_bands([1, 2], 3, "x", 3)


def test_too_few_bands_names_scene_and_fix():
    with pytest.raises(InputError) as e:
        bands.resolve_bands(None, 1, str(LANDSAT_B2), 3)
    assert str(LANDSAT_B2) in str(e.value) and "has 1 band" in str(e.value) and "Fix:" in str(e.value)


def test_match_scaling_hits_target_stats_on_valid_pixels():
    with rasterio.open(LANDSAT) as ds:
        sample = windows.decimated_read(ds, [3, 2, 1])
    tm, ts = [0.35, 0.38, 0.41], [0.2, 0.14, 0.12]
    sc = bands.make_scaler("match", sample, "uint16", 0, tm, ts)
    valid = ~np.all(sample == 0, axis=0)
    x = sample[:, valid].astype(np.float32) * sc.gain[:, None] + sc.offset[:, None]
    np.testing.assert_allclose(x.mean(1), tm, atol=1e-3)
    np.testing.assert_allclose(x.std(1), ts, atol=1e-3)


def test_fill_fraction_and_mirror_fill():
    """Fill and padding take the valid pixels mirrored across the valid region's border
    (not a flat colour), and the tile reports its fill share."""
    sc = bands.make_scaler("dtype", None, "uint8", 0, [0.5, 0.5, 0.5], [0.1, 0.1, 0.1])
    raw = np.zeros((3, 4, 4), np.uint8)
    raw[:, 2:, :] = np.array([[10, 20, 30, 40], [50, 60, 70, 80]], np.uint8)  # rows 0-1 are fill (0)
    inside = np.ones((4, 4), bool)
    inside[:, 3] = False  # padding column
    x, ff = sc.apply_many(raw[None], inside[None])
    assert ff[0] == pytest.approx(6 / 12)  # 6 of 12 in-scene pixels are fill (padding not counted)
    v = x[0, 0] * 255
    np.testing.assert_allclose(v[2:, :3], [[10, 20, 30], [50, 60, 70]], atol=1e-4)  # valid pixels untouched
    np.testing.assert_allclose(v[1, :3], v[3, :3], atol=1e-4)  # row 1 mirrors row 3 through row 2
    np.testing.assert_allclose(v[2:, 3], v[2:, 1], atol=1e-4)  # padding column 3 mirrors column 1 through 2
    assert set(np.round(v.ravel()).astype(int)) <= {10, 20, 30, 50, 60, 70}  # only the tile's own values
    x1, ff1 = sc.apply(raw, inside)  # one tile: the same
    np.testing.assert_allclose(x1, x[0])


def test_mirror_fill_of_a_narrow_strip_fills_the_tile():
    x = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    valid = np.zeros((8, 8), bool)
    valid[:, :3] = True
    y = x.copy()
    bands.mirror_fill(y, valid)
    assert np.array_equal(y[:, :, :3], x[:, :, :3])
    assert np.isin(y[0], x[0, :, :3]).all()  # every pixel is one of the strip's
    np.testing.assert_array_equal(y[:, :, 3], x[:, :, 1])  # first mirror: column 3 = column 1


def test_all_fill_scene_is_refused():
    with pytest.raises(InputError, match="no valid pixels"):
        bands.make_scaler("match", np.zeros((3, 10, 10), np.uint16), "uint16", 0, [0.3] * 3, [0.1] * 3, uri="s.tif")


def test_naip_uint8_dtype_scaling():
    with rasterio.open(NAIP) as ds:
        px, inside = windows.read_window(ds, 0, 0, 64, 64, (64, 64), 64, [1, 2, 3])
    sc = bands.make_scaler("dtype", None, "uint8", None, [0.3] * 3, [0.1] * 3)
    x, ff = sc.apply(px, inside)
    np.testing.assert_allclose(x, px / 255.0, rtol=1e-6)
    assert ff == 0.0


def test_match_is_refused_for_a_scene_too_small_or_of_one_cover():
    """The README scene (varied, Level-1 digital numbers with a large offset) can be matched;
    a crop of its reservoir (open water alone, repeated to pass the size rule) cannot, nor
    a scene of fewer than 16 tiles' pixels."""
    from rasterio.windows import Window

    with rasterio.open(LANDSAT) as ds:
        whole = windows.decimated_read(ds, [3, 2, 1], fill=0)
        water = ds.read([3, 2, 1], window=Window(1200, 560, 96, 96))
    assert bands.match_unfit(whole, 0) is None
    many = np.tile(water, (1, 3, 3))  # 82,944 pixels of the reservoir
    why = bands.match_unfit(many, 0)
    assert why is not None and "nearly uniform" in why
    small = whole[:, 300:500, 300:500]  # 40,000 pixels
    assert "only 40,000 valid pixels" in bands.match_unfit(small, 0)

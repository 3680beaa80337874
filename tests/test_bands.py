import numpy as np
import pytest
import rasterio

from raylib import bands, tiling
from raylib.errors import ConfigError, InputError

from .conftest import LANDSAT, LANDSAT_B2, NAIP


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
        sample = tiling.decimated_read(ds, [3, 2, 1])
    tm, ts = [0.35, 0.38, 0.41], [0.2, 0.14, 0.12]
    sc = bands.make_scaler("match", sample, "uint16", 0, tm, ts)
    valid = ~np.all(sample == 0, axis=0)
    x = sample[:, valid].astype(np.float32) * sc.gain[:, None] + sc.offset[:, None]
    np.testing.assert_allclose(x.mean(1), tm, atol=1e-3)
    np.testing.assert_allclose(x.std(1), ts, atol=1e-3)


def test_fill_fraction_and_fill_replacement():
    sc = bands.make_scaler("dtype", None, "uint8", 0, [0.5, 0.5, 0.5], [0.1, 0.1, 0.1])
    raw = np.full((3, 4, 4), 255, np.uint8)
    raw[:, :2, :] = 0  # top half fill
    inside = np.ones((4, 4), bool)
    inside[:, 3] = False  # padding column
    x, ff = sc.apply(raw, inside)
    assert ff == pytest.approx(6 / 12)  # 6 of 12 in-scene pixels are fill
    assert np.allclose(x[:, :2, :], 0.5) and np.allclose(x[:, 2:, :3], 1.0) and np.allclose(x[:, :, 3], 0.5)


def test_all_fill_scene_is_refused():
    with pytest.raises(InputError, match="no valid pixels"):
        bands.make_scaler("match", np.zeros((3, 10, 10), np.uint16), "uint16", 0, [0.3] * 3, [0.1] * 3, uri="s.tif")


def test_naip_uint8_dtype_scaling():
    with rasterio.open(NAIP) as ds:
        px, inside = tiling.read_window(ds, 0, 0, 64, 64, (64, 64), 64, [1, 2, 3])
    sc = bands.make_scaler("dtype", None, "uint8", None, [0.3] * 3, [0.1] * 3)
    x, ff = sc.apply(px, inside)
    np.testing.assert_allclose(x, px / 255.0, rtol=1e-6)
    assert ff == 0.0

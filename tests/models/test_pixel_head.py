"""The pixel classifier beside a tile head: per-pixel features, a tile's mean pixel
probabilities, the mix with the tile head, save/load (numpy prediction)."""

import numpy as np

from raylib.models.pixel_head import PixelHead, combine, fit_pixel_head, tile_proba
from raylib.raster.bands import pixel_feature_count, pixel_features


def test_pixel_features_are_physical_bands_and_pairwise_differences():
    raw = np.arange(2 * 3 * 4 * 4, dtype=np.uint16).reshape(2, 3, 4, 4) + 1
    valid = np.ones((2, 4, 4), bool)
    valid[1, 0, 0] = False
    gain, offset = np.array([0.5, 1.0, 2.0]), np.array([0.0, 1.0, -1.0])
    f = pixel_features(raw, valid, gain, offset, stride=2)
    assert f.shape == (2, 4, 3 + 3)  # 2x2 pixels per tile; 3 bands + 3 pairs
    x = raw[0, :, 2, 2].astype(np.float32) * gain + offset  # tile 0, pixel (2, 2): 4th of the stride grid
    a, b, c = x
    np.testing.assert_allclose(f[0, 3], [a, b, c, (a - b) / (a + b), (a - c) / (a + c), (b - c) / (b + c)], rtol=1e-6)
    assert np.isnan(f[1, 0]).all() and not np.isnan(f[1, 1:]).any()  # the invalid pixel (0, 0) of tile 1


def test_texture_features_are_local_means_and_spreads_of_valid_pixels():
    rng = np.random.default_rng(0)
    raw = rng.integers(1, 1000, (1, 2, 6, 6)).astype(np.uint16)
    valid = np.ones((1, 6, 6), bool)
    valid[0, 1, 2] = False
    gain, offset = np.array([0.01, 0.02]), np.array([0.0, 0.1])
    f = pixel_features(raw, valid, gain, offset, stride=1, window=3)
    assert f.shape == (1, 36, 2 + 1 + 4) and pixel_feature_count(2, 3) == 7
    x = raw[0].astype(np.float32) * gain[:, None, None] + offset[:, None, None]
    nb = [(r, c) for r in (1, 2, 3) for c in (2, 3, 4) if valid[0, r, c]]  # around pixel (2, 3), less (1, 2)
    vals = np.array([x[:, r, c] for r, c in nb])
    np.testing.assert_allclose(f[0, 2 * 6 + 3, 3:5], vals.mean(0), rtol=1e-5)
    np.testing.assert_allclose(f[0, 2 * 6 + 3, 5:7], vals.std(0), rtol=1e-3)
    corner = np.array([x[:, r, c] for r in (0, 1) for c in (0, 1)])  # the window clipped by the tile's edge
    np.testing.assert_allclose(f[0, 0, 3:5], corner.mean(0), rtol=1e-5)


def _head(seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (300, 6)), rng.normal(2, 1, (300, 6))]).astype(np.float32)
    y = np.repeat([0, 2], 300)  # classes 0 and 2 of a 3-class model
    return fit_pixel_head(X, y, n_bands=3, stride=2, window=0, seed=seed), X


def test_tile_probability_is_the_mean_over_valid_pixels_and_survives_save_load(tmp_path):
    head, X = _head()
    feats = X[:12].reshape(3, 4, 6).copy()
    feats[1, :2] = np.nan  # two invalid pixels
    feats[2] = np.nan  # no valid pixel
    p = head.tile_proba(feats)
    np.testing.assert_allclose(p[0], head.head.predict_proba(feats[0]).mean(0), rtol=1e-6)
    np.testing.assert_allclose(p[1], head.head.predict_proba(feats[1, 2:]).mean(0), rtol=1e-6)
    assert np.isnan(p[2]).all()
    spec = head.save(tmp_path)
    assert spec["classes"] == [0, 2] and spec["n_bands"] == 3 and spec["stride"] == 2 and spec["window"] == 0
    loaded = PixelHead.load(tmp_path, spec)
    assert type(loaded.head).__module__ == "raylib.models.saved_heads"  # numpy: no scikit-learn in read tasks
    np.testing.assert_allclose(loaded.tile_proba(feats), p, rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(tile_proba(loaded.head, feats), p, rtol=1e-5, equal_nan=True)


def test_combine_averages_into_the_heads_classes_and_keeps_rows_without_pixels():
    probs = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], np.float32)
    pix = np.array([[1.0, 0.0], [np.nan, np.nan]], np.float32)  # classes 0 and 2
    out = combine(probs, pix, [0, 2])
    np.testing.assert_allclose(out[0], [2 / 3 + 0.2 / 3, 0.3 / 3, 0.5 / 3], rtol=1e-6)
    np.testing.assert_allclose(out[1], probs[1])

"""A pixel classifier beside a tile head: each pixel of a tile classified from its spectral
bands, the tile's class probabilities the mean over its valid pixels.

A head on a store learns from one label per tile; a class raster labels every pixel of a
labelled tile (~480 per 640 m Landsat tile). A classifier of the drawn tiles' pixels uses
those labels, and its tile probabilities, mixed with the tile head's, map NC Wake better
with a few labelled tiles per class than either alone (BENCHMARKS.md, "Embed once"). It needs
the tiles' pixels, so a model with one maps imagery (``landcover map``), not a store
(``remap`` refuses it).

Saved in the model directory as ``pixels/`` (a numpy-predictable head of
``models.saved_heads``: an MLP on standardised features) and ``model.json``
``head.pixels``: the number of spectral bands it reads, the pixel stride and the texture
window.
Prediction is numpy only, so the map's read tasks run it (no scikit-learn there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raylib.models.head_loading import load_saved_head

FOLDER = "pixels"
STRIDE = 2  # every 2nd pixel of each side: map tiles are resampled, 1/4 of the pixels says as much
WINDOW = 9  # texture over 9 x 9 pixels of the map grid (90 m at 10 m): +0.01-0.02 on NC Wake
HIDDEN = 32
PIXEL_WEIGHT = 2 / 3  # the pixel classifier's share of a tile's probabilities (the tile head has the rest)
MAX_PIXELS = 200_000  # training pixels kept (a random subset beyond that: minutes -> seconds)


def tile_proba(head, feats: np.ndarray) -> np.ndarray:
    """``feats`` (N, P, F) per-pixel features (NaN rows: pixels without a valid value) ->
    (N, K) the mean of the valid pixels' class probabilities; NaN for a tile without any."""
    n, p, f = feats.shape
    flat = feats.reshape(n * p, f)
    ok = ~np.isnan(flat).any(axis=1)
    k = len(head.classes_)
    out = np.full((n, k), np.nan, np.float32)
    if not ok.any():
        return out
    proba = head.predict_proba(flat[ok])
    tile = np.repeat(np.arange(n), p)[ok]
    cnt = np.bincount(tile, minlength=n)
    sums = np.stack([np.bincount(tile, weights=proba[:, c], minlength=n) for c in range(k)], axis=1)
    have = cnt > 0
    out[have] = (sums[have] / cnt[have, None]).astype(np.float32)
    return out


def combine(probs: np.ndarray, pixel_probs: np.ndarray, classes: list[int]) -> np.ndarray:
    """The pixel classifier's tile probabilities (N, len(classes); ``classes`` their positions
    among the K) weighted ``PIXEL_WEIGHT`` against the tile head's (N, K); a row of NaN pixel
    probabilities (a tile whose statistics could not be read) keeps the tile head's."""
    full = np.zeros(probs.shape, np.float32)
    full[:, classes] = pixel_probs
    have = np.isfinite(pixel_probs).all(axis=1)
    out = np.asarray(probs, np.float32).copy()
    out[have] = PIXEL_WEIGHT * full[have] + (1 - PIXEL_WEIGHT) * out[have]
    return out


class PixelHead:
    """A saved pixel classifier (``SavedHead``, or a fitted estimator) with what it reads:
    ``n_bands`` spectral bands, every ``stride``-th pixel, texture over ``window`` pixels
    (``bands.pixel_features``)."""

    def __init__(self, head, n_bands: int, stride: int = STRIDE, window: int = WINDOW):
        self.head, self.n_bands, self.stride, self.window = head, int(n_bands), int(stride), int(window)

    @property
    def width(self) -> int:
        return len(self.head.classes_)

    def tile_proba(self, feats: np.ndarray) -> np.ndarray:
        return tile_proba(self.head, feats)

    def save(self, folder) -> dict:
        spec = self.head.save(Path(folder) / FOLDER)
        return {"folder": FOLDER, "head": spec, "n_bands": self.n_bands, "stride": self.stride,
                "window": self.window, "classes": [int(c) for c in self.head.classes_]}

    @classmethod
    def load(cls, folder, spec: dict) -> "PixelHead":
        return cls(load_saved_head(Path(folder) / spec["folder"], spec["head"]), spec["n_bands"], spec["stride"],
                   spec.get("window", 0))


def fit_pixel_head(X: np.ndarray, y: np.ndarray, n_bands: int, stride: int = STRIDE, window: int = WINDOW,
                   seed: int = 0) -> PixelHead:
    """An MLP (``HIDDEN`` ReLU units, class-balanced, early stopping) on labelled pixels'
    features (``bands.pixel_features`` rows) -> ``PixelHead``."""
    from raylib.models.heads import MLPHead

    if len(X) > MAX_PIXELS:
        keep = np.sort(np.random.default_rng(seed).choice(len(X), MAX_PIXELS, replace=False))
        X, y = X[keep], y[keep]
    head = MLPHead(hidden=HIDDEN, alpha=1e-3, max_iter=200, batch_size=256, l2_normalize=False,
                   random_state=seed).fit(X, y)
    return PixelHead(head, n_bands, stride, window)

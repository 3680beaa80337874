"""Handcrafted baselines (the seed experiment's comparison): raw pixels (for PCA) and HOG."""

from __future__ import annotations

import numpy as np


def raw_pixels(images: np.ndarray) -> np.ndarray:
    """uint8/float (N, C, H, W) -> float32 (N, C*H*W) in [0, 1]."""
    x = images.astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    return x.reshape(len(x), -1)


def hog(images: np.ndarray, cell: int = 8, bins: int = 9, block: int = 2) -> np.ndarray:
    """Histogram of oriented gradients (Dalal & Triggs) on the grey image, vectorised.

    Unsigned orientations in ``bins`` bins over 0-180 degrees, ``cell`` px cells,
    ``block`` x ``block`` cell blocks with L2-Hys normalisation (clip 0.2).
    """
    g = images.astype(np.float32).mean(axis=1)  # (N, H, W)
    n, h, w = g.shape
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[:, :, 1:-1] = g[:, :, 2:] - g[:, :, :-2]
    gy[:, 1:-1, :] = g[:, 2:, :] - g[:, :-2, :]
    mag = np.hypot(gx, gy)
    ang = np.rad2deg(np.arctan2(gy, gx)) % 180.0
    b = np.minimum((ang / (180.0 / bins)).astype(np.int64), bins - 1)
    ch, cw = h // cell, w // cell
    mag = mag[:, : ch * cell, : cw * cell]
    b = b[:, : ch * cell, : cw * cell]
    hist = np.empty((n, ch, cw, bins), np.float32)
    for k in range(bins):
        hist[..., k] = (mag * (b == k)).reshape(n, ch, cell, cw, cell).sum(axis=(2, 4))
    feats = []
    for i in range(ch - block + 1):
        for j in range(cw - block + 1):
            v = hist[:, i : i + block, j : j + block, :].reshape(n, -1)
            v = v / np.sqrt((v**2).sum(1, keepdims=True) + 1e-6)
            v = np.minimum(v, 0.2)
            v = v / np.sqrt((v**2).sum(1, keepdims=True) + 1e-6)
            feats.append(v)
    return np.concatenate(feats, axis=1)

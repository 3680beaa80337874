"""The one L2 rule of the embedding space: a head, a scene's centre, a similarity search and
the tile features each put rows on the unit sphere the same way (a centre computed one way
and a head fitted another would not meet)."""

from __future__ import annotations

import numpy as np

EPS = 1e-12  # a zero row stays zero


def unit_rows(x, dtype=np.float32) -> np.ndarray:
    """``x`` (n, d) with each row scaled to unit L2 norm, as ``dtype`` (None: as given)."""
    x = np.asarray(x) if dtype is None else np.asarray(x, dtype)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)

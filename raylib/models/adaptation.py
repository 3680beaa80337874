"""Scene-centre adaptation: a head trained elsewhere, re-centred on the scene it maps.

A head standardises the (L2-normalised) embeddings with its training set's mean before its
linear map. Another sensor, season or GSD shifts every embedding of a scene the same way,
and the shift pushes tiles over the class boundaries (the README's Landsat scene: half of it
water). Re-centring puts the scene's own mean in the training mean's place, so that what
the head sees is the tile's difference from the scene's typical tile. The mean is the
scene's, over a sample of its tiles spread over the whole scene, computed in a first pass
before the scene is mapped, never a batch's (a batch of lake tiles would be re-centred
into land); it is stored with the map (``pipelines.map.adaptation``) so that a resumed or
remapped run uses the same one. Measured in BENCHMARKS.md ("Label-free adaptation"),
together with what did not help (batch-norm re-estimation, re-scaling).

numpy only.
"""

from __future__ import annotations

import numpy as np

METHOD = "scene-centre"
MIN_TILES = 16  # fewer sampled tiles than this: no centre (the scene keeps the training mean), and the summary says so


def unit_rows(emb) -> np.ndarray:
    x = np.asarray(emb, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class CentreSums:
    """Sums of L2-normalised embeddings per scene, added batch by batch (float64), and their
    means: the scenes' centres."""

    def __init__(self):
        self.sum: dict = {}
        self.n: dict = {}

    def add(self, key, emb) -> None:
        if len(emb) == 0:
            return
        s = unit_rows(emb).astype(np.float64).sum(axis=0)
        self.sum[key] = self.sum.get(key, 0.0) + s
        self.n[key] = self.n.get(key, 0) + len(emb)

    def centres(self, min_tiles: int = MIN_TILES) -> dict:
        """key -> (centre float32, tiles); ``None`` as the centre below ``min_tiles`` tiles."""
        return {k: ((self.sum[k] / self.n[k]).astype(np.float32) if self.n[k] >= min_tiles else None, self.n[k])
                for k in self.sum}

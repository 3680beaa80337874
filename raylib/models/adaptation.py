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

from raylib.models.unit_rows import unit_rows

METHOD = "scene-centre"
MIN_TILES = 16  # fewer sampled tiles than this: no centre (the scene keeps the training mean), and the summary says so


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


def predict_scenes(model, emb: np.ndarray, stats: dict | None, scenes, centres: dict | None,
                   spectral: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``model.predict_embeddings`` (a ``LandcoverModel``) of rows of several scenes
    (``scenes``: each row's key in ``centres``), each scene's rows with its own centre (a
    scene without one: the head as trained); no ``centres``: every row as trained, in one
    call. The map's model actor and ``remap`` apply a head so."""
    if not centres:
        return model.predict_embeddings(emb, stats, spectral=spectral)
    scenes = np.asarray(scenes)
    probs = np.empty((len(emb), len(model.classes)), np.float32)
    ood = np.empty(len(emb), np.float32)
    for s in np.unique(scenes):
        rows = np.flatnonzero(scenes == s)
        part = {k: np.asarray(v)[rows] for k, v in stats.items()} if stats else None
        probs[rows], ood[rows] = model.predict_embeddings(emb[rows], part, centres.get(s), spectral=spectral)
    return probs, ood

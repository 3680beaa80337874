"""The map job's model actor: loads the model once, predicts class probabilities (and, for
the store, embeddings) for blocks of read tiles."""

from __future__ import annotations

import numpy as np

from raylib.models.model_dir import LandcoverModel
from raylib.pipelines.common.stages import local_folder, set_torch_threads
from raylib.raster.reading import model_batches, rows_out


class Predictor:
    """Actor: loads the model once, predicts class probabilities for batches of tiles."""

    def __init__(self, model_ref, torch_threads: int | None, actors: int = 1, device: str = "auto",
                 tta: bool | None = None, batch_size: int = 64, embeddings: bool = False):
        set_torch_threads(torch_threads, actors)
        uri = local_folder(model_ref, "ray-models")
        self.model = LandcoverModel.load(uri, device=device, tta=tta)
        self.k = len(self.model.classes)
        self.batch_size = batch_size
        self.embeddings = embeddings

    def __call__(self, batch: dict) -> dict:
        """One read block (up to ``read_units_per_task * read_batch_size`` tiles) in, its
        rows out; the model sees the block's readable tiles in batches of ``batch_size``."""
        n = len(batch["idx"])
        probs = np.full((n, self.k), np.nan, np.float32)
        ood = np.full(n, np.nan, np.float32)
        emb = None
        stat_cols = ("band_mean", "band_std", "ndvi", "ndwi") if self.model.needs_statistics else ()
        for sel, x in model_batches(batch, self.batch_size):
            stats = {k: batch[k][sel] for k in stat_cols} or None
            if self.embeddings:
                probs[sel], ood[sel], e = self.model.predict(x, with_embeddings=True, stats=stats)
                if emb is None:
                    emb = np.zeros((n, e.shape[1]), np.float16)
                emb[sel] = e
            else:
                probs[sel], ood[sel] = self.model.predict(x, stats=stats)
        if "pixel_out" in batch:  # the read tasks ran the model's pixel classifier
            probs = self.model.with_pixels(probs, batch.pop("pixel_out"))
        out = {**rows_out(batch, probs), "ood": ood}
        if self.embeddings:
            out["embedding"] = emb if emb is not None else np.zeros((n, 0), np.float16)
        return out

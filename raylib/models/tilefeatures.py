"""Head features of a tile beyond its embedding: the per-tile spectral statistics.

An RGB backbone cannot see near-infrared; the read stage's per-tile band means and
standard deviations and NDVI/NDWI can. A head trained on a few labelled tiles of an area
(``landcover train-head --store``) sees ``[spectral statistics, PCA of the embedding]``:
with tens of labelled tiles a 1,280-d embedding drowns a few tens of spectral numbers, so
the embedding is reduced to its first principal components over the store's tiles, with the
band pairs' normalised differences added and a stronger regularisation (the measurements on
NC Wake that chose this: BENCHMARKS.md, "Embed once, map many times").

``TileFeatures`` is fitted once (the PCA on every embedding of the store: no labels used)
and saved with the head as safetensors; the map job and remap build the same vector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raylib.models.unit_rows import unit_rows

FILE = "features.safetensors"
MODES = ("embedding", "spectral", "embedding+spectral")


def spectral_vector(stats: dict, n_bands: int) -> np.ndarray:
    """(N, 2 n_bands + 2 + n_bands (n_bands - 1) / 2): band means, band standard deviations,
    NDVI, NDWI, and the normalised difference ``(a - b) / (a + b)`` of every pair of band
    means (NDVI, NDWI, NDBI, NBR and their kin, whatever the sensor's band order); missing -> 0."""
    bm = np.asarray(stats["band_mean"], np.float32)[:, :n_bands]
    bs = np.asarray(stats["band_std"], np.float32)[:, :n_bands]
    if bm.shape[1] < n_bands:  # a scene with fewer bands than the training scenes
        pad = np.full((len(bm), n_bands - bm.shape[1]), np.nan, np.float32)
        bm, bs = np.concatenate([bm, pad], 1), np.concatenate([bs, pad], 1)
    idx = np.stack([np.asarray(stats["ndvi"], np.float32), np.asarray(stats["ndwi"], np.float32)], axis=1)
    i, j = np.triu_indices(n_bands, k=1)
    a, b = bm[:, i], bm[:, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        nd = np.where(np.abs(a + b) > 1e-6, (a - b) / (a + b), np.nan)
    return np.nan_to_num(np.concatenate([bm, bs, idx, nd], axis=1), nan=0.0).astype(np.float32)


class TileFeatures:
    """embedding (whole, or its first ``n_components`` principal components) and/or the
    spectral vector -> one feature row per tile."""

    def __init__(self, mode: str, n_bands: int, pca_mean=None, pca_components=None):
        self.mode, self.n_bands = mode, int(n_bands)
        self.pca_mean = None if pca_mean is None else np.asarray(pca_mean, np.float32)
        self.pca_components = None if pca_components is None else np.asarray(pca_components, np.float32)

    @classmethod
    def fit(cls, mode: str, embeddings: np.ndarray, n_bands: int, n_components: int = 8) -> "TileFeatures":
        if mode not in MODES:
            raise ValueError(mode)
        if mode != "embedding+spectral":
            return cls(mode, n_bands)
        X = unit_rows(embeddings)
        mean = X.mean(axis=0)
        _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
        return cls(mode, n_bands, mean, vt[:n_components])

    def transform(self, embeddings: np.ndarray | None, stats: dict | None) -> np.ndarray:
        parts = []
        if self.mode in ("spectral", "embedding+spectral"):
            if stats is None:
                raise ValueError("this head needs the tiles' spectral statistics")
            parts.append(spectral_vector(stats, self.n_bands))
        if self.mode == "embedding":
            parts.append(np.asarray(embeddings, np.float32))
        elif self.mode == "embedding+spectral":
            parts.append((unit_rows(embeddings) - self.pca_mean) @ self.pca_components.T)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def spec(self) -> dict:
        return {"mode": self.mode, "n_bands": self.n_bands, "file": FILE if self.pca_components is not None else None}

    def save(self, folder: Path) -> dict:
        if self.pca_components is not None:
            from safetensors.numpy import save_file

            save_file({"pca_mean": np.ascontiguousarray(self.pca_mean),
                       "pca_components": np.ascontiguousarray(self.pca_components)}, str(Path(folder) / FILE))
        return self.spec()

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "TileFeatures":
        t = {}
        if spec.get("file"):
            from safetensors.numpy import load_file

            t = load_file(str(Path(folder) / spec["file"]))
        return cls(spec["mode"], spec["n_bands"], t.get("pca_mean"), t.get("pca_components"))


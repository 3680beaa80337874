"""The spectral head: what a tile's NIR says of its class, for scenes that have NIR.

An RGB model cannot tell dark forest from dark water, nor brown leaf-off forest from bare
fields; the near infrared can (open water has NDWI > 0 and NDVI near 0, vegetation the
reverse, whatever its colour). The spectral head is a logistic regression on two numbers
per tile, the mean per-pixel NDVI and NDWI (McFeeters) that the map's read tasks compute
for every scene with red, green and NIR bands (``raster.bands.tile_statistics``), fitted on
multispectral patches of the image head's own classes (the built-in model: the EuroSAT MS
sample, Sentinel-2 L1C reflectance). Beside the image head it is a prior: the map's
probabilities are the two heads' weighted geometric mean (log-linear pooling,
``pool``), on the tiles that have both indices; a tile without NIR keeps the image head's.
Measured in BENCHMARKS.md ("Label-free adaptation").

numpy only at prediction (fitting uses scikit-learn).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from raylib.errors import InputError

FEATURES = ("ndvi", "ndwi")
FILE = "spectral.safetensors"
# EuroSAT MS file order: B01..B12, B8A -> red B04, green B03, NIR B08 (1-based 4, 3, 8)
EUROSAT_MS_ROLES = {"red": 4, "green": 3, "nir": 8}
EUROSAT_MS_SCALE = 1e-4  # L1C reflectance x 10000


def eurosat_ms_indices(folder: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 2), labels (N,)) of every GeoTIFF under ``folder/<Class>/`` whose class is
    one of ``classes``: each patch's mean per-pixel NDVI and NDWI, computed as the map
    computes them for a tile."""
    import rasterio

    from raylib.raster.bands import tile_statistics

    X, y = [], []
    bands = sorted(EUROSAT_MS_ROLES.values())
    roles = {r: bands.index(b) for r, b in EUROSAT_MS_ROLES.items()}
    for ci, c in enumerate(classes):
        for f in sorted(glob.glob(os.path.join(folder, c, "*.tif"))):
            with rasterio.open(f) as ds:
                if ds.count < max(bands):
                    raise InputError(f"{f} has {ds.count} bands; a EuroSAT MS patch has 13.",
                                     "point the spectral head at the EuroSAT MS sample (13-band GeoTIFFs).")
                raw = ds.read(bands)[None]
            st = tile_statistics(raw, np.ones((1, *raw.shape[2:]), bool), np.full(len(bands), EUROSAT_MS_SCALE),
                                 np.zeros(len(bands)), roles)
            X.append([st["ndvi"][0], st["ndwi"][0]])
            y.append(ci)
    if not X:
        raise InputError(f"No multispectral patch of the classes {classes} under {folder}.",
                         "lay the set out as <Class>/<patch>.tif (EuroSAT MS band order).")
    return np.asarray(X, np.float32), np.asarray(y, np.int64)


class SpectralHead:
    """Class probabilities from a tile's (NDVI, NDWI); ``weight``: the image head's share in
    the pooled probabilities (``pool``)."""

    def __init__(self, mean, scale, coef, intercept, weight: float = 0.5):
        self.mean, self.scale = np.asarray(mean, np.float32), np.asarray(scale, np.float32)
        self.coef, self.intercept = np.asarray(coef, np.float32), np.asarray(intercept, np.float32)
        self.weight = float(weight)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, n_classes: int, C: float = 1.0, weight: float = 0.5) -> "SpectralHead":
        from sklearn.linear_model import LogisticRegression

        if len(np.unique(y)) != n_classes:
            raise InputError(f"The spectral head's patches cover {len(np.unique(y))} of the {n_classes} classes.",
                             "give multispectral patches of every class of the image head.")
        mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-6
        lr = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit((X - mean) / scale, y)
        return cls(mean, scale, lr.coef_, lr.intercept_, weight)

    def predict_proba(self, ndvi, ndwi) -> np.ndarray:
        from raylib.models.saved_heads import softmax

        X = np.stack([np.asarray(ndvi, np.float32), np.asarray(ndwi, np.float32)], axis=1)
        return softmax(((X - self.mean) / self.scale) @ self.coef.T + self.intercept).astype(np.float32)

    def apply(self, probs: np.ndarray, stats: dict | None) -> np.ndarray:
        """``probs`` pooled with this head's on the rows whose ``stats`` hold both indices in
        reflectance (``stats_reflectance``: a scene of a known sensor). Indices of digital
        numbers or of a display product's values (NAIP's 8-bit bands: NDVI near 0 over
        green prairie) are not the indices the head learnt, and are left out."""
        if not stats or "ndvi" not in stats or "ndwi" not in stats or "stats_reflectance" not in stats:
            return probs
        ndvi, ndwi = np.asarray(stats["ndvi"], np.float32), np.asarray(stats["ndwi"], np.float32)
        rows = np.flatnonzero(np.isfinite(ndvi) & np.isfinite(ndwi) & np.asarray(stats["stats_reflectance"], bool))
        if not len(rows):
            return probs
        out = probs.copy()
        out[rows] = pool(probs[rows], self.predict_proba(ndvi[rows], ndwi[rows]), self.weight)
        return out

    def save(self, folder: Path, source: str, metrics: dict) -> dict:
        from safetensors.numpy import save_file

        # (C order: a fitted estimator's coefficients may be Fortran-ordered, which safetensors would scramble)
        save_file({k: np.ascontiguousarray(v) for k, v in (("mean", self.mean), ("scale", self.scale),
                                                            ("coef", self.coef), ("intercept", self.intercept))},
                  str(Path(folder) / FILE))
        return {"file": FILE, "features": list(FEATURES), "weight": self.weight, "source": source, "metrics": metrics}

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "SpectralHead":
        from safetensors.numpy import load_file

        t = load_file(str(Path(folder) / spec["file"]))
        return cls(t["mean"], t["scale"], t["coef"], t["intercept"], spec.get("weight", 0.5))


def pool(p_image: np.ndarray, p_spectral: np.ndarray, weight: float) -> np.ndarray:
    """The weighted geometric mean of two heads' probabilities, renormalised:
    ``p ∝ p_image^weight · p_spectral^(1 - weight)``."""
    lp = weight * np.log(np.clip(p_image, 1e-9, 1.0)) + (1.0 - weight) * np.log(np.clip(p_spectral, 1e-9, 1.0))
    lp -= lp.max(axis=1, keepdims=True)
    e = np.exp(lp)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def out_of_fold(X: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0, folds: int = 5) -> np.ndarray | None:
    """Each patch's probabilities from a spectral head fitted without its fold (stratified,
    up to ``folds``; None when a class has fewer than 2 patches)."""
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(folds, np.bincount(y, minlength=n_classes).min()))
    if folds < 2:
        return None
    p = np.zeros((len(y), n_classes), np.float32)
    for fit, val in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        p[val] = SpectralHead.fit(X[fit], y[fit], n_classes).predict_proba(X[val, 0], X[val, 1])
    return p


def fit_eurosat_ms(folder: str, classes: list[str], seed: int = 0, weight: float = 0.5) -> tuple[SpectralHead, dict]:
    """The spectral head of ``classes`` fitted on the EuroSAT MS patches under ``folder``, and
    its 5-fold cross-validated balanced accuracy alone (it is a prior, not a classifier:
    NDVI and NDWI tell water, vegetation and built-up apart, not the ten classes)."""
    from sklearn.metrics import balanced_accuracy_score

    X, y = eurosat_ms_indices(folder, classes)
    head = SpectralHead.fit(X, y, len(classes), weight=weight)
    metrics = {"patches": int(len(y))}
    p = out_of_fold(X, y, len(classes), seed)
    if p is not None:
        metrics["cv_balanced_accuracy_alone"] = float(balanced_accuracy_score(y, p.argmax(axis=1)))
    return head, metrics

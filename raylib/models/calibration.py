"""Confidence that means something: temperature scaling (fitted on held-out or
out-of-fold probabilities) and an out-of-distribution score for embeddings.

* Temperature scaling (Guo et al. 2017): one scalar ``T`` divides the log-probabilities,
  fitted by minimising the negative log-likelihood on held-out data; ``T > 1`` softens an
  over-confident head. The predicted class never changes.
* Expected calibration error and the reliability diagram: ``raylib.eval.reliability``.
* Out-of-distribution score: the distance of an embedding to the nearest class centre of
  the training embeddings, in a whitened PCA space of them, divided by the training
  embeddings' own 95th percentile of that distance: above 1, a tile is further from what
  the model was trained on than 95 % of its training tiles.

numpy and scipy only (no torch, no Ray).
"""

from __future__ import annotations

import numpy as np

from raylib.models.unit_rows import unit_rows


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities ``softmax(log(p) / T)``, row by row."""
    if temperature == 1.0:
        return probs
    logp = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return (e / e.sum(axis=1, keepdims=True)).astype(probs.dtype)


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` in [0.05, 20] that minimises the negative log-likelihood of ``y``."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(probs, 1e-12, 1.0))
    rows = np.arange(len(y))

    def nll(log_t):
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[rows, y] - np.log(np.exp(z).sum(axis=1))).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


class OODScorer:
    """Distance to the nearest training class centre in a whitened PCA space of the training
    embeddings, in units of the training embeddings' own 95th percentile."""

    def __init__(self, mean, components, scale, centres, q95: float, quantiles: dict | None = None):
        self.mean = np.asarray(mean, np.float32)
        self.components = np.asarray(components, np.float32)
        self.scale = np.asarray(scale, np.float32)
        self.centres = np.asarray(centres, np.float32)
        self.q95 = float(q95)
        self.quantiles = quantiles or {}

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, n_components: int = 32) -> "OODScorer":
        X = unit_rows(X)
        mean = X.mean(axis=0)
        _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
        k = int(min(n_components, len(s), X.shape[1]))
        comps = vt[:k]
        scale = s[:k] / np.sqrt(max(1, len(X) - 1)) + 1e-6
        z = (X - mean) @ comps.T / scale
        centres = np.stack([z[y == c].mean(axis=0) for c in np.unique(y)])
        self = cls(mean, comps, scale, centres, 1.0)
        raw = self._distance(z)
        self.q95 = float(np.quantile(raw, 0.95))
        self.quantiles = {str(q): float(np.quantile(raw, q) / self.q95) for q in (0.5, 0.9, 0.95, 0.99)}
        return self

    def _distance(self, z: np.ndarray) -> np.ndarray:
        d2 = ((z[:, None, :] - self.centres[None]) ** 2).sum(axis=2)
        return np.sqrt(d2.min(axis=1))

    def score(self, X: np.ndarray) -> np.ndarray:
        z = (unit_rows(X) - self.mean) @ self.components.T / self.scale
        return (self._distance(z) / self.q95).astype(np.float32)

    def tensors(self) -> dict:
        return {"ood_mean": self.mean, "ood_components": self.components, "ood_scale": self.scale,
                "ood_centres": self.centres, "ood_q95": np.array([self.q95], np.float32)}

    @classmethod
    def from_tensors(cls, t: dict, quantiles: dict | None = None) -> "OODScorer":
        return cls(t["ood_mean"], t["ood_components"], t["ood_scale"], t["ood_centres"], float(t["ood_q95"][0]),
                   quantiles)


def oof_temperature(make_head, X: np.ndarray, y: np.ndarray, seed: int) -> float | None:
    """A temperature fitted on out-of-fold probabilities of the training rows (up to 3
    stratified folds, a fresh ``make_head()`` each), so the head itself trains on every
    training row; None when a class has fewer than 2 rows."""
    from sklearn.model_selection import StratifiedKFold

    folds = min(3, int(np.bincount(y).min()))
    if folds < 2:
        return None
    oof = np.zeros((len(y), int(y.max()) + 1), np.float32)
    for fit_i, val_i in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        oof[val_i] = make_head().fit(X[fit_i], y[fit_i]).predict_proba(X[val_i])  # every class in every fold
    return fit_temperature(oof, y)

"""Confidence that means something: temperature scaling, expected calibration error and
a reliability diagram, and an out-of-distribution score for embeddings.

* Temperature scaling (Guo et al. 2017): one scalar ``T`` divides the log-probabilities,
  fitted by minimising the negative log-likelihood on held-out data; ``T > 1`` softens an
  over-confident head. The predicted class never changes.
* Expected calibration error: the mean gap between confidence and accuracy over equal-width
  confidence bins, weighted by the bins' shares.
* Out-of-distribution score: the distance of an embedding to the nearest class centre of
  the training embeddings, in a whitened PCA space of them, divided by the training
  embeddings' own 95th percentile of that distance: above 1, a tile is further from what
  the model was trained on than 95 % of its training tiles.

numpy and scipy only (no torch, no Ray).
"""

from __future__ import annotations

import io

import numpy as np

N_BINS = 15


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


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Expected calibration error and the per-bin figures of a reliability diagram."""
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        m = which == b
        if not m.any():
            continue
        acc, conf = float(correct[m].mean()), float(confidence[m].mean())
        ece += m.mean() * abs(acc - conf)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()), "accuracy": acc,
                     "confidence": conf})
    return {"ece": float(ece), "n": int(len(confidence)), "bins": bins}


def reliability_png(rel: dict, title: str = "reliability diagram") -> bytes:
    """Accuracy per confidence bin (bars) against the diagonal of perfect calibration."""
    from PIL import Image, ImageDraw

    size, pad = 300, 40
    img = Image.new("RGB", (size + 2 * pad, size + 2 * pad + 20), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((pad, 8), f"{title}  (ECE {rel['ece']:.3f}, n {rel['n']})", fill=(0, 0, 0))
    x0, y0 = pad, pad + 10 + size

    def xy(cx, cy):
        return x0 + cx * size, y0 - cy * size

    d.rectangle([x0, y0 - size, x0 + size, y0], outline=(0, 0, 0))
    for b in rel["bins"]:
        (ax, ay), (bx, _) = xy(b["lo"], b["accuracy"]), xy(b["hi"], 0)
        d.rectangle([ax + 1, ay, bx - 1, y0], fill=(70, 130, 200), outline=(40, 80, 150))
        cx, cy = xy(b["confidence"], b["confidence"])
        d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(220, 60, 40))
    d.line([xy(0, 0), xy(1, 1)], fill=(120, 120, 120), width=1)
    d.text((x0, y0 + 4), "confidence 0 .. 1 (bars: accuracy; red: mean confidence)", fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


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
        X = _unit(X)
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
        z = (_unit(X) - self.mean) @ self.components.T / self.scale
        return (self._distance(z) / self.q95).astype(np.float32)

    def tensors(self) -> dict:
        return {"ood_mean": self.mean, "ood_components": self.components, "ood_scale": self.scale,
                "ood_centres": self.centres, "ood_q95": np.array([self.q95], np.float32)}

    @classmethod
    def from_tensors(cls, t: dict, quantiles: dict | None = None) -> "OODScorer":
        return cls(t["ood_mean"], t["ood_components"], t["ood_scale"], t["ood_centres"], float(t["ood_q95"][0]),
                   quantiles)


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)

"""Heads as a model directory stores them, for prediction only: numpy, no scikit-learn.

``models.heads`` holds the heads as scikit-learn estimators (fit, tune, cross-validate);
their fitted state is a few arrays in safetensors. Predicting needs only that state and a
few lines of numpy, given here once and used by both: the estimators' ``predict_proba``
and the saved heads that ``LandcoverModel`` loads in the map's model actors, which thereby
start without importing scikit-learn (seconds of every actor's start: BENCHMARKS.md).
An XGBoost head is loaded through its estimator (XGBoost's own format).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raylib.models.unit_rows import unit_rows


def l2(x: np.ndarray) -> np.ndarray:
    """Rows on the unit sphere, in their own dtype (``unit_rows``: the one rule)."""
    return unit_rows(x, dtype=None)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def standardise(X, mean: np.ndarray, scale: np.ndarray, l2_normalize: bool) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if l2_normalize:
        X = l2(X)
    return (X - mean) / scale


def scores_to_proba(z: np.ndarray) -> np.ndarray:
    """Class scores -> probabilities: softmax, or scikit-learn's sigmoid form for one score."""
    if z.shape[1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-z[:, 0].astype(np.float64)))
        return np.column_stack([1 - p1, p1])
    return softmax(z)


def logistic_scores(Xs: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    return Xs @ coef.T + intercept


def mlp_scores(Xs: np.ndarray, coefs: list, intercepts: list) -> np.ndarray:
    h = Xs
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        h = np.maximum(h @ W + b, 0)
    return h @ coefs[-1] + intercepts[-1]


def knn_proba(X: np.ndarray, train: np.ndarray, y: np.ndarray, n_classes: int, n_neighbors: int,
              weights: str) -> np.ndarray:
    """Votes of the ``n_neighbors`` most cosine-similar training rows (``train``: unit rows)."""
    q = l2(np.asarray(X, dtype=np.float32))
    k = min(n_neighbors, len(train))
    out = np.zeros((len(q), n_classes), np.float64)
    for i in range(0, len(q), 2048):
        sim = q[i : i + 2048] @ train.T
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, nn, axis=1)
        w = 1.0 / np.maximum(1.0 - s, 1e-6) if weights == "distance" else np.ones_like(s)
        rows = np.repeat(np.arange(len(nn)), k)
        np.add.at(out[i : i + 2048], (rows, y[nn].ravel()), w.ravel())
    return out / out.sum(axis=1, keepdims=True)


def mlp_layers(t: dict) -> tuple[list, list]:
    """An MLP head's saved weights (``coef_0``, ``intercept_0``, ...) -> (coefs, intercepts)."""
    n = sum(1 for k in t if k.startswith("coef_"))
    return [t[f"coef_{i}"] for i in range(n)], [t[f"intercept_{i}"] for i in range(n)]


def load_tensors(folder, spec: dict, file: str | None = None) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(Path(folder) / (file or spec.get("file", "head.safetensors"))))


class SavedHead:
    """A saved head's ``predict_proba`` and ``classes_`` (the fitted estimator's contract
    for prediction; fitting needs ``models.heads``)."""

    def __init__(self, kind: str, params: dict, tensors: dict):
        self.kind, self.params, self.t = kind, params, tensors
        self.classes_ = tensors["classes"]
        if kind == "knn":
            self.n_features_in_ = int(tensors["X"].shape[1])
        else:
            self.n_features_in_ = int(tensors["mean"].shape[0])
            self.coefs, self.intercepts = mlp_layers(tensors)

    def _input(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[-1] if X.ndim else 0} features, but this {self.kind} head "
                             f"is expecting {self.n_features_in_} features as input.")
        return X

    @property
    def centred(self) -> bool:
        """True when the head standardises L2-normalised inputs (its ``mean`` is the training
        embeddings' centre, which ``predict_proba(centre=...)`` can replace)."""
        return self.kind != "knn" and bool(self.params.get("l2_normalize", True))

    def predict_proba(self, X, centre: np.ndarray | None = None) -> np.ndarray:
        """``centre``: the mean of the L2-normalised inputs of the scene being mapped, in the
        training mean's place (``models.adaptation``); heads that are not ``centred`` take none."""
        X, t, p = self._input(X), self.t, self.params
        if self.kind == "knn":
            return knn_proba(X, t["X"], t["y"], len(self.classes_), p.get("n_neighbors", 10),
                             p.get("weights", "distance"))
        if centre is not None and not self.centred:
            raise ValueError(f"a {self.kind} head without l2_normalize takes no centre")
        Xs = standardise(X, t["mean"] if centre is None else np.asarray(centre, np.float32), t["scale"],
                         p.get("l2_normalize", True))
        if self.kind == "logistic_regression":
            return scores_to_proba(logistic_scores(Xs, t["coef"], t["intercept"]))
        return scores_to_proba(mlp_scores(Xs, self.coefs, self.intercepts))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

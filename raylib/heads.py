"""Classification heads on frozen embeddings, as scikit-learn estimators, saved without pickle.

``LogisticHead`` = optional L2 normalisation -> standardisation -> multinomial logistic
regression.  Its fitted state is a handful of arrays, stored as safetensors plus a JSON
of parameters, so loading a model directory never executes pickle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


def _l2(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


class LogisticHead(ClassifierMixin, BaseEstimator):
    """Logistic regression head (scikit-learn API: ``fit``/``predict``/``predict_proba``)."""

    kind = "logistic_regression"

    def __init__(self, C: float = 0.5, max_iter: int = 2000, l2_normalize: bool = True,
                 class_weight: str | None = "balanced"):
        self.C = C
        self.max_iter = max_iter
        self.l2_normalize = l2_normalize
        self.class_weight = class_weight

    def _prep(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if self.l2_normalize:
            X = _l2(X)
        return (X - self.mean_) / self.scale_

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        Xn = _l2(X) if self.l2_normalize else X
        self.mean_ = Xn.mean(axis=0).astype(np.float32)
        sd = Xn.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        clf = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)
        clf.fit((Xn - self.mean_) / self.scale_, y)
        self.classes_ = clf.classes_
        self.coef_ = clf.coef_.astype(np.float32)
        self.intercept_ = clf.intercept_.astype(np.float32)
        return self

    def decision_function(self, X) -> np.ndarray:
        return self._prep(X) @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        z = self.decision_function(X).astype(np.float64)
        if z.shape[1] == 1:  # binary: sklearn's sigmoid form
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.column_stack([1 - p1, p1])
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ------------------------------------------------------------------ safe persistence

    def save(self, folder: str | Path) -> dict:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "coef": np.ascontiguousarray(self.coef_),
                "intercept": np.ascontiguousarray(self.intercept_),
                "mean": self.mean_,
                "scale": self.scale_,
                "classes": np.asarray(self.classes_, dtype=np.int64),
            },
            str(folder / "head.safetensors"),
        )
        return {"type": self.kind, "file": "head.safetensors", "params": self.get_params()}

    @classmethod
    def load(cls, folder: str | Path, spec: dict) -> "LogisticHead":
        from safetensors.numpy import load_file

        t = load_file(str(Path(folder) / spec.get("file", "head.safetensors")))
        head = cls(**spec.get("params", {}))
        head.coef_, head.intercept_ = t["coef"], t["intercept"]
        head.mean_, head.scale_ = t["mean"], t["scale"]
        head.classes_ = t["classes"]
        return head


HEADS = {LogisticHead.kind: LogisticHead}


def load_head(folder: str | Path, spec: dict):
    kind = spec.get("type")
    if kind not in HEADS:
        from .errors import InputError

        raise InputError(f"Model directory {folder} has an unknown head type {kind!r}.",
                         f"supported: {sorted(HEADS)}; upgrade landcover-ray if it is newer.")
    return HEADS[kind].load(folder, spec)


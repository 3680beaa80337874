"""Classification heads on frozen embeddings, as scikit-learn estimators, saved without pickle.

``LogisticHead`` = optional L2 normalisation -> standardisation -> multinomial logistic
regression.  Its fitted state is a handful of arrays, stored as safetensors plus a JSON
of parameters, so loading a model directory never executes pickle. The prediction maths
lives in ``models.saved_heads``, which a model directory's heads are loaded with for
prediction (no scikit-learn import in the map's model actors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from raylib.errors import InputError
from raylib.models.saved_heads import knn_proba, l2
from raylib.models.saved_heads import load_tensors as _load_tensors
from raylib.models.saved_heads import logistic_scores, mlp_layers, mlp_scores, scores_to_proba, standardise


def _save_tensors(head, folder, tensors: dict, file: str = "head.safetensors") -> dict:
    """Write ``tensors`` as safetensors; return the head spec for model.json."""
    from safetensors.numpy import save_file

    Path(folder).mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(Path(folder) / file))
    return {"type": head.kind, "file": file, "params": head.get_params()}


def _fit_input(head, X, y) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's input contract for ``fit``: a 2-d finite float array (sparse, complex,
    empty and NaN/inf refused with sklearn's messages), classification targets, at least two
    classes; sets ``n_features_in_``."""
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import validate_data

    X, y = validate_data(head, X, y, dtype=[np.float32, np.float64])
    check_classification_targets(y)
    if len(np.unique(y)) < 2:
        raise ValueError(f"{type(head).__name__} needs samples of at least 2 classes in the data; got 1 class.")
    return X, y


def _predict_input(head, X) -> np.ndarray:
    """``predict``'s contract: fitted (``NotFittedError``), the features ``fit`` saw."""
    from sklearn.utils.validation import check_is_fitted, validate_data

    check_is_fitted(head, "classes_")
    return validate_data(head, X, dtype=[np.float32, np.float64], reset=False)


def _balanced_weights(y: np.ndarray, class_weight) -> np.ndarray | None:
    if class_weight is None:
        return None
    from sklearn.utils.class_weight import compute_sample_weight

    return compute_sample_weight(class_weight, y)


class _Standardised(ClassifierMixin, BaseEstimator):
    """Shared: optional L2 normalisation, then standardisation learned in ``fit``."""

    def _fit_scaler(self, X):
        X = np.asarray(X, dtype=np.float32)
        Xn = l2(X) if self.l2_normalize else X
        self.mean_ = Xn.mean(axis=0).astype(np.float32)
        sd = Xn.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        return (Xn - self.mean_) / self.scale_

    def _prep(self, X):
        return standardise(X, self.mean_, self.scale_, self.l2_normalize)

    def predict(self, X) -> np.ndarray:
        p = self.predict_proba(X)  # checks fitted and the input first
        return self.classes_[np.argmax(p, axis=1)]


class LogisticHead(_Standardised):
    """Logistic regression head (scikit-learn API: ``fit``/``predict``/``predict_proba``)."""

    kind = "logistic_regression"

    def __init__(self, C: float = 0.5, max_iter: int = 2000, l2_normalize: bool = True,
                 class_weight: str | None = "balanced"):
        self.C = C
        self.max_iter = max_iter
        self.l2_normalize = l2_normalize
        self.class_weight = class_weight

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        X, y = _fit_input(self, X, y)
        Xs = self._fit_scaler(X)
        clf = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)
        clf.fit(Xs, y)
        self.classes_ = clf.classes_
        self.coef_ = clf.coef_.astype(np.float32)
        self.intercept_ = clf.intercept_.astype(np.float32)
        self.n_iter_ = clf.n_iter_
        return self

    def _scores(self, X) -> np.ndarray:
        return logistic_scores(self._prep(_predict_input(self, X)), self.coef_, self.intercept_)

    def decision_function(self, X) -> np.ndarray:
        """Class scores (n, k); for two classes, the positive class's score (n,), as scikit-learn."""
        z = self._scores(X)
        return z[:, 0] if z.shape[1] == 1 else z

    def predict_proba(self, X) -> np.ndarray:
        return scores_to_proba(self._scores(X).astype(np.float64))

    # ------------------------------------------------------------------ safe persistence

    def save(self, folder: str | Path) -> dict:
        return _save_tensors(self, folder, {"coef": self.coef_, "intercept": self.intercept_, "mean": self.mean_,
                                            "scale": self.scale_, "classes": np.asarray(self.classes_, np.int64)})

    @classmethod
    def load(cls, folder: str | Path, spec: dict) -> "LogisticHead":
        t = _load_tensors(folder, spec)
        head = cls(**spec.get("params", {}))
        head.coef_, head.intercept_ = t["coef"], t["intercept"]
        head.mean_, head.scale_ = t["mean"], t["scale"]
        head.classes_, head.n_features_in_ = t["classes"], int(t["mean"].shape[0])
        return head


class MLPHead(_Standardised):
    """One or more ReLU layers (scikit-learn ``MLPClassifier``), class-weighted, early stopping."""

    kind = "mlp"

    def __init__(self, hidden: int = 256, layers: int = 1, alpha: float = 1e-4, learning_rate: float = 1e-3,
                 max_iter: int = 200, batch_size: int = 256, l2_normalize: bool = True,
                 class_weight: str | None = "balanced", early_stopping: bool = True, random_state: int = 0):
        self.hidden = hidden
        self.layers = layers
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.l2_normalize = l2_normalize
        self.class_weight = class_weight
        self.early_stopping = early_stopping
        self.random_state = random_state

    def _estimator(self, **over):
        from sklearn.neural_network import MLPClassifier

        kw = dict(hidden_layer_sizes=(self.hidden,) * self.layers, alpha=self.alpha,
                  learning_rate_init=self.learning_rate, max_iter=self.max_iter, batch_size=self.batch_size,
                  early_stopping=self.early_stopping, n_iter_no_change=10, random_state=self.random_state)
        kw.update(over)
        return MLPClassifier(**kw)

    def _take(self, clf):
        self.classes_ = clf.classes_
        self.coefs_ = [c.astype(np.float32) for c in clf.coefs_]
        self.intercepts_ = [b.astype(np.float32) for b in clf.intercepts_]
        self.n_iter_ = int(clf.n_iter_)
        return self

    def fit(self, X, y):
        X, y = _fit_input(self, X, y)
        Xs = self._fit_scaler(X)
        # early stopping holds out 10 %: only when that leaves every class a validation row
        early = self.early_stopping and int(0.1 * len(Xs)) >= len(np.unique(y))
        fitted = len(Xs) - (int(np.ceil(0.1 * len(Xs))) if early else 0)  # (the rows left after the hold-out)
        clf = self._estimator(batch_size=max(1, min(self.batch_size, fitted)), early_stopping=early).fit(
            Xs, y, sample_weight=_balanced_weights(y, self.class_weight))
        return self._take(clf)

    def fit_epochs(self, X, y, classes=None):
        """Yield after every epoch (for ASHA): ``partial_fit`` one pass at a time."""
        X, y = _fit_input(self, X, y)
        Xs = self._fit_scaler(X)
        classes = np.unique(y) if classes is None else classes
        w = _balanced_weights(y, self.class_weight)
        clf = self._estimator(early_stopping=False, batch_size=min(self.batch_size, len(Xs)))  # a few labelled tiles: one batch
        for epoch in range(self.max_iter):
            clf.partial_fit(Xs, y, classes=classes, sample_weight=w)
            self._take(clf)
            yield epoch + 1

    def predict_proba(self, X) -> np.ndarray:
        return scores_to_proba(mlp_scores(self._prep(_predict_input(self, X)), self.coefs_, self.intercepts_))

    def save(self, folder) -> dict:
        t = {"mean": self.mean_, "scale": self.scale_, "classes": np.asarray(self.classes_, np.int64)}
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            t[f"coef_{i}"], t[f"intercept_{i}"] = W, b
        return _save_tensors(self, folder, t)

    @classmethod
    def load(cls, folder, spec):
        t = _load_tensors(folder, spec)
        head = cls(**spec.get("params", {}))
        head.mean_, head.scale_, head.classes_ = t["mean"], t["scale"], t["classes"]
        head.coefs_, head.intercepts_ = mlp_layers(t)
        head.n_features_in_ = int(head.mean_.shape[0])
        return head


class KNNHead(_Standardised):
    """k nearest neighbours by cosine similarity of L2-normalised embeddings."""

    kind = "knn"

    def __init__(self, n_neighbors: int = 10, weights: str = "distance"):
        self.n_neighbors = n_neighbors
        self.weights = weights

    def fit(self, X, y):
        X, y = _fit_input(self, X, y)
        self.X_ = l2(np.asarray(X, dtype=np.float32))
        self.classes_, self.y_ = np.unique(y, return_inverse=True)
        return self

    def predict_proba(self, X) -> np.ndarray:
        return knn_proba(_predict_input(self, X), self.X_, self.y_, len(self.classes_), self.n_neighbors, self.weights)

    def save(self, folder) -> dict:
        return _save_tensors(self, folder, {"X": self.X_, "y": self.y_.astype(np.int64),
                                            "classes": np.asarray(self.classes_, np.int64)})

    @classmethod
    def load(cls, folder, spec):
        t = _load_tensors(folder, spec)
        head = cls(**spec.get("params", {}))
        head.X_, head.y_, head.classes_ = t["X"], t["y"], t["classes"]
        head.n_features_in_ = int(head.X_.shape[1])
        return head


class XGBHead(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees (XGBoost), class-weighted; saved as XGBoost UBJSON (no pickle)."""

    kind = "xgboost"

    def __init__(self, n_estimators: int = 200, max_depth: int = 5, learning_rate: float = 0.15,
                 subsample: float = 0.8, colsample_bytree: float = 0.3, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, max_bin: int = 64, class_weight: str | None = "balanced",
                 n_jobs: int | None = None, random_state: int = 0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _estimator(self, **over):
        import xgboost as xgb

        kw = dict(n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
                  subsample=self.subsample, colsample_bytree=self.colsample_bytree,
                  min_child_weight=self.min_child_weight, reg_lambda=self.reg_lambda, max_bin=self.max_bin,
                  tree_method="hist",
                  n_jobs=self.n_jobs, random_state=self.random_state)
        kw.update(over)
        return xgb.XGBClassifier(**kw)

    def fit(self, X, y, eval_set=None, callbacks=None):
        X, y = _fit_input(self, X, y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        clf = self._estimator(callbacks=callbacks) if callbacks else self._estimator()
        clf.fit(np.asarray(X, np.float32), yi, sample_weight=_balanced_weights(yi, self.class_weight),
                eval_set=eval_set, verbose=False)
        self.model_ = clf
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(_predict_input(self, X), np.float32)
        p = self.model_.predict_proba(X)
        return p if p.ndim == 2 else np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        p = self.predict_proba(X)  # checks fitted and the input first
        return self.classes_[np.argmax(p, axis=1)]

    def save(self, folder) -> dict:
        _save_tensors(self, folder, {"classes": np.asarray(self.classes_, np.int64)}, "head_classes.safetensors")
        self.model_.save_model(str(Path(folder) / "head.ubj"))
        return {"type": self.kind, "file": "head.ubj", "params": self.get_params()}

    @classmethod
    def load(cls, folder, spec):
        head = cls(**spec.get("params", {}))
        head.model_ = head._estimator()
        head.model_.load_model(str(Path(folder) / spec.get("file", "head.ubj")))
        head.classes_ = _load_tensors(folder, spec, "head_classes.safetensors")["classes"]
        head.n_features_in_ = int(head.model_.n_features_in_)
        return head


HEADS = {h.kind: h for h in (LogisticHead, MLPHead, KNNHead, XGBHead)}


def load_head(folder: str | Path, spec: dict):
    kind = spec.get("type")
    if kind not in HEADS:

        raise InputError(f"Model directory {folder} has an unknown head type {kind!r}.",
                         f"supported: {sorted(HEADS)}; upgrade landcover-ray if it is newer.")
    return HEADS[kind].load(folder, spec)

"""A model directory's head, loaded for prediction: the numpy ``SavedHead`` for the heads that
need no scikit-learn (logistic, MLP, kNN: a map's model actors start without it), else the
estimator (``models.heads``: XGBoost in its own format). Apart from both, so that the
estimators may use the saved heads' arithmetic without the two importing each other."""

from __future__ import annotations

from raylib.models.saved_heads import SavedHead, load_tensors

NUMPY_HEADS = ("logistic_regression", "mlp", "knn")


def load_saved_head(folder, spec: dict):
    """The head of a model directory for prediction: a ``SavedHead`` (numpy) for the
    logistic, MLP and kNN heads, else the estimator (``models.heads.load_head``)."""
    if spec.get("type") in NUMPY_HEADS:
        return SavedHead(spec["type"], spec.get("params", {}), load_tensors(folder, spec))
    from raylib.models.heads import load_head

    return load_head(folder, spec)

"""Classification scores: accuracy, balanced accuracy, macro F1, Cohen's kappa,
per-class accuracy (recall) and the confusion matrix, with class names."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true, y_pred, classes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(len(classes)))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    per_class = {c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(classes)}
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # the mean recall of the classes present (scikit-learn's balanced_accuracy_score, without its
        # warning when a prediction names a class the truth lacks: an unknown class, a few labelled tiles)
        "balanced_accuracy": float(np.mean([v for v in per_class.values() if v is not None])) if support.any() else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "cohen_kappa": float(cohen_kappa_score(y_true, y_pred, labels=labels)),
        "per_class_accuracy": per_class,
        "confusion_matrix": {"classes": list(classes), "matrix": cm.tolist()},
    }

"""A scored model's report files: metrics.json, report.md, confusion.png, pca.png,
reliability.png.
"""

from __future__ import annotations

import json

import numpy as np

from raylib.eval import reports
from raylib.eval.reliability import reliability, reliability_png
from raylib.io import storage


def write_report(out: str, title: str, m: dict, X: np.ndarray, y: np.ndarray, classes: list[str],
                 extra: dict | None = None, probs: np.ndarray | None = None) -> dict:
    """metrics.json, report.md, confusion.png, pca.png (and, with ``probs``, the expected
    calibration error in metrics.json and reliability.png) under ``out``."""

    cm = np.asarray(m["confusion_matrix"]["matrix"])
    pics = {}
    if probs is not None:
        rel = reliability(probs.max(axis=1), probs.argmax(axis=1) == y)
        extra = {**(extra or {}), "ece": rel["ece"], "reliability": rel}
        pics["reliability.png"] = reliability_png(rel, f"{title}: reliability")
    files = {
        **pics,
        "metrics.json": json.dumps({**m, **(extra or {})}, indent=2).encode(),
        "confusion.png": reports.confusion_png(cm, classes, f"{title}: confusion matrix (rows: true)"),
        "pca.png": reports.pca_scatter_png(X, y, classes, f"{title}: PCA of embeddings"),
        "report.md": reports.markdown_report(title, m, extra).encode(),
    }
    for name, data in files.items():
        storage.write_bytes(storage.join(out, name), data)
    return {name: storage.join(out, name) for name in files}

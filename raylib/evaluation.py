"""Evaluate a model directory on labelled data: metrics.json + a Markdown report with a
confusion-matrix picture and a 2-D PCA scatter of the embeddings."""

from __future__ import annotations

import json

import numpy as np

from . import metrics, reports, storage
from .config import EmbedConfig, EvaluateConfig
from .errors import InputError
from .models import LandcoverModel


def write_report(out: str, title: str, m: dict, X: np.ndarray, y: np.ndarray, classes: list[str],
                 extra: dict | None = None) -> dict:
    """metrics.json, report.md, confusion.png, pca.png under ``out``."""
    cm = np.asarray(m["confusion_matrix"]["matrix"])
    files = {
        "metrics.json": json.dumps({**m, **(extra or {})}, indent=2).encode(),
        "confusion.png": reports.confusion_png(cm, classes, f"{title}: confusion matrix (rows: true)"),
        "pca.png": reports.pca_scatter_png(X, y, classes, f"{title}: PCA of embeddings"),
        "report.md": reports.markdown_report(title, m, extra).encode(),
    }
    for name, data in files.items():
        storage.write_bytes(storage.join(out, name), data)
    return {name: storage.join(out, name) for name in files}


def _is_embeddings(uri: str) -> bool:
    return uri.endswith(".parquet") or storage.exists(storage.join(uri, "embeddings.parquet"))


def run_evaluate(cfg: EvaluateConfig, argv: list[str] | None = None) -> dict:
    from .embedding import read_embeddings, run_embed

    model = LandcoverModel.load(cfg.model, with_backbone=False)
    man = model.manifest
    if _is_embeddings(cfg.data):
        X, y, split, classes, meta, _ = read_embeddings(cfg.data)
        bb_model = (man.backbone.get("source") or man.backbone.get("ref"), man.backbone.get("input_size"))
        if (meta["backbone"], meta["input_size"]) != bb_model:
            raise InputError(f"Embeddings {cfg.data} come from backbone {meta['backbone']} @ {meta['input_size']} px,"
                             f" the model uses {bb_model[0]} @ {bb_model[1]} px.",
                             "evaluate on an image folder (embedded with the model's backbone) or matching embeddings.")
        rows = np.ones(len(y), bool) if cfg.split == "all" else split == cfg.split
    else:
        emb_out = storage.join(cfg.out, "_embeddings")
        backbone = str(model.folder / man.backbone["path"]) if man.backbone.get("path") else man.backbone["ref"]
        run_embed(EmbedConfig(data=cfg.data, out=emb_out, backbone=backbone,
                              input_size=man.backbone.get("input_size") or 224, overwrite=True,
                              ray_address=cfg.ray_address))
        X, y, split, classes, meta, _ = read_embeddings(emb_out)
        rows = np.ones(len(y), bool)
    unknown = sorted(set(classes) - set(man.classes))
    if unknown:
        raise InputError(f"Classes {unknown} in {cfg.data} are not classes of model {man.id}.",
                         f"the model knows {man.classes}.")
    # map the data's class indices onto the model's
    to_model = np.array([man.classes.index(c) for c in classes])
    yt = to_model[y[rows]]
    pred = model.head.predict(X[rows])
    m = metrics.classification_metrics(yt, pred, man.classes)
    files = write_report(cfg.out, f"{man.id} on {cfg.data}", m, X[rows], yt, man.classes,
                         {"model": cfg.model, "model_id": man.id, "data": cfg.data, "split": cfg.split,
                          "rows": int(rows.sum())})
    return {"metrics": m, "files": files, "rows": int(rows.sum())}

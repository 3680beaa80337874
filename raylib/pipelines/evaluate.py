"""Evaluate model directories on labelled data: metrics.json + a Markdown report with a
confusion-matrix picture and a 2-D PCA scatter of the embeddings; ``compare`` puts several
models side by side on one split.

Head models score stored embeddings when the backbone matches (else the images are
embedded with the model's backbone); fine-tuned models score the patches themselves
(decoded by Ray Data CPU tasks, the network on an actor pool), with test-time
augmentation when the model asks for it.
"""

from __future__ import annotations

import json

import numpy as np

from raylib.config import CompareConfig, EvaluateConfig
from raylib.errors import InputError
from raylib.eval import metrics, reports
from raylib.eval.report_files import write_report
from raylib.formats.embtable import read_embeddings
from raylib.io import storage
from raylib.models.calibration import apply_temperature
from raylib.models.landcover_model import LandcoverModel
from raylib.pipelines.common.scoring import score_labelled
from raylib.raster import patches


def _is_embeddings(uri: str) -> bool:
    return uri.endswith(".parquet") or storage.exists(storage.join(uri, "embeddings.parquet"))


def evaluate_model(model_uri: str, data: str, split: str, out: str, ray_address: str | None = None,
                   num_gpus: float | None = None, precision: str = "fp32") -> dict:
    """Score one model directory on ``data`` (embeddings folder or image folder); write its
    report. ``num_gpus``/``precision``: the scoring actor's, for data the network scores."""
    model = LandcoverModel.load(model_uri, with_backbone=False)
    man = model.manifest
    warning = {}  # gpu_warning: the scoring actor held a GPU of a node whose torch is a CPU build
    if not _is_embeddings(data) or man.kind == "finetuned":
        # patches: decoded and scored as the model sees them, by the shared scorer
        ls = patches.labelled_set(data)
        rows = np.arange(len(ls.labels)) if split == "all" or ls.origin == "folder" else np.flatnonzero(ls.split == split)
        scored = score_labelled(model_uri, ls, rows, ray_address, num_gpus=num_gpus, precision=precision)
        m, X, yt, probs = scored["metrics"], scored["features"], scored["y"], scored["probs"]
        extra_kind = {"tta": model.tta} if man.kind == "finetuned" else {"temperature": model.temperature}
        warning = {"gpu_warning": scored["gpu_warning"]} if "gpu_warning" in scored else {}
    else:
        X, y, split_col, classes, meta, _ = read_embeddings(data)
        bb_model = (man.backbone.get("source") or man.backbone.get("ref"), man.backbone.get("input_size"))
        if (meta["backbone"], meta["input_size"]) != bb_model:
            raise InputError(f"Embeddings {data} come from backbone {meta['backbone']} @ {meta['input_size']} px,"
                             f" the model uses {bb_model[0]} @ {bb_model[1]} px.",
                             "evaluate on an image folder (embedded with the model's backbone) or matching embeddings.")
        rows = np.ones(len(y), bool) if split == "all" else split_col == split
        unknown = sorted(set(classes) - set(man.classes))
        if unknown:
            raise InputError(f"Classes {unknown} in {data} are not classes of model {man.id}.",
                             f"the model knows {man.classes}.")
        to_model = np.array([man.classes.index(c) for c in classes])  # the data's class indices -> the model's
        yt = to_model[y[rows]]
        X = X[rows]
        probs = apply_temperature(model.head.predict_proba(X).astype(np.float32), model.temperature)
        m = metrics.classification_metrics(yt, probs.argmax(axis=1), man.classes)
        extra_kind = {"temperature": model.temperature}
    files = write_report(out, f"{man.id} on {data}", m, X, yt, man.classes,
                         {"model": model_uri, "model_id": man.id, "kind": man.kind, "data": data, "split": split,
                          "rows": int(len(yt)), **extra_kind, **warning}, probs=probs)
    return {"metrics": m, "files": files, "rows": int(len(yt)), "model_id": man.id, "kind": man.kind, **warning}


def run_evaluate(cfg: EvaluateConfig, argv: list[str] | None = None) -> dict:
    return evaluate_model(cfg.model, cfg.data, cfg.split, cfg.out, cfg.ray_address, cfg.num_gpus, cfg.precision)


def run_compare(cfg: CompareConfig, argv: list[str] | None = None) -> dict:
    """Every model on the same rows: one report folder each, plus compare.md / compare.json
    with the scores, per-class accuracy and confusion matrices side by side."""
    for uri in cfg.models:  # every model directory is checked before any is scored
        LandcoverModel.read_manifest(uri)
    results = []
    for i, uri in enumerate(cfg.models):
        sub = storage.join(cfg.out, f"model-{i + 1}")
        scored = evaluate_model(uri, cfg.data, cfg.split, sub, cfg.ray_address, cfg.num_gpus, cfg.precision)
        results.append({"model": uri, "report": f"model-{i + 1}", **scored})
    rows = {r["rows"] for r in results}
    if len(rows) != 1:
        raise InputError(f"The models were scored on different numbers of rows ({sorted(rows)}).",
                         "compare on an embeddings folder (its stored split) or one image folder.")
    summary = [{k: r[k] for k in ("model", "model_id", "kind", "rows", "report", "gpu_warning") if k in r}
               | {"metrics": r["metrics"]} for r in results]
    storage.write_bytes(storage.join(cfg.out, "compare.json"), json.dumps(summary, indent=2).encode())
    md = reports.compare_markdown(f"{len(results)} models on {cfg.data} ({cfg.split} split, {rows.pop()} rows)",
                                  summary)
    storage.write_bytes(storage.join(cfg.out, "compare.md"), md.encode())
    return {"models": summary, "files": {"compare.md": storage.join(cfg.out, "compare.md"),
                                         "compare.json": storage.join(cfg.out, "compare.json")}}

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

from . import metrics, reports, storage
from .config import CompareConfig, EmbedConfig, EvaluateConfig
from .errors import InputError
from .models import LandcoverModel


def write_report(out: str, title: str, m: dict, X: np.ndarray, y: np.ndarray, classes: list[str],
                 extra: dict | None = None, probs: np.ndarray | None = None) -> dict:
    """metrics.json, report.md, confusion.png, pca.png (and, with ``probs``, the expected
    calibration error in metrics.json and reliability.png) under ``out``."""
    from . import calibration

    cm = np.asarray(m["confusion_matrix"]["matrix"])
    pics = {}
    if probs is not None:
        rel = calibration.reliability(probs.max(axis=1), probs.argmax(axis=1) == y)
        extra = {**(extra or {}), "ece": rel["ece"], "reliability": rel}
        pics["reliability.png"] = calibration.reliability_png(rel, f"{title}: reliability")
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


def _is_embeddings(uri: str) -> bool:
    return uri.endswith(".parquet") or storage.exists(storage.join(uri, "embeddings.parquet"))


class PatchScorer:
    """Actor: loads a model once; class probabilities (with and without TTA) and features of patches."""

    def __init__(self, model_ref, torch_threads: int | None, actors: int, both: bool):
        from .actors import local_folder, set_torch_threads

        set_torch_threads(torch_threads, actors)
        self.model = LandcoverModel.load(local_folder(model_ref, "ray-models"))
        self.k = len(self.model.classes)
        self.both = both

    def __call__(self, batch: dict) -> dict:
        from .augment import N_VIEWS, dihedral

        n = len(batch["idx"])
        ok = np.asarray(batch["status"]) == "ok"
        x = np.array(batch["pixels"], np.float32)  # a copy: the batch may be a read-only view
        x[~ok] = 0.0
        net = self.model.net
        if net is not None:
            xt = net.prepare(x)
            plain = net.probs(xt)
            if self.model.tta or self.both:
                tta = sum((net.probs(dihedral(xt, k)) for k in range(1, N_VIEWS)), plain) / N_VIEWS
            else:
                tta = plain
            probs = (tta if self.model.tta else plain).cpu().numpy()
            plain = plain.cpu().numpy()
            feats = net.features(xt).cpu().numpy()
        else:
            feats = self.model.embed(x)
            probs = plain = self.model.head.predict_proba(feats).astype(np.float32)
        return {"idx": batch["idx"], "probs": probs.reshape(n, self.k), "plain": plain.reshape(n, self.k),
                "features": feats.reshape(n, -1).astype(np.float32), "status": batch["status"],
                "error": batch["error"]}


def score_labelled(model_uri: str, ls, rows: np.ndarray, ray_address: str | None = None, both: bool = False,
                   batch_size: int = 64) -> dict:
    """Score a model on rows of a ``datasets.LabelledSet``: the patches are decoded the way the
    model was trained (its bands and scale), in Ray Data CPU tasks, and scored on an actor.

    Returns ``metrics`` (as the model predicts, TTA included when it asks for it),
    ``metrics_plain`` (one view; only with ``both``), ``probs``, ``features`` and ``y``
    (the model's class indices)."""
    import pyarrow as pa

    from . import datasets
    from .actors import actor_stage, collect, dataset_from_table, ensure_ray, share_folder

    model = LandcoverModel.load(model_uri, with_backbone=False)  # the network loads in the actor
    man = model.manifest
    unknown = sorted({ls.classes[i] for i in np.unique(ls.labels[rows])} - set(man.classes))
    if unknown:
        raise InputError(f"Classes {unknown} in the data are not classes of model {man.id}.",
                         f"the model knows {man.classes}.")
    size = int(man.backbone.get("input_size") or man.tile_size)
    spec = {"bands": man.bands.get("indices") or [1, 2, 3], "scale": man.bands.get("scale"), "input_size": size,
            "patch_size": ls.patch_size}
    table = pa.table({"idx": pa.array(np.arange(len(rows), dtype=np.int64)),
                      "source": pa.array([ls.sources[i] for i in rows])})
    ensure_ray(ray_address)
    ds = dataset_from_table(table, 256).map_batches(datasets.decode_batch, fn_kwargs={"spec": spec},
                                                    batch_size=batch_size, batch_format="numpy", num_cpus=0.5)
    local = not storage.parse(model_uri).is_s3
    ref = share_folder(str(model.folder)) if local else model_uri
    import ray

    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0  # score on a GPU when there is one
    ds = actor_stage(ds, PatchScorer, {"model_ref": ref, "torch_threads": None, "actors": 1, "both": both},
                     actors=1, batch_size=batch_size, actor_cpus=1.0, num_gpus=gpus)
    k = len(man.classes)
    res = collect(ds, len(rows), {"probs": ((k,), np.float32, np.nan), "plain": ((k,), np.float32, np.nan),
                                  "features": (None, np.float32, 0.0), "status": ((), object, "error"),
                                  "error": ((), object, "")})
    bad = np.flatnonzero(res["status"] != "ok")
    if len(bad):
        shown = "; ".join(f"{ls.sources[rows[i]]}: {res['error'][i]}" for i in bad[:5])
        raise InputError(f"{len(bad)} of {len(rows)} patches could not be read ({shown}"
                         + (" ..." if len(bad) > 5 else "") + ").", "remove or replace those files.")
    to_model = np.array([man.classes.index(c) if c in man.classes else -1 for c in ls.classes])
    y = to_model[ls.labels[rows]]
    out = {"metrics": metrics.classification_metrics(y, res["probs"].argmax(1), man.classes),
           "probs": res["probs"], "features": res["features"], "y": y, "manifest": man}
    if both:
        out["metrics_plain"] = metrics.classification_metrics(y, res["plain"].argmax(1), man.classes)
    return out


def evaluate_model(model_uri: str, data: str, split: str, out: str, ray_address: str | None = None) -> dict:
    """Score one model directory on ``data`` (embeddings folder or image folder); write its report."""
    from . import datasets
    from .embedding import read_embeddings, run_embed

    model = LandcoverModel.load(model_uri, with_backbone=False)
    man = model.manifest
    if man.kind == "finetuned":
        ls = datasets.labelled_set(data)
        rows = np.arange(len(ls.labels)) if split == "all" or ls.origin == "folder" else np.flatnonzero(ls.split == split)
        scored = score_labelled(model_uri, ls, rows, ray_address)
        m, X, yt = scored["metrics"], scored["features"], scored["y"]
        probs = scored["probs"]
        extra_kind = {"tta": model.tta}
    else:
        if _is_embeddings(data):
            X, y, split_col, classes, meta, _ = read_embeddings(data)
            bb_model = (man.backbone.get("source") or man.backbone.get("ref"), man.backbone.get("input_size"))
            if (meta["backbone"], meta["input_size"]) != bb_model:
                raise InputError(f"Embeddings {data} come from backbone {meta['backbone']} @ {meta['input_size']} px,"
                                 f" the model uses {bb_model[0]} @ {bb_model[1]} px.",
                                 "evaluate on an image folder (embedded with the model's backbone) or matching embeddings.")
            rows = np.ones(len(y), bool) if split == "all" else split_col == split
        else:
            emb_out = storage.join(out, "_embeddings")
            backbone = str(model.folder / man.backbone["path"]) if man.backbone.get("path") else man.backbone["ref"]
            run_embed(EmbedConfig(data=data, out=emb_out, backbone=backbone,
                                  input_size=man.backbone.get("input_size") or 224, overwrite=True,
                                  ray_address=ray_address))
            X, y, split_col, classes, meta, _ = read_embeddings(emb_out)
            rows = np.ones(len(y), bool)
        unknown = sorted(set(classes) - set(man.classes))
        if unknown:
            raise InputError(f"Classes {unknown} in {data} are not classes of model {man.id}.",
                             f"the model knows {man.classes}.")
        to_model = np.array([man.classes.index(c) for c in classes])  # the data's class indices -> the model's
        yt = to_model[y[rows]]
        X = X[rows]
        from .calibration import apply_temperature

        probs = apply_temperature(model.head.predict_proba(X).astype(np.float32), model.temperature)
        m = metrics.classification_metrics(yt, probs.argmax(axis=1), man.classes)
        extra_kind = {"temperature": model.temperature}
    files = write_report(out, f"{man.id} on {data}", m, X, yt, man.classes,
                         {"model": model_uri, "model_id": man.id, "kind": man.kind, "data": data, "split": split,
                          "rows": int(len(yt)), **extra_kind}, probs=probs)
    return {"metrics": m, "files": files, "rows": int(len(yt)), "model_id": man.id, "kind": man.kind}


def run_evaluate(cfg: EvaluateConfig, argv: list[str] | None = None) -> dict:
    return evaluate_model(cfg.model, cfg.data, cfg.split, cfg.out, cfg.ray_address)


def run_compare(cfg: CompareConfig, argv: list[str] | None = None) -> dict:
    """Every model on the same rows: one report folder each, plus compare.md / compare.json
    with the scores, per-class accuracy and confusion matrices side by side."""
    for uri in cfg.models:  # every model directory is checked before any is scored
        LandcoverModel.read_manifest(uri)
    results = []
    for i, uri in enumerate(cfg.models):
        sub = storage.join(cfg.out, f"model-{i + 1}")
        scored = evaluate_model(uri, cfg.data, cfg.split, sub, cfg.ray_address)
        results.append({"model": uri, "report": f"model-{i + 1}", **scored})
    rows = {r["rows"] for r in results}
    if len(rows) != 1:
        raise InputError(f"The models were scored on different numbers of rows ({sorted(rows)}).",
                         "compare on an embeddings folder (its stored split) or one image folder.")
    summary = [{k: r[k] for k in ("model", "model_id", "kind", "rows", "report")} | {"metrics": r["metrics"]}
               for r in results]
    storage.write_bytes(storage.join(cfg.out, "compare.json"), json.dumps(summary, indent=2).encode())
    md = reports.compare_markdown(f"{len(results)} models on {cfg.data} ({cfg.split} split, {rows.pop()} rows)",
                                  summary)
    storage.write_bytes(storage.join(cfg.out, "compare.md"), md.encode())
    return {"models": summary, "files": {"compare.md": storage.join(cfg.out, "compare.md"),
                                         "compare.json": storage.join(cfg.out, "compare.json")}}

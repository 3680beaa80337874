"""Scoring a model on labelled patches: Ray Data decode tasks and one scoring actor.
"""

from __future__ import annotations

import numpy as np

from raylib.errors import InputError
from raylib.eval import metrics
from raylib.io import storage
from raylib.models.augment import tta_probs
from raylib.models.landcover_model import LandcoverModel
from raylib.pipelines.common.sizing import model_batch
from raylib.pipelines.common.folder_shipping import local_folder, share_folder
from raylib.pipelines.common.gpu_probe import check_gpus, GpuBuildWatch
from raylib.pipelines.common.ray_session import ensure_ray
from raylib.pipelines.common.stages import actor_stage, collect, dataset_from_table, set_torch_threads
from raylib.raster import patches


class PatchScorer:
    """Actor: loads a model once; class probabilities (with and without TTA) and features of patches."""

    def __init__(self, model_ref, torch_threads: int | None, actors: int, both: bool, precision: str = "fp32"):
        from raylib.models.device import placed

        set_torch_threads(torch_threads, actors)
        device, precision = placed("auto", precision)
        self.model = LandcoverModel.load(local_folder(model_ref, "ray-models"), device=device, precision=precision)
        self.k = len(self.model.classes)
        self.both = both

    def __call__(self, batch: dict) -> dict:

        n = len(batch["idx"])
        ok = np.asarray(batch["status"]) == "ok"
        x = np.array(batch["pixels"], np.float32)  # a copy: the batch may be a read-only view
        x[~ok] = 0.0
        net = self.model.net
        if net is not None:
            xt = net.prepare(x)
            plain = net.probs(xt)
            tta = tta_probs(net.probs, xt, identity=plain) if self.model.tta or self.both else plain
            probs = (tta if self.model.tta else plain).cpu().numpy()
            plain = plain.cpu().numpy()
            feats = net.features(xt).cpu().numpy()
        else:
            feats = self.model.embed(x)
            probs = plain = self.model.predict_embeddings(feats)[0]  # the head's features and temperature
        return {"idx": batch["idx"], "probs": probs.reshape(n, self.k), "plain": plain.reshape(n, self.k),
                "features": feats.reshape(n, -1).astype(np.float32), "status": batch["status"],
                "error": batch["error"]}


def score_labelled(model_uri: str, ls, rows: np.ndarray, ray_address: str | None = None, both: bool = False,
                   batch_size: int | None = None, num_gpus: float | None = None, precision: str = "fp32") -> dict:
    """Score a model on rows of a ``patches.LabelledSet``: the patches are decoded the way the
    model was trained (its bands and scale), in Ray Data CPU tasks, and scored on an actor.

    Returns ``metrics`` (as the model predicts, TTA included when it asks for it),
    ``metrics_plain`` (one view; only with ``both``), ``probs``, ``features`` and ``y``
    (the model's class indices), and ``gpu_warning`` when the scoring actor held a GPU of a
    node whose torch is a CPU build (``gpu_probe.GpuBuildWatch``). ``num_gpus``: the scoring
    actor's (None: 1 when the cluster has a GPU, else 0); ``batch_size``: tiles per model
    batch (by device when None)."""
    import pyarrow as pa

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
    import ray

    asked = f"--num-gpus {num_gpus:g}" if num_gpus else None
    if num_gpus is None:  # score on a GPU when there is one
        num_gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        asked = "scoring on the cluster's GPU" if num_gpus else None
        if precision != "fp32" and not num_gpus:
            raise InputError(f"precision {precision} is for a GPU, and this Ray cluster has none.",
                             "leave precision out (fp32), or run on a cluster with a GPU.")
    check_gpus(num_gpus)
    gpu_build = GpuBuildWatch(asked)  # (asked now, answered while the patches are scored)
    batch_size = model_batch(batch_size, num_gpus)
    ds = dataset_from_table(table, 256).map_batches(patches.decode_batch, fn_kwargs={"spec": spec},
                                                    batch_size=min(batch_size, 256), batch_format="numpy",
                                                    num_cpus=0.5)
    local = not storage.parse(model_uri).is_s3
    ref = share_folder(str(model.folder)) if local else model_uri
    ds = actor_stage(ds, PatchScorer, {"model_ref": ref, "torch_threads": None, "actors": 1, "both": both,
                                       "precision": precision},
                     actors=1, batch_size=batch_size, actor_cpus=1.0, num_gpus=num_gpus)
    k = len(man.classes)
    res = collect(ds, len(rows), {"probs": ((k,), np.float32, np.nan), "plain": ((k,), np.float32, np.nan),
                                  "features": (None, np.float32, 0.0), "status": ((), object, "error"),
                                  "error": ((), object, "")})
    patches.raise_unreadable([(ls.sources[rows[i]], res["error"][i]) for i in np.flatnonzero(res["status"] != "ok")],
                             len(rows))
    to_model = np.array([man.classes.index(c) if c in man.classes else -1 for c in ls.classes])
    y = to_model[ls.labels[rows]]
    out = {"metrics": metrics.classification_metrics(y, res["probs"].argmax(1), man.classes),
           "probs": res["probs"], "features": res["features"], "y": y, "manifest": man}
    if both:
        out["metrics_plain"] = metrics.classification_metrics(y, res["plain"].argmax(1), man.classes)
    return gpu_build.into(out)

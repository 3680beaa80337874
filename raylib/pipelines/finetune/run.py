"""``landcover finetune``, the driver: fine-tune a backbone end to end with Ray Train
(``TorchTrainer``, Train V2 APIs). The recipe is in ``recipe``, one worker's loop in ``loop``.

Flow (driver):

1. the labelled set (image folder, or an embeddings folder's rows and stored split) is
   decoded once by Ray Data CPU tasks into float16 patches at the model input size and
   materialised; the validation rows are carved (stratified, seeded) from the train split,
   the test split is kept for the final report;
2. per-band mean/std of the training rows and class weights are computed;
3. ``TorchTrainer`` runs ``train_loop`` on ``workers`` workers (gloo on CPU; NCCL, bf16
   autocast and channels-last on GPU); each worker streams its shard of the training set
   (``get_dataset_shard``) and scores the whole validation set with the others;
4. the best checkpoint (validation balanced accuracy) becomes a model directory
   (``save_pretrained`` + ``model.json``, kind ``finetuned``), scored on the test split.

The recipe (each part a config field): class-balanced cross-entropy with label smoothing;
random dihedral views and radiometric jitter; AdamW with weight decay; a one-cycle
learning rate per phase; the backbone frozen for ``freeze_epochs`` (only the classifier
learns) and then unfrozen at ``lr * backbone_lr_factor`` (discriminative learning rates);
early stopping on validation balanced accuracy; test-time augmentation at evaluation.

Checkpoints (one per epoch; ``model.safetensors``, ``optimizer.pt`` read with
``weights_only=True``, ``state.json``) go to ``<storage_path>/<name>``. Re-running the same
command resumes from the latest one; a worker that dies is replaced and training goes on
from the latest checkpoint (``FailureConfig(max_failures)``).
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from raylib.config import FinetuneConfig
from raylib.console import Progress
from raylib.errors import ConfigError, InputError, LandcoverError
from raylib.io import storage
from raylib.models.backbone_weights import resolve_backbone
from raylib.models.finetune_net import build_classifier
from raylib.models.model_dir import MANIFEST, created_by, write_finetuned_dir
from raylib.pipelines.common.scoring import score_labelled
from raylib.pipelines.common.folder_shipping import share_folder
from raylib.pipelines.common.gpu_probe import check_cuda, check_gpus
from raylib.pipelines.common.ray_session import ensure_ray
from raylib.pipelines.common.stages import dataset_from_table
from raylib.pipelines.finetune.loop import train_loop
from raylib.pipelines.finetune.recipe import band_plan, class_weights, fingerprint
from raylib.raster import patches

log = logging.getLogger(__name__)
RUN_MARKER = "landcover_run.json"


def run_location(cfg: FinetuneConfig) -> tuple[str, str]:
    """(storage_path, name) of the Ray Train run: checkpoints live under them."""
    if cfg.storage_path:
        sp = cfg.storage_path
    else:
        sp = cfg.out.rstrip("/") + ".runs"
    if not storage.parse(sp).is_s3:
        sp = os.path.abspath(storage.parse(sp).key)
    return sp.rstrip("/"), cfg.name


def _check_run(cfg: FinetuneConfig) -> tuple[str, str, bool]:
    """Start a new run, resume a matching one, or refuse one started with other settings."""
    sp, name = run_location(cfg)
    run_uri = storage.join(sp, name)
    marker = storage.join(run_uri, RUN_MARKER)
    mine = fingerprint(cfg)
    if cfg.overwrite and storage.folder_files(run_uri):
        storage.delete_prefix(storage.as_prefix(run_uri))
    resuming = storage.exists(marker)
    if resuming:
        theirs = json.loads(storage.read_bytes(marker))["settings"]
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise ConfigError(f"Run {name!r} in {sp} was started with other settings (differs in: {', '.join(diff)}); "
                              "resuming it would mix two recipes.",
                              "pass another --name to start a new run, or --overwrite to start this one over.")
    else:
        if storage.folder_files(run_uri):
            raise ConfigError(f"{run_uri} holds files but no {RUN_MARKER}; it is not a landcover fine-tuning run.",
                              "choose another --name or --storage-path.")
        storage.write_bytes(marker, json.dumps({"settings": mine, "started": time.time()}, indent=2).encode())
    return sp, name, resuming


def _decode(ls: patches.LabelledSet, rows: np.ndarray, spec: dict, read_cpus: float):
    """Decoded, materialised Ray Dataset of ``rows``; raises naming unreadable files."""
    import pyarrow as pa

    table = pa.table({"idx": pa.array(rows.astype(np.int64)),
                      "source": pa.array([ls.sources[i] for i in rows]),
                      "label": pa.array(ls.labels[rows].astype(np.int64))})
    ds = dataset_from_table(table, 256).map_batches(patches.decode_batch, fn_kwargs={"spec": spec}, batch_size=64,
                                                    batch_format="numpy", num_cpus=read_cpus).materialize()
    sums = np.zeros((len(spec["bands"]), 2))
    npx, bad = 0, []
    for b in ds.iter_batches(batch_format="numpy", batch_size=None):
        sums += b["stats"].sum(0)
        npx += int(b["npx"].sum())
        bad += [(int(i), str(e)) for i, s, e in zip(b["idx"], b["status"], b["error"]) if s != "ok"]
    patches.raise_unreadable([(ls.sources[i], e) for i, e in bad], len(rows),
                             "remove or replace those files; nothing was written.")
    return ds, sums, npx


def run_finetune(cfg: FinetuneConfig, argv: list[str] | None = None) -> dict:
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    t0 = time.time()
    if cfg.freeze_epochs >= cfg.epochs:
        raise ConfigError(f"freeze_epochs ({cfg.freeze_epochs}) must be below epochs ({cfg.epochs}).",
                          "lower freeze_epochs, or raise epochs.")
    ls = patches.labelled_set(cfg.data, cfg.test_fraction, cfg.seed)
    if len(ls.classes) < 2:
        raise InputError(f"{cfg.data} has {len(ls.classes)} class(es); at least 2 are needed.",
                         "lay the set out as <Class>/<image> with one folder per class.")
    plan = band_plan(cfg, ls)
    storage.check_bucket(cfg.out)
    # refuses a non-empty folder that is not a model directory; a model needs --overwrite
    if storage.check_own_folder(cfg.out, MANIFEST, "a model directory") and not cfg.overwrite:
        raise ConfigError(f"{cfg.out} already holds a model.", "pass --overwrite, or choose another --out.")
    train_rows = np.flatnonzero(ls.split == "train")
    test_rows = np.flatnonzero(ls.split == "test")
    val_mask = patches.stratified_split(ls.labels[train_rows], cfg.val_fraction, cfg.seed)
    fit_rows, val_rows = train_rows[~val_mask], train_rows[val_mask]
    # Row order is class order (folders); shuffled once, every block (and so every worker's
    # shard) holds all classes, which batch-norm statistics need.
    fit_rows = np.random.default_rng(cfg.seed).permutation(fit_rows)
    per_worker = len(fit_rows) // cfg.workers
    steps = per_worker // cfg.batch_size
    if steps < 1:
        raise ConfigError(f"{len(fit_rows)} training patches over {cfg.workers} workers do not fill one batch of "
                          f"{cfg.batch_size}.", "lower batch_size or workers, or give more data.")
    if len(val_rows) == 0:
        raise ConfigError("The validation split is empty.", "raise val_fraction or give more data.")
    storage_path, name, resuming = _check_run(cfg)
    ensure_ray(cfg.ray_address)
    check_gpus(1 if cfg.gpu else 0, "--gpu", per="training worker")
    if cfg.gpu:  # (Ray Train's GPU workers set up NCCL before a line of the loop runs)
        check_cuda("--gpu")
    backbone_dir = resolve_backbone(cfg.backbone)
    spec = {"bands": plan["indices"], "scale": plan["scale"], "input_size": cfg.input_size,
            "patch_size": ls.patch_size}
    train_ds, sums, npx = _decode(ls, fit_rows, spec, cfg.read_cpus)
    val_ds, _, _ = _decode(ls, val_rows, spec, cfg.read_cpus)
    mean, std = patches.band_mean_std(sums[:, 0], sums[:, 1], npx)
    counts = np.bincount(ls.labels[fit_rows], minlength=len(ls.classes))
    weights = class_weights(counts, cfg.class_weighting, cfg.effective_beta)
    local_bb = os.path.isdir(backbone_dir)
    threads = cfg.torch_threads or max(1, int(round(cfg.cpus_per_worker)))
    loop_config = {
        "backbone": share_folder(backbone_dir) if local_bb else backbone_dir,
        "classes": ls.classes, "rgb": plan["rgb"], "mean": mean.tolist(), "std": std.tolist(),
        "class_weights": weights.tolist(), "label_smoothing": cfg.label_smoothing, "seed": cfg.seed,
        "epochs": cfg.epochs, "freeze_epochs": cfg.freeze_epochs, "steps_per_epoch": steps,
        "batch_size": cfg.batch_size, "lr": cfg.lr, "backbone_lr_factor": cfg.backbone_lr_factor,
        "weight_decay": cfg.weight_decay, "augment": cfg.augment, "jitter": cfg.jitter, "patience": cfg.patience,
        "torch_threads": threads, "shuffle_buffer": min(len(fit_rows), max(4 * cfg.batch_size, 1024)),
    }
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if cfg.gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints,
                                               checkpoint_score_attribute="val_balanced_accuracy",
                                               checkpoint_score_order="max"),
            failure_config=FailureConfig(max_failures=cfg.max_failures)),
        datasets={"train": train_ds, "val": val_ds},
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    log.info("fine-tuning %s on %d patches (%d val) of %d classes, %d workers%s", cfg.backbone, len(fit_rows),
             len(val_rows), len(ls.classes), cfg.workers, " (resuming)" if resuming else "")
    with _EpochProgress(storage.join(storage_path, name), cfg.epochs):
        result = trainer.fit()
    if result.error:
        raise result.error
    best = result.get_best_checkpoint(metric="val_balanced_accuracy", mode="max") or result.checkpoint
    latest = result.checkpoint
    if best is None or latest is None:
        raise RuntimeError(f"run {name!r} in {storage_path} reported no checkpoint")
    from safetensors.torch import load_file

    with latest.as_directory() as d:
        state = json.loads(open(os.path.join(d, "state.json")).read())
    with best.as_directory() as d:
        weights_best = load_file(os.path.join(d, "model.safetensors"))
    model = build_classifier(backbone_dir, ls.classes, len(plan["indices"]), plan["rgb"])
    model.load_state_dict(weights_best)
    model.eval()
    bands = {"channels": plan["channels"], "indices": plan["indices"], "rgb": plan["rgb"], "scale": plan["scale"],
             "mean": mean.tolist(), "std": std.tolist()}
    training = {
        "recipe": {k: getattr(cfg, k) for k in (
            "epochs", "freeze_epochs", "batch_size", "lr", "backbone_lr_factor", "weight_decay", "label_smoothing",
            "class_weighting", "augment", "jitter", "patience", "workers", "seed", "val_fraction")},
        "class_weights": dict(zip(ls.classes, map(float, weights))),
        "epochs_completed": state["epoch"], "best_epoch": state["best_epoch"],
        "best_val_balanced_accuracy": state["best"], "stopped_early": state["stopped_early"],
        "resumed_from": state["resumed_from"], "history": state["history"],
        "run": storage.join(storage_path, name), "rows": {"train": len(fit_rows), "val": len(val_rows),
                                                           "test": len(test_rows)},
    }
    tiles = patches.training_tiles_of_folder(cfg.data)  # tiles exported from a store: assess --exclude-training
    if tiles is not None:
        training["training_tiles"] = patches.TRAINING_TILES
    manifest = write_finetuned_dir(
        cfg.out, model, name=f"{cfg.name}-{os.path.basename(backbone_dir.rstrip('/')) or 'backbone'}",
        classes=ls.classes, bands=bands, input_size=cfg.input_size, backbone_ref=cfg.backbone,
        tile_size=cfg.tile_size, gsd=cfg.gsd, tta=cfg.tta, metrics={"data": cfg.data}, training=training,
        created_by=created_by(argv), extra_files={patches.TRAINING_TILES: tiles} if tiles is not None else None)
    test = {}
    if len(test_rows):

        scored = score_labelled(cfg.out, ls, test_rows, ray_address=cfg.ray_address, both=True)
        test = {"test": scored["metrics"], "test_without_tta": scored["metrics_plain"]}
        manifest.metrics.update(test)
        storage.write_bytes(storage.join(cfg.out, "model.json"), manifest.to_json().encode())
    return {"out": cfg.out, "model_id": manifest.id, "epochs_completed": state["epoch"],
            "best_epoch": state["best_epoch"], "best_val_balanced_accuracy": state["best"],
            "stopped_early": state["stopped_early"], "resumed_from": state["resumed_from"], **test,
            "run": storage.join(storage_path, name), "seconds": round(time.time() - t0, 1)}


class _EpochProgress:
    """``finetune: 3/15 epochs  0.2 epochs/s  ETA 1m02s`` on stderr while ``trainer.fit()``
    runs: a thread reads the epoch of the newest checkpoint's ``state.json`` in the run
    folder every few seconds (the workers and Ray Train's controller print nothing here)."""

    def __init__(self, run_uri: str, epochs: int):
        import threading

        self.run_uri, self.epochs, self.stop = run_uri, epochs, threading.Event()
        self.progress, self.seen, self.read = None, 0, set()
        self.thread = threading.Thread(target=self._watch, name="finetune-progress", daemon=True)

    def _epoch(self) -> int:
        newest = self.seen
        for uri in storage.folder_files(self.run_uri):
            if uri.endswith("/state.json") and uri not in self.read:
                try:
                    newest = max(newest, int(json.loads(storage.read_bytes(uri))["epoch"]))
                    self.read.add(uri)
                except (LandcoverError, OSError, ValueError, KeyError):
                    pass  # a checkpoint being written (or already removed): looked at again next time
        return newest

    def _watch(self) -> None:
        while not self.stop.wait(3.0):
            try:
                n = self._epoch()
            except Exception:  # a progress line never fails the run (e.g. a storage hiccup)
                continue
            if n > self.seen:
                self.progress.update(n - self.seen)
                self.seen = n

    def __enter__(self):
        self.seen = self._epoch()  # a resumed run starts where it stopped
        self.progress = Progress("finetune", self.epochs, "epochs", initial=self.seen)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.progress.close()

"""Fine-tune a backbone end to end with Ray Train (``TorchTrainer``, Train V2 APIs).

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
import math
import os
import time

import numpy as np

from raylib.config import FinetuneConfig
from raylib.errors import ConfigError, InputError
from raylib.io import storage
from raylib.raster import patches
from raylib.raster.bands import PRESETS

log = logging.getLogger(__name__)
RUN_MARKER = "landcover_run.json"
RGB_NAMES = ["red", "green", "blue"]


# --------------------------------------------------------------------------- planning


def _band_list(value, what: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in PRESETS:
            raise ConfigError(f"Unknown band preset {value!r} for {what}.",
                              f"use one of {sorted(PRESETS)}, 'all' (bands only) or a list like [4, 3, 2].")
        return list(PRESETS[value])
    return [int(b) for b in value]


def band_plan(cfg: FinetuneConfig, ls: patches.LabelledSet) -> dict:
    """Which file bands the model takes, where R, G, B are among them, and the scale."""
    bands = cfg.bands if cfg.bands is not None else ls.bands
    if bands == "all":
        indices = list(range(1, patches.band_count(ls.sources[0]) + 1))
    else:
        indices = _band_list(bands, "bands") or [1, 2, 3]
    if len(set(indices)) != len(indices):
        raise ConfigError(f"bands {indices} repeats a band.", "list each band once.")
    rgb = _band_list(cfg.rgb_bands, "rgb_bands")
    if rgb is None:
        if len(indices) != 3:
            raise ConfigError(
                f"{len(indices)} bands {indices} are selected but rgb_bands does not say which of them hold red, "
                "green and blue.",
                "set rgb_bands to the 1-based file bands of R, G, B (e.g. rgb_bands: sentinel2-eurosat, i.e. 4,3,2), "
                "so the backbone's pretrained RGB kernels land on them.")
        rgb = indices  # three bands are given in R, G, B order
    missing = [b for b in rgb if b not in indices]
    if len(rgb) != 3 or missing:
        raise ConfigError(f"rgb_bands {rgb} must name 3 of the selected bands {indices}.",
                          "list the red, green and blue bands, each among bands.")
    positions = [indices.index(b) for b in rgb]
    channels = [f"band{b}" for b in indices]
    for name, pos in zip(RGB_NAMES, positions):
        channels[pos] = name
    return {"indices": indices, "rgb": positions, "channels": channels,
            "scale": cfg.scale if cfg.scale is not None else ls.scale}


def class_weights(counts: np.ndarray, how: str, beta: float = 0.999) -> np.ndarray:
    """Loss weights per class, mean 1: inverse frequency, the effective number of samples
    ((1 - beta) / (1 - beta^n), Cui et al. 2019), or all ones."""
    counts = np.maximum(np.asarray(counts, np.float64), 1)
    if how == "inverse":
        w = 1.0 / counts
    elif how == "effective":
        w = (1 - beta) / (1 - np.power(beta, counts))
    else:
        w = np.ones_like(counts)
    return (w * len(w) / w.sum()).astype(np.float32)


def one_cycle(t: float, peak: float, div: float = 25.0, final_div: float = 1e4, warmup: float = 0.3) -> float:
    """One-cycle learning rate at progress ``t`` in [0, 1]: cosine warm-up from ``peak/div``
    to ``peak`` over the first ``warmup`` share, then cosine annealing to ``peak/final_div``.
    A pure function of progress, so a resumed run continues the same schedule."""
    t = min(max(t, 0.0), 1.0)
    if t < warmup:
        lo, hi, u = peak / div, peak, t / warmup
    else:
        lo, hi, u = peak, peak / final_div, (t - warmup) / (1 - warmup)
    return hi + (lo - hi) * (1 + math.cos(math.pi * u)) / 2


def fingerprint(cfg: FinetuneConfig) -> dict:
    """The settings a resumed run must share with the run it resumes."""
    skip = {"out", "overwrite", "ray_address", "workers", "gpu", "cpus_per_worker", "torch_threads", "read_cpus",
            "keep_checkpoints", "max_failures", "storage_path", "name", "tta", "tile_size", "gsd"}
    return {k: v for k, v in cfg.model_dump().items() if k not in skip}


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

    from raylib.pipelines.common.stages import dataset_from_table

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
    if bad:
        shown = "; ".join(f"{ls.sources[i]}: {e}" for i, e in bad[:5])
        raise InputError(f"{len(bad)} of {len(rows)} patches could not be read ({shown}"
                         + (" ..." if len(bad) > 5 else "") + ").", "remove or replace those files; nothing was written.")
    return ds, sums, npx


# --------------------------------------------------------------------------- the worker


def _set_lr(optimizer, t: float) -> float:
    for g in optimizer.param_groups:
        g["lr"] = one_cycle(t, g["peak_lr"])
    return optimizer.param_groups[-1]["lr"]


def _collate():
    """Ray Data collate function: a numpy batch -> (pixels, labels) tensors (copied: the
    batch is a read-only view of the object store)."""
    import torch
    from ray.data.collate_fn import NumpyBatchCollateFn

    class PixelsLabels(NumpyBatchCollateFn):
        def __call__(self, batch: dict):
            return torch.from_numpy(np.array(batch["pixels"])), torch.from_numpy(np.array(batch["label"]))

    return PixelsLabels()


def train_loop(config: dict) -> None:
    """``train_loop_per_worker``: one worker's share of fine-tuning (see the module doc)."""
    import tempfile
    from pathlib import Path

    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    from safetensors.torch import load_file, save_file

    from raylib.models.augment import radiometric_jitter, random_dihedral
    from raylib.models.backbones import build_classifier, classifier_parameter_names
    from raylib.pipelines.common.stages import local_folder

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["torch_threads"])
    device = ray.train.torch.get_device()
    cuda = device.type == "cuda"
    torch.manual_seed(config["seed"])  # same classifier initialisation on every worker
    model = build_classifier(local_folder(config["backbone"], "ray-backbones"), config["classes"],
                             len(config["mean"]), config["rgb"])
    head_names = set(classifier_parameter_names(model))
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad_epochs": 0, "stopped_early": False, "history": [],
             "resumed_from": []}
    opt_state = None
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            model.load_state_dict(load_file(str(Path(d) / "model.safetensors")))
            state = json.loads((Path(d) / "state.json").read_text())
            opt_state = torch.load(Path(d) / "optimizer.pt", map_location="cpu", weights_only=True)
        state["resumed_from"].append(state["epoch"])
    model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    mean = torch.tensor(config["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(config["std"], device=device).view(1, -1, 1, 1)
    criterion = torch.nn.CrossEntropyLoss(weight=torch.tensor(config["class_weights"], device=device),
                                          label_smoothing=config["label_smoothing"])
    gen = torch.Generator().manual_seed(config["seed"] * 1000 + rank)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    k_classes = len(config["classes"])
    epochs, freeze, spe = config["epochs"], config["freeze_epochs"], config["steps_per_epoch"]
    phase, net, optimizer = None, None, None
    collate = _collate()

    for epoch in range(state["epoch"], epochs):
        if state["stopped_early"]:
            break
        t0 = time.time()
        frozen = epoch < freeze
        if phase != ("frozen" if frozen else "full"):
            phase = "frozen" if frozen else "full"
            for n, p in model.named_parameters():
                p.requires_grad_(n in head_names or not frozen)
            net = model
            if world > 1:
                net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
            head = [p for n, p in model.named_parameters() if n in head_names]
            groups = [{"params": head, "peak_lr": config["lr"]}]
            if not frozen:
                body = [p for n, p in model.named_parameters() if n not in head_names]
                groups.insert(0, {"params": body, "peak_lr": config["lr"] * config["backbone_lr_factor"]})
            optimizer = torch.optim.AdamW(groups, lr=config["lr"], weight_decay=config["weight_decay"])
            if opt_state is not None and state.get("phase") == phase:
                optimizer.load_state_dict(opt_state)  # AdamW moments of the same phase
            opt_state = None
        p_start, p_len = (0, freeze) if frozen else (freeze, epochs - freeze)
        model.train()
        if frozen:  # frozen backbone: its batch-norm statistics stay as pretrained
            for n, m in model.named_modules():
                if n and not any(h.startswith(n + ".") or h == n for h in head_names):
                    m.eval()
        losses, lr = [], 0.0
        it = train_shard.iter_torch_batches(batch_size=config["batch_size"], drop_last=True, collate_fn=collate,
                                            local_shuffle_buffer_size=config["shuffle_buffer"],
                                            local_shuffle_seed=config["seed"] + 1000 * epoch + rank)
        for step, (x, y) in enumerate(it):
            if step >= spe:  # every worker takes the same number of steps
                break
            lr = _set_lr(optimizer, ((epoch - p_start) * spe + step) / max(1, p_len * spe))
            x = x.float()
            if config["augment"]:
                x = random_dihedral(x, gen)
            x = radiometric_jitter(x, config["jitter"], gen)
            x = (x.to(device, non_blocking=cuda) - mean) / std
            y = y.to(device)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = net(pixel_values=x).logits
            else:
                logits = net(pixel_values=x).logits
            loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))

        # validation: every worker scores its share of the batches; confusion matrices are summed
        model.eval()
        cm = torch.zeros((k_classes, k_classes), dtype=torch.int64)
        with torch.inference_mode():
            for i, (x, y) in enumerate(val_shard.iter_torch_batches(batch_size=config["batch_size"] * 2,
                                                                    collate_fn=collate)):
                if i % world != rank:
                    continue
                x = (x.float().to(device) - mean) / std
                if cuda:
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        pred = model(pixel_values=x).logits.argmax(1).cpu()
                else:
                    pred = model(pixel_values=x).logits.argmax(1)
                cm += torch.bincount(y * k_classes + pred, minlength=k_classes * k_classes).view(k_classes, k_classes)
        if world > 1:
            cm = cm.to(device)
            dist.all_reduce(cm)
            cm = cm.cpu()
            loss_t = torch.tensor([sum(losses), len(losses)], dtype=torch.float64, device=device)
            dist.all_reduce(loss_t)
            train_loss = float(loss_t[0] / max(1.0, float(loss_t[1])))
        else:
            train_loss = float(np.mean(losses)) if losses else float("nan")
        cmn = cm.numpy()
        support = cmn.sum(1)
        recall = np.diag(cmn)[support > 0] / support[support > 0]
        val_bacc = float(recall.mean()) if len(recall) else 0.0
        val_acc = float(np.trace(cmn) / max(1, cmn.sum()))
        if val_bacc > state["best"]:
            state.update(best=val_bacc, best_epoch=epoch + 1, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        if config["patience"] and state["bad_epochs"] >= config["patience"]:
            state["stopped_early"] = True
        state["epoch"] = epoch + 1
        state["phase"] = phase
        row = {"epoch": epoch + 1, "phase": phase, "train_loss": train_loss, "val_balanced_accuracy": val_bacc,
               "val_accuracy": val_acc, "lr": lr, "seconds": round(time.time() - t0, 2), "steps": len(losses)}
        state["history"].append(row)
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                          str(Path(d) / "model.safetensors"))
                torch.save(optimizer.state_dict(), Path(d) / "optimizer.pt")
                (Path(d) / "state.json").write_text(json.dumps(state, indent=1))
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report({**row, "stopped_early": state["stopped_early"]}, checkpoint=checkpoint)


# --------------------------------------------------------------------------- the job


def run_finetune(cfg: FinetuneConfig, argv: list[str] | None = None) -> dict:
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raylib.models.backbones import build_classifier, resolve_backbone
    from raylib.models.model_dir import MANIFEST, created_by, write_finetuned_dir
    from raylib.pipelines.common.stages import ensure_ray, share_folder

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
    backbone_dir = resolve_backbone(cfg.backbone)
    spec = {"bands": plan["indices"], "scale": plan["scale"], "input_size": cfg.input_size,
            "patch_size": ls.patch_size}
    train_ds, sums, npx = _decode(ls, fit_rows, spec, cfg.read_cpus)
    val_ds, _, _ = _decode(ls, val_rows, spec, cfg.read_cpus)
    mean = sums[:, 0] / npx
    std = np.sqrt(np.maximum(sums[:, 1] / npx - mean**2, 1e-12))
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
        from raylib.pipelines.common.scoring import score_labelled

        scored = score_labelled(cfg.out, ls, test_rows, ray_address=cfg.ray_address, both=True)
        test = {"test": scored["metrics"], "test_without_tta": scored["metrics_plain"]}
        manifest.metrics.update(test)
        storage.write_bytes(storage.join(cfg.out, "model.json"), manifest.to_json().encode())
    return {"out": cfg.out, "model_id": manifest.id, "epochs_completed": state["epoch"],
            "best_epoch": state["best_epoch"], "best_val_balanced_accuracy": state["best"],
            "stopped_early": state["stopped_early"], "resumed_from": state["resumed_from"], **test,
            "run": storage.join(storage_path, name), "seconds": round(time.time() - t0, 1)}

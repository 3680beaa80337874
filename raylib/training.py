"""Fit a head on backbone embeddings of a labelled patch set and write a model directory.

Also builds the built-in default model (offline MobileNetV2 + logistic regression on
EuroSAT RGB), on first use, into the local cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from . import datasets, metrics
from .backbones import Backbone, cache_dir
from .config import TrainHeadConfig
from .errors import InputError
from .heads import LogisticHead
from .models import DEFAULT_MODEL_NAME, MANIFEST, created_by, write_model_dir

log = logging.getLogger(__name__)
DEFAULT_MODEL_VERSION = "v1"


def embed_files(backbone: Backbone, files: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of images; also returns per-channel sum and sum of squares in [0, 1] units."""
    embs, s1, s2, n = [], 0.0, 0.0, 0
    for i in range(0, len(files), batch_size):
        imgs = [datasets.read_rgb(f) for f in files[i : i + batch_size]]
        shapes = {im.shape for im in imgs}
        if len(shapes) > 1:
            raise InputError(f"Images in {files[i]}.. differ in size {sorted(shapes)}.", "use patches of one size.")
        x = np.stack(imgs).astype(np.float32) / 255.0
        s1 = s1 + x.sum(axis=(0, 2, 3))
        s2 = s2 + (x.astype(np.float64) ** 2).sum(axis=(0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
        embs.append(backbone.embed(x))
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))
    return np.concatenate(embs), mean, std


def train_head(cfg: TrainHeadConfig, argv: list[str] | None = None):
    """Embed an image-folder set, fit a logistic-regression head, write a model directory."""
    ps = datasets.subsample(datasets.list_image_folder(cfg.data), cfg.per_class, cfg.seed)
    if len(ps.classes) < 2:
        raise InputError(f"{cfg.data} has {len(ps.classes)} class folder(s); a head needs at least 2.",
                         "lay the set out as <Class>/<image> with one folder per class.")
    backbone = Backbone.from_pretrained(cfg.backbone, input_size=cfg.input_size)
    log.info("embedding %d images of %d classes with %s", len(ps.files), len(ps.classes), cfg.backbone)
    X, band_mean, band_std = embed_files(backbone, ps.files, cfg.batch_size)
    test = datasets.stratified_split(ps.labels, cfg.test_fraction, cfg.seed)
    head = LogisticHead(C=cfg.C).fit(X[~test], ps.labels[~test])
    scores = metrics.classification_metrics(ps.labels[test], head.predict(X[test]), ps.classes)
    manifest = write_model_dir(
        cfg.out, name=cfg.name, backbone_ref=cfg.backbone, input_size=cfg.input_size, head=head,
        classes=ps.classes, band_mean=band_mean, band_std=band_std, tile_size=cfg.tile_size, gsd=cfg.gsd,
        metrics={"holdout": scores, "n_train": int((~test).sum()), "n_test": int(test.sum()),
                 "data": cfg.data, "split": f"stratified {cfg.test_fraction} seed {cfg.seed}"},
        created_by=created_by(argv),
    )
    return manifest, scores


def find_eurosat() -> str:
    """Where EuroSAT RGB lives: ``LANDCOVER_EUROSAT_DIR``, or ``../shared/data/eurosat-rgb``."""
    env = os.environ.get("LANDCOVER_EUROSAT_DIR")
    if env:
        return env
    here = Path(__file__).resolve().parent.parent
    for cand in (Path.cwd() / "../shared/data/eurosat-rgb", here / "../shared/data/eurosat-rgb"):
        if cand.is_dir():
            return str(cand.resolve())
    raise InputError(
        "The built-in default model is trained on EuroSAT RGB on first use, and it was not found.",
        "download EuroSAT RGB (https://github.com/phelber/EuroSAT) and set LANDCOVER_EUROSAT_DIR to its folder, "
        "or pass --model.",
    )


def default_model_dir(per_class: int = 300) -> str:
    """The built-in default model directory, built on first use and cached."""
    out = cache_dir() / "models" / f"{DEFAULT_MODEL_NAME}-{DEFAULT_MODEL_VERSION}"
    if (out / MANIFEST).exists():
        return str(out)
    data = find_eurosat()
    log.warning("building the default model (first use): MobileNetV2 + logistic regression on %d EuroSAT "
                "patches per class from %s -> %s", per_class, data, out)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    cfg = TrainHeadConfig(data=data, out=str(tmp), per_class=per_class, name=DEFAULT_MODEL_NAME)
    train_head(cfg, argv=["(built-in default model)"])
    if not out.exists():
        tmp.rename(out)
    return str(out)

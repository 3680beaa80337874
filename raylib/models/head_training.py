"""Fit a logistic-regression head on backbone embeddings of a labelled image folder and write
a model directory (``landcover train-head --data``; the built-in default model is one)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from raylib.config import TrainHeadConfig
from raylib.errors import InputError
from raylib.eval import metrics
from raylib.eval.reliability import reliability
from raylib.io import storage
from raylib.models import calibration
from raylib.models.augment import degrade as degrade_fn
from raylib.models.backbones import Backbone
from raylib.models.calibration import oof_temperature
from raylib.models.heads import LogisticHead
from raylib.models.model_dir import created_by, write_model_dir
from raylib.raster import patches, radiometry

log = logging.getLogger(__name__)


def embed_files(backbone: Backbone, files: list[str], batch_size: int = 64, degrade: list[float] | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Embeddings of images, and (with ``degrade = [min, max]``) of each image once more as
    seen at a GSD ``f`` times coarser, ``f`` drawn per image from ``[min, max]``; also the
    per-channel mean and std in [0, 1] units (of the images as they are)."""
    import torch

    rng = np.random.default_rng(seed)
    embs, coarse, s1, s2, n = [], [], 0.0, 0.0, 0
    for i in range(0, len(files), batch_size):
        imgs = [patches.read_rgb(f) for f in files[i : i + batch_size]]
        shapes = {im.shape for im in imgs}
        if len(shapes) > 1:
            raise InputError(f"Images in {files[i]}.. differ in size {sorted(shapes)}.", "use patches of one size.")
        x = np.stack(imgs).astype(np.float32) / 255.0
        s1 = s1 + x.sum(axis=(0, 2, 3))
        s2 = s2 + (x.astype(np.float64) ** 2).sum(axis=(0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
        embs.append(backbone.embed(x))
        if degrade:
            t = torch.from_numpy(x)
            factors = rng.uniform(degrade[0], degrade[1], len(x))
            coarse.append(backbone.embed(torch.cat([degrade_fn(t[j:j + 1], f) for j, f in enumerate(factors)]).numpy()))
    mean, std = patches.band_mean_std(s1, s2, n)
    return np.concatenate(embs), (np.concatenate(coarse) if degrade else None), mean, std


def _calibrate(cfg: TrainHeadConfig, head, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray):
    """The head's temperature (``oof_temperature``), and the hold-out's expected calibration
    error before and after it."""
    t = oof_temperature(lambda: LogisticHead(C=cfg.C or 0.5), X, y, cfg.seed)
    if t is None:
        return 1.0, {"temperature": 1.0, "note": "too few rows per class to fit a temperature"}
    p = head.predict_proba(X_test)
    before = reliability(p.max(axis=1), p.argmax(axis=1) == y_test)
    pt = calibration.apply_temperature(p, t)
    after = reliability(pt.max(axis=1), pt.argmax(axis=1) == y_test)
    return t, {"temperature": t, "holdout_ece_before": before["ece"], "holdout_ece": after["ece"],
               "holdout_reliability": after}


def _reflectance(cfg: TrainHeadConfig) -> dict | None:
    """The images' relation to reflectance, for ``scaling: reflectance``: EuroSAT RGB's
    stretch, fitted on the EuroSAT MS sample beside the data when it is there."""
    if cfg.reflectance == "none":
        return None

    if not storage.parse(cfg.data).is_s3:
        ms = Path(cfg.data).parent / "eurosat-ms-sample"
        if ms.is_dir():
            return radiometry.eurosat_rgb_stretch(str(ms), cfg.data)
    return dict(radiometry.EUROSAT_RGB_STRETCH)


def _spectral(cfg: TrainHeadConfig, classes: list[str]):
    """The spectral head (``models.spectral``) asked for with ``spectral: eurosat-ms``:
    (head, source, metrics), or None when the sample is not at hand (said in the log)."""
    if cfg.spectral == "none":
        return None
    import os

    from raylib.models import spectral

    ms = os.environ.get("LANDCOVER_EUROSAT_MS_DIR") or (
        str(Path(cfg.data).parent / "eurosat-ms-sample") if not storage.parse(cfg.data).is_s3 else "")
    if not ms or not Path(ms).is_dir():
        log.warning("no spectral head: the EuroSAT MS sample is not at %s (set LANDCOVER_EUROSAT_MS_DIR)", ms or "(none)")
        return None
    head, metrics = spectral.fit_eurosat_ms(ms, classes, cfg.seed)
    return head, f"EuroSAT MS sample ({ms}): mean per-pixel NDVI and NDWI, Sentinel-2 L1C reflectance", metrics


def train_head_on_folder(cfg: TrainHeadConfig, argv: list[str] | None = None):
    """Embed an image-folder set, fit a logistic-regression head, write a model directory."""
    ps = patches.subsample(patches.list_image_folder(cfg.data), cfg.per_class, cfg.seed)
    if len(ps.classes) < 2:
        raise InputError(f"{cfg.data} has {len(ps.classes)} class folder(s); a head needs at least 2.",
                         "lay the set out as <Class>/<image> with one folder per class.")
    backbone = Backbone.from_pretrained(cfg.backbone, input_size=cfg.input_size)
    log.info("embedding %d images of %d classes with %s", len(ps.files), len(ps.classes), cfg.backbone)
    X, Xc, band_mean, band_std = embed_files(backbone, ps.files, cfg.batch_size, cfg.degrade, cfg.seed)
    test = patches.stratified_split(ps.labels, cfg.test_fraction, cfg.seed)
    train_X, train_y = X[~test], ps.labels[~test]
    if Xc is not None:  # the degraded copies of the training images train too; the test images stay out
        train_X, train_y = np.concatenate([train_X, Xc[~test]]), np.concatenate([train_y, train_y])
    head = LogisticHead(C=cfg.C or 0.5).fit(train_X, train_y)
    scores = metrics.classification_metrics(ps.labels[test], head.predict(X[test]), ps.classes)
    extra = {}
    if Xc is not None:
        extra["holdout_degraded"] = metrics.classification_metrics(ps.labels[test], head.predict(Xc[test]), ps.classes)
    temperature, extra["calibration"] = _calibrate(cfg, head, train_X, train_y, X[test], ps.labels[test])
    ood = calibration.OODScorer.fit(train_X, train_y)
    manifest = write_model_dir(
        cfg.out, name=cfg.name, backbone_ref=cfg.backbone, input_size=cfg.input_size, head=head,
        classes=ps.classes, band_mean=band_mean, band_std=band_std, tile_size=cfg.tile_size, gsd=cfg.gsd,
        metrics={"holdout": scores, **extra, "n_train": int((~test).sum()), "n_test": int(test.sum()),
                 "data": cfg.data, "split": f"stratified {cfg.test_fraction} seed {cfg.seed}"},
        created_by=created_by(argv), reflectance=_reflectance(cfg),
        training={"degrade": cfg.degrade} if cfg.degrade else None, temperature=temperature, ood=ood,
        spectral=_spectral(cfg, ps.classes), adapt=cfg.adapt,
    )
    return manifest, scores

"""``landcover train-head``: a logistic-regression head on an image folder
(``models.head_training``), or on a few labelled tiles of an embedding store.

With ``pixels``, also a pixel classifier of the drawn tiles' spectral bands
(``common.pixel_training``), which the map averages with the tile head.

Store labels: a class raster (each tile's majority class with a purity threshold, read
exactly as ``landcover assess`` reads a reference), points/polygons (the tiles they fall
in), or a CSV of ``tile_id,label``; a crosswalk maps codes to classes as in ``assess``.
``per_class`` K draws a labelling budget of K labelled tiles per class (seeded); the tiles
used are stored in the model directory (``training_tiles.parquet``) so that ``landcover
assess --exclude-training <model dir>`` leaves them out.
"""

from __future__ import annotations

import numpy as np

from raylib.config import TrainHeadConfig
from raylib.models.calibration import oof_temperature
from raylib.models.head_training import train_head_on_folder
from raylib.models.heads import LogisticHead
from raylib.pipelines.common.labelled_tiles import labelled_tiles, store_features, write_store_head
from raylib.pipelines.common.pixel_training import train_pixel_head

STORE_C = 0.1  # few labelled tiles: a stronger regularisation mapped better (NC Wake, 20 per class: 0.79 vs 0.78 at 0.5)


def train_head_on_store(cfg, argv: list[str] | None = None):
    """Fit a head on labelled tiles of an embedding store; write a model directory."""
    lt = labelled_tiles(cfg)
    feats, X_all, emb = store_features(lt, cfg.features)
    X, tr_y = X_all[lt.train], lt.y[lt.train]
    used = np.array(sorted(set(tr_y.tolist())))
    yk = np.searchsorted(used, tr_y)  # the head's classes: those with training tiles, in group order
    head = LogisticHead(C=cfg.C or STORE_C, l2_normalize=cfg.features == "embedding").fit(X, yk)
    temperature, cal = _temperature(cfg, X, yk)
    metrics = {"labelled_tiles": lt.counts, "labels": cfg.labels, "crosswalk": cfg.crosswalk, "not_used": lt.unused,
               "per_class": cfg.per_class, "seed": cfg.seed, "features": cfg.features, "calibration": cal,
               "embeddings": cfg.store}
    pixel_head = None
    if cfg.pixels:
        pixel_head, metrics["pixels"] = train_pixel_head(cfg, lt, used, feats.n_bands)
    manifest = write_store_head(cfg.out, lt, head, used, feats, emb[lt.train], name=cfg.name, metrics=metrics,
                                temperature=temperature, argv=argv, pixel_head=pixel_head)
    return manifest, {"labelled_tiles": lt.counts, "classes": [lt.classes[i] for i in used], "not_used": lt.unused,
                      "warnings": lt.warnings(cfg.per_class)}


def _temperature(cfg, X, y):
    t = oof_temperature(lambda: LogisticHead(C=cfg.C or STORE_C, l2_normalize=cfg.features == "embedding"),
                        X, y, cfg.seed)
    if t is None:
        return 1.0, {"temperature": 1.0, "note": "too few tiles per class to fit a temperature"}
    return t, {"temperature": t, "fitted_on": f"out-of-fold probabilities of the {len(y)} labelled tiles"}


def train_head(cfg: TrainHeadConfig, argv: list[str] | None = None):
    """A head on an image folder (``cfg.data``) or on labelled tiles of a store (``cfg.store``)."""
    if cfg.name is None:
        cfg = cfg.model_copy(update={"name": default_name(cfg)})
    if cfg.store:
        return train_head_on_store(cfg, argv)
    return train_head_on_folder(cfg, argv)


def default_name(cfg: TrainHeadConfig) -> str:
    """A model's name from what it learnt: the image folder, or the map whose store it was
    trained on, then the backbone and the head (``nc-mobilenetv2-logreg``): a head trained on
    NC Wake's tiles is not named after EuroSAT."""
    from raylib.formats import embstore
    from raylib.io import storage
    from raylib.io.names import safe_name

    if cfg.store:
        store = embstore.locate(cfg.store)
        source = storage.basename(store)
        if source in (embstore.FOLDER, embstore.LEGACY_FOLDER):  # a map's store: named after the map
            source = storage.basename(store.rstrip("/").rsplit("/", 1)[0])
        backbone = embstore.read_meta(store).get("backbone", "default")
    else:
        source, backbone = storage.basename(cfg.data), cfg.backbone
    net = "mobilenetv2" if backbone == "default" else storage.basename(backbone)
    head = "logreg-px" if cfg.pixels else "logreg"
    return safe_name(f"{source}-{net}-{head}".lower())

"""Labelled tiles of an embedding store: labels from a raster, points/polygons or a CSV,
the labelling budget drawn from them, the heads' features, and the model directory of a
head trained on them (``train-head``, ``tune`` and ``export-tiles`` share them).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from raylib.config import SceneRead
from raylib.errors import InputError
from raylib.eval import reference
from raylib.formats import embstore
from raylib.io import storage
from raylib.models import calibration
from raylib.models.model_dir import created_by, write_model_dir
from raylib.models.tilefeatures import TileFeatures
from raylib.raster.patches import TRAINING_TILES

STORE_COLUMNS = list(embstore.TILE_COLUMNS) + ["embedding", "band_mean", "band_std", "ndvi", "ndwi", "status"]


def tile_labels(table, cfg) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """(store rows, class index, class names, what was not used) of the labelled tiles."""
    labels = cfg.labels
    if labels.lower().endswith(".csv"):
        t = reference.read_table(labels, "labels", ["tile_id", "label"])
        pos = {tid: i for i, tid in enumerate(table.column("tile_id").to_pylist())}
        ids, labs = t.column("tile_id").to_pylist(), t.column("label").to_pylist()
        unknown = [x for x in ids if x not in pos]
        if len(unknown) == len(ids):
            raise InputError(f"None of the {len(ids)} tile ids in {labels} is in the embedding store "
                             f"(e.g. {unknown[:2]}).", "label tiles of this store (its tile_id column).")
        if cfg.crosswalk:
            cw = reference.load_crosswalk(cfg.crosswalk)
            mapped = [cw.reference_group(v) for v in labs]
            missing = sorted({v for v, g in zip(labs, mapped) if g is None})
            if missing:
                raise InputError(f"Label(s) {missing} of {labels} are not in the 'reference' section of "
                                 f"{cfg.crosswalk}.", "add them to the crosswalk, or drop those rows.")
            labs = mapped
        classes = sorted({v for v in labs if v})
        keep = [(pos[i], classes.index(v)) for i, v in zip(ids, labs) if i in pos and v]
        rows = np.array([k for k, _ in keep], np.int64)
        y = np.array([c for _, c in keep], np.int64)
        return rows, y, classes, {"tile_ids_not_in_store": len(unknown)}
    cw = reference.load_crosswalk(cfg.crosswalk) if cfg.crosswalk else None
    if cw is None:
        raise InputError("Labels from a raster or from points/polygons need --crosswalk: which codes are which class.",
                         "pass --crosswalk <yaml> with a 'reference' section (its 'map' section may be empty: {}).")
    if reference.is_vector(labels):
        ref = reference.vector_reference(table, labels, cw, cfg.class_column, cfg.purity)
    else:
        ref = reference.raster_reference(table, labels, cw, cfg.purity)
    return ref.rows, ref.group, list(cw.groups), dict(ref.not_assessed)


@dataclass
class LabelledTiles:
    """The labelled tiles of a store and the labelling budget drawn from them.

    ``rows``/``y``: every labelled, mapped tile (store row, class index into ``classes``),
    one label per tile; ``train``: positions in ``rows`` of the K-per-class draw; the other
    labelled tiles are held out (``held_out``)."""

    table: object
    meta: dict
    ok: np.ndarray
    rows: np.ndarray
    y: np.ndarray
    classes: list[str]
    train: np.ndarray
    counts: dict
    unused: dict

    def warnings(self, per_class: int | None) -> list[str]:
        """What the draw could not give: classes with fewer labelled tiles than asked, and
        classes of the labels with none (a head trained here cannot predict them)."""
        out = [f"class {c}: {n} labelled tile(s) found, {per_class} asked" for c, n in self.counts.items()
               if per_class and n < per_class]
        absent = [c for c in self.classes if c not in self.counts]
        if absent:
            out.append(f"no labelled tile of class(es) {', '.join(absent)}: the head cannot predict "
                       f"{'it' if len(absent) == 1 else 'them'}")
        return out

    @property
    def held_out(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.rows)), self.train)

    def tile_ids(self, positions: np.ndarray) -> list[str]:
        col = self.table.column("tile_id")
        return [col[int(r)].as_py() for r in self.rows[positions]]

    def training_tiles_parquet(self) -> bytes:
        """``training_tiles.parquet`` (tile_id, label) of the drawn tiles."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.table({"tile_id": pa.array(self.tile_ids(self.train)),
                                 "label": pa.array([self.classes[v] for v in self.y[self.train]])}), buf)
        return buf.getvalue()


def labelled_tiles(cfg, columns: list[str] | None = None) -> LabelledTiles:
    """Read the store, label its tiles from ``cfg.labels`` (+ crosswalk) and draw
    ``cfg.per_class`` of each class with ``cfg.seed``; clear errors for labels that hit no
    tile, fewer than two classes, an empty store."""
    store = embstore.locate(cfg.store)  # the store's folder, or a map folder holding one
    meta = embstore.read_meta(store)
    table = embstore.read(store, columns=columns or STORE_COLUMNS)
    if table.num_rows == 0:
        raise InputError(f"The embedding store {store} is empty.", "build it with landcover map --store.")
    ok = np.asarray(table.column("status").to_pylist(), dtype=object) == "ok"
    rows, y, classes, unused = tile_labels(table, cfg)
    keep = ok[rows]
    rows, y = rows[keep], y[keep]
    if len(rows) == 0:
        raise InputError(f"The labels {cfg.labels} hit no mapped tile of {store} ({unused}).",
                         "give labels inside the store's area (check their CRS), and the crosswalk's codes.")
    # one label per tile (a tile hit by two features of different classes keeps the first)
    _, first = np.unique(rows, return_index=True)
    rows, y = rows[np.sort(first)], y[np.sort(first)]
    present = np.unique(y)
    if len(present) < 2:
        raise InputError(f"The labels give tiles of {len(present)} class(es) ({[classes[i] for i in present]}); "
                         "a head needs at least 2.", "label tiles of at least two classes.")
    rng = np.random.default_rng(cfg.seed)
    chosen, counts = [], {}
    for c in present:
        idx = np.flatnonzero(y == c)
        k = len(idx) if cfg.per_class is None else min(cfg.per_class, len(idx))
        chosen.append(np.sort(rng.choice(idx, size=k, replace=False)))
        counts[classes[c]] = int(k)
    return LabelledTiles(table, meta, ok, rows, y, classes, np.concatenate(chosen), counts, unused)


def store_features(lt: LabelledTiles, mode: str) -> tuple[TileFeatures, np.ndarray, np.ndarray]:
    """(features fitted on every embedding of the store, feature rows of the labelled tiles
    (aligned with ``lt.rows``), their embeddings)."""
    ok = lt.ok
    emb_all = embstore.embeddings_of(lt.table.filter(ok))
    stats_all = embstore.stats_of(lt.table)
    n_bands = int(stats_all["n_stats"][ok].max()) if ok.any() else 0
    feats = TileFeatures.fit(mode, emb_all, n_bands)
    ok_pos = np.cumsum(ok) - 1  # store row -> position among the ok rows
    emb = emb_all[ok_pos[lt.rows]]
    st = {k: stats_all[k][lt.rows] for k in ("band_mean", "band_std", "ndvi", "ndwi")}
    return feats, feats.transform(emb, st), emb


def write_store_head(out: str, lt: LabelledTiles, head, class_index: np.ndarray, feats: TileFeatures, emb_tr,
                     *, name: str, metrics: dict, temperature: float, argv: list[str] | None, pixel_head=None):
    """A model directory for a head trained on tiles of the store: the store's backbone and
    preprocessing (so remap and map accept it), its features, ``training_tiles.parquet``."""

    meta = lt.meta
    names = [lt.classes[i] for i in class_index]
    ood = calibration.OODScorer.fit(emb_tr, lt.y[lt.train], n_components=max(2, min(16, len(lt.train) // 4)))
    pre = meta["preprocessing"]
    src_folder = _source_backbone(meta)
    return write_model_dir(
        out, name=name, backbone_ref=src_folder or meta["backbone"], input_size=meta.get("input_size"),
        head=head, classes=names, band_mean=None, band_std=None, bands=pre["model_bands"],
        tile_size=pre["grid"]["tile_size"], gsd=pre["grid"]["gsd"], metrics=metrics,
        created_by=created_by(argv), temperature=temperature, ood=ood, features=feats,
        backbone_extra={"source": meta["backbone"], "weights_hash": meta["weights_hash"],
                        "preprocessing_hash": meta["preprocessing_hash"]},
        training={"embeddings": metrics.get("embeddings"), "training_tiles": TRAINING_TILES, "store": {
            k: meta[k] for k in ("backbone", "weights_hash", "preprocessing_hash", "model_id")},
            "map_settings": map_settings(meta)},
        extra_files={TRAINING_TILES: lt.training_tiles_parquet()}, pixel_head=pixel_head,
    )


def map_settings(meta: dict) -> dict:
    """The map flags the store was made with, those not at their defaults (a map with a head of
    it should use them)."""
    return SceneRead.recorded(meta["preprocessing"]).model_dump(exclude_defaults=True)


def _source_backbone(meta: dict) -> str | None:
    """The backbone folder of the model the store was made with, when it is at hand."""
    from pathlib import Path

    uri = meta.get("model_uri")
    if not uri or storage.parse(uri).is_s3:
        return None
    try:
        man = json.loads((Path(uri) / "model.json").read_text())
    except (OSError, ValueError):
        return None
    path = (man.get("backbone") or {}).get("path")
    return str(Path(uri) / path) if path and (Path(uri) / path).is_dir() else None

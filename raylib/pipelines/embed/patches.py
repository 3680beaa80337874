"""Labelled patches -> backbone embeddings (Parquet), through Ray Data: decoding/reading in
CPU tasks, the backbone on an actor pool (the same shape as the map job).

Embeddings table (one row per patch)::

    tile_id      string   stable id of the patch (hash of its source and window)
    label        string   class name
    label_index  int16    index into the class list in the file metadata
    split        string   train | test (stored, so every later step uses the same split)
    group        string   split group (the file, or a spatial block of a label raster)
    source       string   file URI, or image URI#r<row>c<col> for cut patches
    embedding    fixed_size_list<float32>[D]

File metadata ``landcover``: classes, backbone, input_size, band statistics (mean/std of the
patches in [0, 1], used by models for ``match`` scaling), split settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time

import numpy as np

from raylib.config import EmbedConfig
from raylib.errors import ConfigError, InputError
from raylib.formats import out_folder
from raylib.io import storage
from raylib.models.backbones import Backbone
from raylib.pipelines.common.sizing import model_batch
from raylib.pipelines.common.gpu_probe import check_gpus, GpuBuildWatch
from raylib.pipelines.common.ray_session import ensure_ray
from raylib.pipelines.common.stages import actor_stage, collect, dataset_from_table, pool_size, set_torch_threads
from raylib.raster import bands as bandlib
from raylib.raster import patches, scenes

log = logging.getLogger(__name__)


def _patch_id(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()[:20]


# --------------------------------------------------------------------------- patch lists


def folder_records(cfg: EmbedConfig) -> tuple[list[dict], list[str]]:
    ps = patches.list_image_folder(cfg.data)
    recs = [{"source": f, "label_index": int(y), "group": f}
            for f, y in zip(ps.files, ps.labels)]
    return recs, ps.classes


def label_raster_records(cfg: EmbedConfig, info: scenes.SceneInfo, bands: list[int]) -> tuple[list[dict], list[str]]:
    import rasterio

    lab_info = scenes.open_scene(cfg.labels)
    if (lab_info.width, lab_info.height, lab_info.transform) != (info.width, info.height, info.transform):
        raise InputError(f"Label raster {cfg.labels} is not on the grid of {cfg.data} "
                         f"({lab_info.width}x{lab_info.height} vs {info.width}x{info.height}, or another transform).",
                         "resample the labels onto the image grid (nearest neighbour) first.")
    mask = None
    if info.nodata is not None:  # image fill: every selected band equals nodata
        with storage.rasterio_env(), rasterio.open(storage.parse(cfg.data).gdal_path) as ds:
            mask = np.all(ds.read(bands) == info.nodata, axis=0)
    kept = patches.label_patches(cfg.labels, cfg.patch_size, cfg.threshold, image_nodata_mask=mask)
    if not kept:
        raise InputError(f"No {cfg.patch_size}px patch of {cfg.labels} has one class over {cfg.threshold:.0%}.",
                         "use a smaller patch_size or a lower threshold.")
    values = sorted({v for _, _, v, _ in kept})
    names = {v: (cfg.classes or {}).get(v, f"class_{v}") for v in values}
    classes = sorted(set(names.values()))
    block = cfg.patch_size * 4  # spatial blocks of 4x4 patches: the unit of a group split
    recs = [{"source": f"{info.uri}#r{r}c{c}", "label_index": classes.index(names[v]),
             "group": f"{info.uri}#block{r // block}_{c // block}"}
            for r, c, v, _ in kept]
    return recs, classes


def assign_split(recs: list[dict], cfg: EmbedConfig) -> np.ndarray:
    labels = np.array([r["label_index"] for r in recs])
    if cfg.split == "stratified":
        return patches.stratified_split(labels, cfg.test_fraction, cfg.seed)
    groups = np.array([r["group"] for r in recs])
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise ConfigError(f"split: group needs at least 2 groups; {cfg.data} has {len(uniq)}.",
                          "use split: stratified.")
    rng = np.random.default_rng(cfg.seed)
    n_test = max(1, int(round(len(uniq) * cfg.test_fraction)))
    test_groups = set(rng.permutation(uniq)[:n_test].tolist())
    return np.array([g in test_groups for g in groups])


# --------------------------------------------------------------------------- Ray stages


class Embedder:
    """Actor: loads the backbone once; embeds batches of patches."""

    def __init__(self, backbone: str, input_size: int, torch_threads: int | None, actors: int,
                 precision: str = "fp32"):
        from raylib.models.device import placed

        set_torch_threads(torch_threads, actors)
        device, precision = placed("auto", precision)
        self.backbone = Backbone.from_pretrained(backbone, input_size=input_size, device=device, precision=precision)
        self.dim = self.backbone.embed(np.zeros((1, 3, input_size, input_size), np.float32)).shape[1]

    def __call__(self, batch: dict) -> dict:
        ok = np.asarray(batch["status"]) == "ok"
        emb = np.zeros((len(ok), self.dim), np.float32)
        if ok.any():
            emb[ok] = self.backbone.embed(batch["pixels"][ok])
        return {"idx": batch["idx"], "embedding": emb, "stats": batch["stats"], "npx": batch["npx"],
                "status": batch["status"], "error": batch["error"]}


# --------------------------------------------------------------------------- the job


def embed_patches(cfg: EmbedConfig, argv: list[str] | None = None) -> dict:
    """``landcover embed --data``: labelled patches (an image folder, or a scene with a
    label raster) -> the embeddings table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.time()
    if cfg.labels:
        info = scenes.open_scene(cfg.data)
        bands = bandlib.resolve_bands(cfg.bands, info.count, cfg.data, 3)
        recs, classes = label_raster_records(cfg, info, bands)
    else:  # band counts of multi-band files are checked as each file is read
        bands = None if cfg.bands is None else bandlib.band_indices(cfg.bands, 3)
        recs, classes = folder_records(cfg)
    if len(classes) < 2:
        if cfg.labels:
            raise InputError(f"Only class {classes} of {cfg.labels} passes the {cfg.threshold:.0%} rule at "
                             f"{cfg.patch_size} px; a head needs at least 2 classes.",
                             "use a smaller patch_size, a lower threshold, or another scene.")
        raise InputError(f"{cfg.data} has {len(classes)} class(es); at least 2 are needed.",
                         "lay the set out as <Class>/<image> with one folder per class.")
    test = assign_split(recs, cfg)
    out_folder.check(cfg.out, "embeddings", cfg.overwrite)
    out_folder.unfinish(cfg.out)
    n = len(recs)
    work = pa.table({"idx": pa.array(np.arange(n, dtype=np.int64)), "source": pa.array([r["source"] for r in recs])})
    ensure_ray(cfg.ray_address)
    check_gpus(cfg.num_gpus)
    gpu_build = GpuBuildWatch(f"--num-gpus {cfg.num_gpus:g}" if cfg.num_gpus else None)
    ds = dataset_from_table(work, cfg.read_batch_size * 4)
    spec = {"bands": bands or [1, 2, 3], "scale": cfg.scale, "input_size": cfg.input_size,
            "patch_size": cfg.patch_size if cfg.labels else None, "dtype": "float32"}
    ds = ds.map_batches(patches.decode_batch, fn_kwargs={"spec": spec}, batch_size=cfg.read_batch_size,
                        batch_format="numpy", num_cpus=cfg.read_cpus)
    actors = pool_size(cfg.actors, cfg.num_gpus)
    ds = actor_stage(ds, Embedder, {"backbone": cfg.backbone, "input_size": cfg.input_size,
                                    "torch_threads": cfg.torch_threads, "actors": actors, "precision": cfg.precision},
                     actors=actors, batch_size=model_batch(cfg.batch_size, cfg.num_gpus), actor_cpus=cfg.actor_cpus,
                     num_gpus=cfg.num_gpus)
    # the embedding width is only known from the model: taken from the first batch
    res = collect(ds, n, {"embedding": (None, np.float32, 0.0), "stats": ((3, 2), np.float64, 0.0),
                          "npx": ((), np.int64, 0), "status": ((), object, "error"), "error": ((), object, "")},
                  what="embed")
    patches.raise_unreadable([(recs[i]["source"], res["error"][i]) for i in np.flatnonzero(res["status"] != "ok")],
                             n, "remove or replace those files; nothing was written.")
    emb = res["embedding"]
    mean, std = patches.band_mean_std(res["stats"][:, :, 0].sum(0), res["stats"][:, :, 1].sum(0), int(res["npx"].sum()))
    d = emb.shape[1]
    table = pa.table({
        "tile_id": pa.array([_patch_id(r["source"]) for r in recs]),
        "label": pa.array([classes[r["label_index"]] for r in recs]),
        "label_index": pa.array([r["label_index"] for r in recs], pa.int16()),
        "split": pa.array(np.where(test, "test", "train").tolist()),
        "group": pa.array([r["group"] for r in recs]),
        "source": pa.array([r["source"] for r in recs]),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), d),
    })
    meta = {"classes": classes, "backbone": cfg.backbone, "input_size": cfg.input_size, "dim": d,
            "band_mean": mean.tolist(), "band_std": std.tolist(), "bands": bands, "scale": cfg.scale,
            "split": {"kind": cfg.split, "test_fraction": cfg.test_fraction, "seed": cfg.seed},
            "data": cfg.data, "labels": cfg.labels, "patch_size": cfg.patch_size if cfg.labels else None}
    table = table.replace_schema_metadata({b"landcover": json.dumps(meta).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(storage.join(cfg.out, "embeddings.parquet"), buf.getvalue())
    out_folder.finish(cfg.out)
    counts = {c: int(sum(1 for r in recs if r["label_index"] == i)) for i, c in enumerate(classes)}
    return gpu_build.into({"out": cfg.out, "rows": n, "dim": d, "classes": counts, "train": int((~test).sum()),
                           "test": int(test.sum()), "seconds": round(time.time() - t0, 2)})

"""Labelled patch sets: an image folder ``<Class>/<file>`` (JPG/PNG/TIF), local or S3."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from raylib.errors import InputError
from raylib.io import storage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
TRAINING_TILES = "training_tiles.parquet"  # beside the class folders of landcover export-tiles


@dataclass
class PatchSet:
    files: list[str]
    labels: np.ndarray  # int class index per file
    classes: list[str]


def list_image_folder(uri: str) -> PatchSet:
    """Every image under ``uri`` with its class (the name of its parent folder)."""
    if not storage.parse(uri).is_s3 and not os.path.isdir(storage.parse(uri).key):
        raise InputError(f"Image folder {uri} does not exist.", "give a folder laid out as <Class>/<image>.")
    files = storage.list_files(uri if uri.endswith("/") or not storage.parse(uri).is_s3 else uri + "/")
    root = storage.parse(uri).key.rstrip("/")
    pairs = []
    for f in files:
        rel = storage.parse(f).key[len(root):].lstrip("/").split("/")
        if rel[-1].startswith("."):
            continue
        if len(rel) == 1 and (rel[0].startswith("_") or rel[0] == TRAINING_TILES):
            continue  # an exported folder's own files (landcover export-tiles)
        if len(rel) != 2:
            raise InputError(f"{f} is not at <Class>/<file> depth in {uri}.", "lay the set out as <Class>/<image>.")
        if not rel[-1].lower().endswith(IMAGE_SUFFIXES):
            raise InputError(f"{f} is not an image ({', '.join(IMAGE_SUFFIXES)}).", "remove it from the data folder.")
        pairs.append((f, rel[0]))
    if not pairs:
        raise InputError(f"No images found under {uri}.", "give a folder laid out as <Class>/<image>.")
    classes = sorted({c for _, c in pairs})
    index = {c: i for i, c in enumerate(classes)}
    return PatchSet([f for f, _ in pairs], np.array([index[c] for _, c in pairs]), classes)


def training_tiles_of_folder(uri: str) -> bytes | None:
    """``training_tiles.parquet`` of a folder written by ``landcover export-tiles``, when it is one."""
    path = storage.join(uri, TRAINING_TILES)
    return storage.read_bytes(path) if not uri.endswith(".parquet") and storage.exists(path) else None


def subsample(ps: PatchSet, per_class: int | None, seed: int) -> PatchSet:
    if not per_class:
        return ps
    rng = np.random.default_rng(seed)
    keep = []
    for ci in range(len(ps.classes)):
        idx = np.flatnonzero(ps.labels == ci)
        keep.extend(sorted(rng.permutation(idx)[:per_class].tolist()))
    keep = np.array(sorted(keep))
    return PatchSet([ps.files[i] for i in keep], ps.labels[keep], ps.classes)


def read_rgb(uri: str) -> np.ndarray:
    """Decode one image to uint8 (3, H, W); clear error naming a corrupt file."""
    data = storage.read_bytes(uri)
    try:
        if uri.lower().endswith((".tif", ".tiff")):
            from rasterio.io import MemoryFile

            with MemoryFile(data) as mf, mf.open() as ds:
                arr = ds.read()
            if arr.shape[0] < 3:
                raise InputError(f"{uri} has {arr.shape[0]} band(s); RGB needs 3.", "use 3-band images.")
            return arr[:3].astype(np.uint8) if arr.dtype == np.uint8 else arr[:3]
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Cannot decode image {uri} ({type(exc).__name__}: {exc}).",
                         "remove or replace the corrupt file.") from None


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask: True for test rows (stratified by label, seeded)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(len(idx) * test_fraction))
        test[idx[:n]] = True
    return test


@dataclass
class LabelledSet:
    """Labelled patches with a fixed train/test split: what fine-tuning and evaluation read.

    ``sources`` are file URIs, or ``<image>#r<row>c<col>`` windows of ``patch_size`` cut from
    an image raster (patches of a label raster, as ``landcover embed --labels`` stores them).
    """

    sources: list[str]
    labels: np.ndarray
    split: np.ndarray  # "train" | "test"
    classes: list[str]
    bands: list[int] | None = None  # 1-based bands the source was embedded with (embeddings tables)
    scale: float | None = None
    patch_size: int | None = None
    origin: str = "folder"  # "folder" | "embeddings"


def labelled_set(uri: str, test_fraction: float = 0.2, seed: int = 0) -> LabelledSet:
    """An image folder (split: stratified ``test_fraction``, ``seed``, as ``landcover embed``
    makes it) or an embeddings folder written by ``landcover embed`` (its rows and stored split)."""
    import json

    emb = uri if uri.endswith(".parquet") else storage.join(uri, "embeddings.parquet")
    if uri.endswith(".parquet") or storage.exists(emb):
        import pyarrow.parquet as pq

        if not storage.exists(emb):
            raise InputError(f"No embeddings table at {uri}.", "give an embeddings folder or an image folder.")
        table = pq.read_table(io.BytesIO(storage.read_bytes(emb)), columns=["source", "label_index", "split"])
        meta = json.loads(pq.read_schema(io.BytesIO(storage.read_bytes(emb))).metadata[b"landcover"])
        return LabelledSet(table["source"].to_pylist(), table["label_index"].to_numpy().astype(np.int64),
                           np.array(table["split"].to_pylist()), list(meta["classes"]), meta.get("bands"),
                           meta.get("scale"), meta.get("patch_size"), "embeddings")
    ps = list_image_folder(uri)
    test = stratified_split(ps.labels, test_fraction, seed)
    return LabelledSet(ps.files, ps.labels.astype(np.int64), np.where(test, "test", "train"), ps.classes)


def read_patch(source: str, bands: list[int] | None, scale: float | None, patch_size: int | None = None,
               rasters: dict | None = None) -> np.ndarray:
    """One labelled patch as float32 (C, H, W) in [0, 1]: uint8 / 255, other types / ``scale``
    (default 10000, reflectance x 10^4), clipped. ``bands``: 1-based bands to keep, in order
    (default: the first 3). Raises ``InputError`` naming the file.

    ``rasters``: open image rasters by URI, kept by the caller across windows of one image
    (the caller closes them); without it the raster is opened for this window alone."""
    import re

    m = re.match(r"^(.*)#r(\d+)c(\d+)$", source)
    if m:
        import rasterio
        from rasterio.windows import Window

        if not patch_size:
            raise InputError(f"{source} is a window of a raster but no patch size is known.")
        window = Window(int(m.group(3)), int(m.group(2)), patch_size, patch_size)
        if rasters is None:
            with storage.rasterio_env(), rasterio.open(storage.parse(m.group(1)).gdal_path) as ds:
                arr = ds.read(bands or [1, 2, 3], window=window)
        else:
            if m.group(1) not in rasters:
                rasters[m.group(1)] = rasterio.open(storage.parse(m.group(1)).gdal_path)
            arr = rasters[m.group(1)].read(bands or [1, 2, 3], window=window)
    elif source.lower().endswith((".tif", ".tiff")):
        from rasterio.io import MemoryFile

        try:
            with MemoryFile(storage.read_bytes(source)) as mf, mf.open() as ds:
                arr = ds.read()
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"Cannot decode image {source} ({type(exc).__name__}: {exc}).",
                             "remove or replace the corrupt file.") from None
        want = bands or [1, 2, 3]
        if max(want) > arr.shape[0]:
            raise InputError(f"{source} has {arr.shape[0]} band(s); bands {want} are needed.",
                             "give files with those bands, or set bands to indices that exist.")
        arr = arr[[b - 1 for b in want]]
    else:
        if bands and list(bands) != [1, 2, 3]:
            raise InputError(f"{source} is an RGB picture; bands {bands} do not exist in it.",
                             "use multi-band GeoTIFFs for other bands.")
        arr = read_rgb(source)
    return to_unit(arr, scale)


def to_unit(arr: np.ndarray, scale: float | None) -> np.ndarray:
    """Pixel values -> float32 in [0, 1]: uint8 / 255, other types / ``scale`` (default 10000)."""
    div = 255.0 if arr.dtype == np.uint8 else float(scale or 10000.0)
    return np.clip(arr.astype(np.float32) / div, 0.0, 1.0)


def band_count(source: str) -> int:
    """Bands in one patch file (3 for pictures)."""
    import re

    m = re.match(r"^(.*)#r(\d+)c(\d+)$", source)
    path = m.group(1) if m else source
    if not path.lower().endswith((".tif", ".tiff")):
        return 3
    import rasterio

    with storage.rasterio_env(), rasterio.open(storage.parse(path).gdal_path) as ds:
        return ds.count


def resize_chw(x: np.ndarray, size: int, antialias: bool = True) -> np.ndarray:
    """(C, H, W) float32 -> (C, size, size), bilinear (with ``antialias``, antialiased when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(np.ascontiguousarray(x))[None], size=(size, size), mode="bilinear",
                      align_corners=False, antialias=antialias and max(x.shape[-2:]) > size)
    return t[0].numpy()


def band_mean_std(total: np.ndarray, total_sq: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation from running sums of values and squares over ``n`` pixels."""
    mean = np.asarray(total, np.float64) / max(n, 1)
    return mean, np.sqrt(np.maximum(np.asarray(total_sq, np.float64) / max(n, 1) - mean**2, 1e-12))


def raise_unreadable(bad: list[tuple[str, str]], n: int, fix: str = "remove or replace those files.") -> None:
    """One error naming the first unreadable patches (source, error) of ``n``; nothing dropped silently."""
    if bad:
        shown = "; ".join(f"{src}: {err}" for src, err in bad[:5])
        raise InputError(f"{len(bad)} of {n} patches could not be read ({shown}" + (" ..." if len(bad) > 5 else "")
                         + ").", fix)


def decode_batch(batch: dict, spec: dict) -> dict:
    """Ray Data stage, the one patch decoder (fine-tuning, embedding, scoring): a batch of
    labelled patches (``source``: a file, or ``<image>#r<row>c<col>`` a window) -> pixels at
    ``spec['input_size']`` in [0, 1] (bilinear, antialiased when shrinking; ``spec['dtype']``,
    float16 by default), with per-band sums for statistics and a status per row (a bad file
    is reported by name, never dropped silently)."""
    n = len(batch["idx"])
    c, s = len(spec["bands"]), spec["input_size"]
    pixels = np.zeros((n, c, s, s), spec.get("dtype", "float16"))  # float16 to materialise, float32 to stream
    stats = np.zeros((n, c, 2), np.float64)  # per band: sum, sum of squares (native size)
    npx = np.zeros(n, np.int64)
    status = np.full(n, "ok", dtype=object)
    error = np.full(n, "", dtype=object)
    rasters: dict = {}  # label-raster windows: each image opened once per batch
    with storage.rasterio_env():
        for k in range(n):
            src = str(batch["source"][k])
            try:
                x = read_patch(src, spec["bands"], spec["scale"], spec.get("patch_size"), rasters)
                stats[k, :, 0] = x.sum(axis=(1, 2))
                stats[k, :, 1] = (x.astype(np.float64) ** 2).sum(axis=(1, 2))
                npx[k] = x.shape[1] * x.shape[2]
                pixels[k] = resize_chw(x, s)
            except Exception as exc:
                status[k], error[k] = "error", str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        for ds in rasters.values():
            ds.close()
    out = {"idx": batch["idx"], "pixels": pixels, "stats": stats, "npx": npx, "status": status, "error": error}
    if "label" in batch:
        out["label"] = batch["label"]
    return out


def label_patches(label_uri: str, size: int, threshold: float = 0.85, nodata: float | None = None,
                  image_nodata_mask: np.ndarray | None = None) -> list[tuple[int, int, int, float]]:
    """Non-overlapping ``size`` px windows of a class raster where one class covers at least
    ``threshold`` of the pixels and no pixel is nodata (in the labels, or in the image mask).

    Returns ``(row_off, col_off, class_value, share)`` per kept window.
    """
    import rasterio

    with storage.rasterio_env(), rasterio.open(storage.parse(label_uri).gdal_path) as ds:
        lab = ds.read(1)
        nd = ds.nodata if nodata is None else nodata
    kept = []
    for r in range(0, lab.shape[0] - size + 1, size):
        for c in range(0, lab.shape[1] - size + 1, size):
            win = lab[r : r + size, c : c + size]
            if nd is not None and (win == nd).any():
                continue
            if image_nodata_mask is not None and image_nodata_mask[r : r + size, c : c + size].any():
                continue
            values, counts = np.unique(win, return_counts=True)
            k = int(counts.argmax())
            share = counts[k] / win.size
            if share >= threshold:
                kept.append((r, c, int(values[k]), float(share)))
    return kept

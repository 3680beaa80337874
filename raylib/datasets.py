"""Labelled patch sets: an image folder ``<Class>/<file>`` (JPG/PNG/TIF), local or S3."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from . import storage
from .errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


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

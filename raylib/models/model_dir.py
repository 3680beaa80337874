"""The model directory: what ``--model`` points to, found, checked and written (the model
it loads as is ``models.landcover_model``).

Layout::

    model.json            manifest (schema_version, id, kind, backbone, head, classes,
                          bands, tile_size, gsd, metrics, created_by)
    backbone/             HF save_pretrained() folder (safetensors) - or a hub id in model.json
    head.safetensors      head weights (no pickle)

or, for a fine-tuned model (``kind: finetuned``)::

    model.json            manifest (as above; bands also hold the file band indices, scale and
                          the R,G,B positions; ``inference.tta``; ``training`` history)
    model/                HF save_pretrained() image-classification model (safetensors)

Loading refuses any pickle-based file (``.pkl``, ``.pt``, ``.bin``, ...): a model directory
is data, never code.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np

from raylib.errors import InputError
from raylib.io import storage
from raylib.io.cache import cache_dir, cached
from raylib.models.backbone_weights import resolve_backbone
from raylib.models.manifest import MANIFEST, ModelManifest
from raylib.raster.patches import TRAINING_TILES

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".npy")
DEFAULT_MODEL_NAME = "eurosat-mobilenetv2-logreg"
CALIBRATION = "calibration.safetensors"  # out-of-distribution statistics of the training embeddings


def local_model_folder(uri: str) -> Path:
    """A local folder holding the model directory (S3 ones are copied to the cache)."""
    loc = storage.parse(uri)
    if not loc.is_s3:
        p = Path(loc.key)
        if not (p / MANIFEST).exists():
            what = "does not exist" if not p.exists() else f"has no {MANIFEST}"
            raise InputError(f"Model directory {uri} {what}.",
                             "point --model to a folder written by landcover train-head (or omit it for the default).")
        return p
    manifest_uri = storage.join(uri, MANIFEST)
    if not storage.exists(manifest_uri):
        raise InputError(f"Model directory {uri} has no {MANIFEST}.", "check the URI of the model directory.")
    remote = storage.read_bytes(manifest_uri)
    dest = cache_dir() / "s3-models" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    # current when its manifest is the one at the URI (a model rewritten there is fetched again)
    return cached(dest, lambda tmp: storage.download_folder(uri, tmp),
                  lambda d: (d / MANIFEST).exists() and (d / MANIFEST).read_bytes() == remote)


def refuse_pickles(folder: Path, uri: str) -> None:
    bad = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if bad:
        raise InputError(
            f"Model directory {uri} contains pickle-based file(s) {bad}; they are refused because loading "
            "pickle can run arbitrary code.",
            "save weights as safetensors (save_pretrained(safe_serialization=True)) and heads with landcover train-head.",
        )


def write_model_dir(out_uri: str, *, name: str, backbone_ref: str, input_size: int | None, head, classes: list[str],
                    band_mean, band_std, tile_size: int, gsd: float | None, metrics: dict, created_by: str,
                    copy_backbone: bool = True, reflectance: dict | None = None,
                    training: dict | None = None, temperature: float | None = None,
                    ood=None, features=None, backbone_extra: dict | None = None,
                    bands: dict | None = None, extra_files: dict[str, bytes] | None = None,
                    pixel_head=None, spectral=None, adapt: bool = False) -> ModelManifest:
    """Write a model directory (local or S3). The backbone folder is copied in when local.
    ``pixel_head``: a ``models.pixel_head.PixelHead`` beside the head (``head.pixels``).
    ``spectral``: (``models.spectral.SpectralHead``, source, metrics) -> ``inference.spectral``;
    ``adapt``: ``inference.adapt``, the advice that maps re-centre the head per scene."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        head_spec = head.save(tmp)
        if features is not None:  # tilefeatures.TileFeatures: what the head sees beside/instead of the embedding
            head_spec["features"] = features.save(tmp)
        if pixel_head is not None:
            head_spec["pixels"] = pixel_head.save(tmp)
        for fname, data in (extra_files or {}).items():
            (tmp / fname).write_bytes(data)
        bb_folder = resolve_backbone(backbone_ref)
        if copy_backbone and Path(bb_folder).exists():
            shutil.copytree(bb_folder, tmp / "backbone", ignore=shutil.ignore_patterns("*.tmp*"))
            bb_spec = {"path": "backbone", "source": backbone_ref}
        else:
            bb_spec = {"ref": backbone_ref}
        bb_spec.update(input_size=input_size, pooling="auto", **(backbone_extra or {}))
        inference: dict = {}
        if temperature is not None:
            inference["temperature"] = float(temperature)
        if ood is not None:  # calibration.OODScorer
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in ood.tensors().items()}, str(tmp / CALIBRATION))
            inference["ood"] = {"file": CALIBRATION, "quantiles": ood.quantiles}
        if spectral is not None:
            inference["spectral"] = spectral[0].save(tmp, spectral[1], spectral[2])
        if adapt:
            inference["adapt"] = "scene-centre"
        payload = (tmp / head_spec["file"]).read_bytes() + json.dumps(bb_spec).encode() + json.dumps(inference).encode()
        for extra in (CALIBRATION, "spectral.safetensors"):
            if (tmp / extra).exists():
                payload += (tmp / extra).read_bytes()
        if pixel_head is not None:
            payload += json.dumps(head_spec["pixels"]).encode() + b"".join(
                p.read_bytes() for p in sorted((tmp / head_spec["pixels"]["folder"]).rglob("*")) if p.is_file())
        digest = hashlib.sha256(payload).hexdigest()
        manifest = ModelManifest(
            id=f"{name}@{digest[:10]}",
            kind="head",
            backbone=bb_spec,
            head=head_spec,
            classes=list(classes),
            bands=bands or {"channels": ["red", "green", "blue"], "mean": [float(v) for v in band_mean],
                            "std": [float(v) for v in band_std], **({"reflectance": reflectance} if reflectance else {})},
            tile_size=int(tile_size),
            gsd=gsd,
            metrics=metrics,
            created_by=created_by,
            training=training or {},
            inference=inference,
        )
        manifest_json = manifest.to_json()
        # manifest last: a directory without model.json is visibly incomplete
        _prepare_model_dir(out_uri)
        storage.upload_folder(tmp, out_uri)
        storage.write_bytes(storage.join(out_uri, MANIFEST), manifest_json.encode())
    return manifest


def _prepare_model_dir(out_uri: str) -> None:
    """Refuse to write into a non-empty folder that is not a model directory; clear an old one."""
    storage.clear_own_folder(out_uri, MANIFEST, "a model directory")


def write_finetuned_dir(out_uri: str, model, *, name: str, classes: list[str], bands: dict, input_size: int,
                        backbone_ref: str, tile_size: int, gsd: float | None, tta: bool, metrics: dict,
                        training: dict, created_by: str, extra_files: dict[str, bytes] | None = None) -> ModelManifest:
    """Write a fine-tuned model directory: ``model/`` (save_pretrained, safetensors) + model.json last."""
    import tempfile

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        model.save_pretrained(tmp / "model", safe_serialization=True)
        for fname, data in (extra_files or {}).items():
            (tmp / fname).write_bytes(data)
        digest = hashlib.sha256((tmp / "model" / "model.safetensors").read_bytes()).hexdigest()
        manifest = ModelManifest(
            id=f"{name}@{digest[:10]}", kind="finetuned",
            backbone={"path": "model", "source": backbone_ref, "input_size": int(input_size),
                      "architecture": type(model).__name__},
            head={"type": "finetuned"}, classes=list(classes), bands=bands, tile_size=int(tile_size), gsd=gsd,
            metrics=metrics, created_by=created_by, inference={"tta": bool(tta)}, training=training)
        _prepare_model_dir(out_uri)
        storage.upload_folder(tmp, out_uri)
        storage.write_bytes(storage.join(out_uri, MANIFEST), manifest.to_json().encode())
    return manifest


def created_by(argv: list[str] | None = None) -> str:
    import sys

    return f"landcover-ray {__import__('raylib').__version__}: " + " ".join(argv or sys.argv) + \
        f" ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})"


def training_tile_ids(model_uri: str) -> set[str]:
    """The tile ids a model was trained on (``assess --exclude-training``)."""
    import pyarrow.parquet as pq

    uri = storage.join(model_uri, TRAINING_TILES)
    if not storage.exists(uri):
        raise InputError(f"Model {model_uri} has no {TRAINING_TILES}: it was not trained on tiles of a store.",
                         "give a model made by landcover train-head --store.")
    return set(pq.read_table(io.BytesIO(storage.read_bytes(uri))).column("tile_id").to_pylist())

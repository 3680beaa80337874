"""The model directory: what ``--model`` points to.

Layout::

    model.json            manifest (schema_version, id, kind, backbone, head, classes,
                          bands, tile_size, gsd, metrics, created_by)
    backbone/             HF save_pretrained() folder (safetensors) - or a hub id in model.json
    head.safetensors      head weights (no pickle)

Loading refuses any pickle-based file (``.pkl``, ``.pt``, ``.bin``, ...): a model directory
is data, never code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import storage
from .backbones import Backbone, cache_dir, resolve_backbone
from .errors import InputError
from .heads import load_head

SCHEMA_VERSION = 1
MANIFEST = "model.json"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".npy")
DEFAULT_MODEL_NAME = "eurosat-mobilenetv2-logreg"


@dataclass
class ModelManifest:
    id: str
    kind: str
    backbone: dict
    head: dict
    classes: list[str]
    bands: dict  # {"channels": [...], "mean": [...], "std": [...]}
    tile_size: int
    gsd: float | None
    metrics: dict
    created_by: str
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, text: str, where: str) -> "ModelManifest":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc}).", "rewrite the model directory with landcover train-head.") from None
        known = set(cls.__dataclass_fields__)
        missing = sorted(k for k in ("id", "kind", "backbone", "head", "classes", "bands", "tile_size") if k not in raw)
        if missing:
            raise InputError(f"{where} lacks {missing}.", "rewrite the model directory with landcover train-head.")
        if raw.get("schema_version", 1) > SCHEMA_VERSION:
            raise InputError(f"{where} has schema_version {raw['schema_version']}, newer than this landcover-ray "
                             f"understands ({SCHEMA_VERSION}).", "upgrade landcover-ray.")
        raw.setdefault("gsd", None)
        raw.setdefault("metrics", {})
        raw.setdefault("created_by", "")
        return cls(**{k: v for k, v in raw.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def _local_model_folder(uri: str) -> Path:
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
    if (dest / MANIFEST).exists() and (dest / MANIFEST).read_bytes() == remote:
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    storage.download_folder(uri, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def refuse_pickles(folder: Path, uri: str) -> None:
    bad = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if bad:
        raise InputError(
            f"Model directory {uri} contains pickle-based file(s) {bad}; they are refused because loading "
            "pickle can run arbitrary code.",
            "save weights as safetensors (save_pretrained(safe_serialization=True)) and heads with landcover train-head.",
        )


class LandcoverModel:
    """Backbone + head + metadata; ``predict_proba`` on tiles scaled to [0, 1]."""

    def __init__(self, manifest: ModelManifest, folder: Path, backbone: Backbone | None, head):
        self.manifest = manifest
        self.folder = folder
        self.backbone = backbone
        self.head = head

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @staticmethod
    def read_manifest(uri: str) -> ModelManifest:
        folder = _local_model_folder(uri)
        return ModelManifest.from_json((folder / MANIFEST).read_text(), storage.join(uri, MANIFEST))

    @classmethod
    def load(cls, uri: str, device: str = "auto", with_backbone: bool = True) -> "LandcoverModel":
        folder = _local_model_folder(uri)
        refuse_pickles(folder, uri)
        manifest = ModelManifest.from_json((folder / MANIFEST).read_text(), storage.join(uri, MANIFEST))
        if manifest.kind != "head":
            raise InputError(f"Model {uri} is of kind {manifest.kind!r}, which this version cannot run.",
                             "upgrade landcover-ray.")
        head = load_head(folder, manifest.head)
        bb = None
        if with_backbone:
            spec = manifest.backbone
            ref = str(folder / spec["path"]) if spec.get("path") else spec["ref"]
            bb = Backbone.from_pretrained(ref, device=device, input_size=spec.get("input_size"),
                                          pooling=spec.get("pooling", "auto"))
        return cls(manifest, folder, bb, head)

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        return self.backbone.embed(tiles)

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        """tiles: float32 (N, C, H, W) in [0, 1] -> (N, n_classes) probabilities."""
        return self.head.predict_proba(self.embed(tiles)).astype(np.float32)


def write_model_dir(out_uri: str, *, name: str, backbone_ref: str, input_size: int | None, head, classes: list[str],
                    band_mean, band_std, tile_size: int, gsd: float | None, metrics: dict, created_by: str,
                    copy_backbone: bool = True) -> ModelManifest:
    """Write a model directory (local or S3). The backbone folder is copied in when local."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        head_spec = head.save(tmp)
        bb_folder = resolve_backbone(backbone_ref)
        if copy_backbone and Path(bb_folder).exists():
            shutil.copytree(bb_folder, tmp / "backbone", ignore=shutil.ignore_patterns("*.tmp*"))
            bb_spec = {"path": "backbone", "source": backbone_ref}
        else:
            bb_spec = {"ref": backbone_ref}
        bb_spec.update(input_size=input_size, pooling="auto")
        digest = hashlib.sha256((tmp / head_spec["file"]).read_bytes() + json.dumps(bb_spec).encode()).hexdigest()
        manifest = ModelManifest(
            id=f"{name}@{digest[:10]}",
            kind="head",
            backbone=bb_spec,
            head=head_spec,
            classes=list(classes),
            bands={"channels": ["red", "green", "blue"], "mean": [float(v) for v in band_mean],
                   "std": [float(v) for v in band_std]},
            tile_size=int(tile_size),
            gsd=gsd,
            metrics=metrics,
            created_by=created_by,
        )
        manifest_json = manifest.to_json()
        # manifest last: a directory without model.json is visibly incomplete
        loc = storage.parse(out_uri)
        if not loc.is_s3 and Path(loc.key).exists() and any(Path(loc.key).iterdir()):
            if not (Path(loc.key) / MANIFEST).exists():
                raise InputError(f"{out_uri} is not empty and is not a model directory; refusing to overwrite it.",
                                 "choose a new or empty --out.")
            shutil.rmtree(loc.key)
        storage.upload_folder(tmp, out_uri)
        storage.write_bytes(storage.join(out_uri, MANIFEST), manifest_json.encode())
    return manifest


def created_by(argv: list[str] | None = None) -> str:
    import sys

    return f"landcover-ray {__import__('raylib').__version__}: " + " ".join(argv or sys.argv) + \
        f" ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})"

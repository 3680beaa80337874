"""The model directory: what ``--model`` points to.

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
from raylib.models.augment import tta_probs
from raylib.models.backbones import Backbone, resolve_backbone
from raylib.models.device import TileFeed, inference, pad_rows, pick_device, set_precision
from raylib.models.calibration import OODScorer, apply_temperature
from raylib.models.manifest import MANIFEST, ModelManifest
from raylib.models.head_loading import load_saved_head
from raylib.models.tilefeatures import TileFeatures
from raylib.raster.patches import TRAINING_TILES

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".npy")
DEFAULT_MODEL_NAME = "eurosat-mobilenetv2-logreg"
CALIBRATION = "calibration.safetensors"  # out-of-distribution statistics of the training embeddings
# the per-tile statistics a head reads beside its embedding (``needs_statistics``): its features', the spectral head's
HEAD_STATISTICS = ("band_mean", "band_std", "ndvi", "ndwi", "stats_reflectance")


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


class FinetunedNet:
    """A fine-tuned ``transformers`` classifier with its band statistics: tiles in [0, 1] (or
    raw values with their gain and offset) -> resize -> per-band standardisation -> logits
    -> probabilities (optionally the mean over the 8 dihedral views), all on the device."""

    def __init__(self, folder: str, manifest: ModelManifest, device: str = "auto", precision: str = "fp32"):
        import torch
        from transformers import AutoModelForImageClassification
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.device = pick_device(device)
        self.precision = precision
        set_precision(self.device, precision)
        self.feed = TileFeed(self.device)
        self.model = AutoModelForImageClassification.from_pretrained(folder, use_safetensors=True)
        self.model.eval().to(self.device)
        if self.device == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.input_size = int(manifest.backbone["input_size"])
        self.mean = torch.tensor(manifest.bands["mean"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(manifest.bands["std"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def prepare(self, tiles, gain=None, offset=None):
        """float (N, C, H, W) in [0, 1], or raw values with ``gain``/``offset`` -> the model's
        input tensor, on the device."""
        import torch
        import torch.nn.functional as F

        x = self.feed(tiles, gain, offset)
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.device == "cuda" else x

    def _inference(self):
        return inference(self.device, self.precision)

    def probs(self, x):
        """Class probabilities (tensor) of a prepared input ``x`` (``prepare``)."""
        import torch

        with self._inference():
            return torch.softmax(self.model(pixel_values=pad_rows(x)).logits.float(), dim=1)[:len(x)]

    def features(self, x):
        """Pooled backbone features (tensor) of a prepared input: the pooler output, else the
        mean of the last hidden state."""
        with self._inference():
            out = getattr(self.model, self.model.base_model_prefix)(pixel_values=pad_rows(x))
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                h = out.last_hidden_state
                pooled = h.mean(dim=(2, 3)) if h.ndim == 4 else h.mean(dim=1)
            return pooled.flatten(1).float()[:len(x)]

    def predict_proba(self, tiles, tta: bool = True, gain=None, offset=None) -> np.ndarray:
        x = self.prepare(tiles, gain, offset)
        p = tta_probs(self.probs, x) if tta else self.probs(x)
        return p.cpu().numpy().astype(np.float32)

    def embed(self, tiles, gain=None, offset=None) -> np.ndarray:
        return self.features(self.prepare(tiles, gain, offset)).cpu().numpy()


class LandcoverModel:
    """Backbone + head (or a fine-tuned network) + metadata; ``predict_proba`` on tiles
    scaled to [0, 1]."""

    def __init__(self, manifest: ModelManifest, folder: Path, backbone: Backbone | None, head,
                 net: FinetunedNet | None = None, tta: bool | None = None):
        self.manifest = manifest
        self.folder = folder
        self.backbone = backbone
        self.head = head
        self.net = net
        self.tta = bool(manifest.inference.get("tta", False)) if tta is None else bool(tta)
        self.temperature = float(manifest.inference.get("temperature", 1.0))
        self.features = None
        if (manifest.head or {}).get("features"):

            self.features = TileFeatures.load(folder, manifest.head["features"])
        self.ood = None
        ood = manifest.inference.get("ood")
        if ood and (folder / ood["file"]).exists():
            from safetensors.numpy import load_file

            self.ood = OODScorer.from_tensors(load_file(str(folder / ood["file"])), ood.get("quantiles"))
        self.spectral = None  # models.spectral: NDVI/NDWI prior for scenes with NIR
        spec = manifest.inference.get("spectral")
        if spec and head is not None:
            from raylib.models.spectral import SpectralHead

            self.spectral = SpectralHead.load(folder, spec)

    @property
    def can_adapt(self) -> bool:
        """True for a head that standardises L2-normalised embeddings by itself (logistic,
        MLP): scene-centre adaptation (``models.adaptation``) can re-centre it."""
        return self.head is not None and self.features is None and bool(getattr(self.head, "centred", False))

    @property
    def adapts_by_default(self) -> bool:
        """The model's own advice (``inference.adapt``): the built-in model, trained on
        EuroSAT, maps other places better re-centred (BENCHMARKS.md)."""
        return self.can_adapt and bool(self.manifest.inference.get("adapt"))

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @staticmethod
    def read_manifest(uri: str) -> ModelManifest:
        folder = local_model_folder(uri)
        return ModelManifest.from_json((folder / MANIFEST).read_text(), storage.join(uri, MANIFEST))

    @classmethod
    def load(cls, uri: str, device: str = "auto", with_backbone: bool = True,
             tta: bool | None = None, precision: str = "fp32") -> "LandcoverModel":
        """``with_backbone=False`` skips the network (head models: the head alone scores
        stored embeddings). ``tta`` overrides the manifest's ``inference.tta``. ``precision``:
        the network's arithmetic (``models.device``; fp32 gives every device one answer)."""
        folder = local_model_folder(uri)
        refuse_pickles(folder, uri)
        manifest = ModelManifest.from_json((folder / MANIFEST).read_text(), storage.join(uri, MANIFEST))
        if manifest.kind == "finetuned":
            net = FinetunedNet(str(folder / manifest.backbone["path"]), manifest, device,
                               precision) if with_backbone else None
            return cls(manifest, folder, None, None, net=net, tta=tta)
        if manifest.kind != "head":
            raise InputError(f"Model {uri} is of kind {manifest.kind!r}, which this version cannot run.",
                             "upgrade landcover-ray.")
        head = load_saved_head(folder, manifest.head)
        bb = None
        if with_backbone:
            spec = manifest.backbone
            ref = str(folder / spec["path"]) if spec.get("path") else spec["ref"]
            bb = Backbone.from_pretrained(ref, device=device, input_size=spec.get("input_size"),
                                          pooling=spec.get("pooling", "auto"), precision=precision)
        return cls(manifest, folder, bb, head, tta=tta)

    @property
    def device(self) -> str:
        """Where the network runs (``cpu`` for a model loaded without it)."""
        return self.net.device if self.net is not None else (self.backbone.device if self.backbone else "cpu")

    def embed(self, tiles: np.ndarray, gain=None, offset=None) -> np.ndarray:
        """Features of tiles (floats in [0, 1], or raw values with their ``gain``/``offset``):
        the backbone's embedding (the fine-tuned network's pooled features)."""
        if self.net is not None:
            return self.net.embed(tiles, gain, offset)
        return self.backbone.embed(tiles, gain, offset)

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        """tiles: float32 (N, C, H, W) in [0, 1] -> (N, n_classes) probabilities."""
        return self.predict(tiles)[0]

    @property
    def pixel_classes(self) -> list[int] | None:
        """Positions in ``classes`` of the pixel classifier's classes (``models.pixel_head``),
        or None for a model without one."""
        spec = (self.manifest.head or {}).get("pixels")
        return [int(c) for c in spec["classes"]] if spec else None

    def with_pixels(self, probs: np.ndarray, pixel_probs: np.ndarray) -> np.ndarray:
        """The tile head's probabilities combined with the pixel classifier's tile means
        (``pixel_probs``, computed by the map's read tasks; NaN rows: a tile without them,
        which keeps the tile head's)."""
        from raylib.models.pixel_head import combine

        return combine(probs, pixel_probs, self.pixel_classes)

    @property
    def needs_statistics(self) -> bool:
        """True when the head reads the tiles' spectral statistics beside the embedding (its
        features, or the spectral head's NDVI and NDWI)."""
        return (self.features is not None and self.features.mode != "embedding") or self.spectral is not None

    def predict(self, tiles: np.ndarray, with_embeddings: bool = False, stats: dict | None = None,
                gain=None, offset=None, centre=None):
        """tiles (floats in [0, 1], or raw values with their ``gain``/``offset``: the map's
        read tasks send them so, and they are scaled on the device) -> (probabilities
        (temperature-scaled when the model has a temperature), out-of-distribution score
        per tile (NaN when the model has no OOD statistics)), and with ``with_embeddings``
        the float16 embeddings as a third item. ``centre``: the scene's (``predict_embeddings``).

        A head sees the embedding rounded to float16, as the embedding store holds it, so
        that a remap of the store gives exactly these probabilities."""

        if self.net is not None:
            x = self.net.prepare(tiles, gain, offset)
            p = tta_probs(self.net.probs, x) if self.tta else self.net.probs(x)
            probs = apply_temperature(p.cpu().numpy().astype(np.float32), self.temperature)
            ood = np.full(len(tiles), np.nan, np.float32)
            if with_embeddings:
                return probs, ood, self.net.features(x).cpu().numpy().astype(np.float16)
            return probs, ood
        emb16 = self.embed16(tiles, gain, offset)
        probs, ood = self.predict_embeddings(emb16, stats, centre)
        return (probs, ood, emb16) if with_embeddings else (probs, ood)

    def embed16(self, tiles, gain=None, offset=None) -> np.ndarray:
        """Head models: the backbone's embeddings of tiles rounded to float16 (on the device),
        as the head sees them and the embedding store holds them (``predict``'s first half:
        the device's work; ``predict_embeddings`` is the host's)."""
        return self.backbone.embed_tensor(tiles, gain, offset).half().cpu().numpy()

    def predict_embeddings(self, emb: np.ndarray, stats: dict | None = None, centre=None,
                           spectral: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Head models: stored embeddings (and, for heads that use them, the tiles' spectral
        statistics) -> (probabilities, out-of-distribution score).

        ``centre``: the mean of the scene's L2-normalised embeddings, which replaces the
        training mean in the head (``models.adaptation``; None: the head as trained). With
        ``spectral`` and a model that carries a spectral head, the rows whose ``stats`` have
        NDVI and NDWI get the two heads' pooled probabilities (``models.spectral``). The
        out-of-distribution score is the embedding's own, adaptation or not."""

        if self.head is None:
            raise InputError(f"Model {self.id} is a fine-tuned network; it has no head to apply to embeddings.",
                             "use a head model (landcover train-head or tune).")
        x = np.asarray(emb, np.float32)
        feats = self.features.transform(x, stats) if self.features is not None else x
        if centre is not None and not self.can_adapt:
            raise InputError(f"Model {self.id}'s head cannot be re-centred on a scene (adapt).",
                             "map without --adapt (a kNN, XGBoost or statistics head has no centre).")
        raw = self.head.predict_proba(feats) if centre is None else self.head.predict_proba(feats, centre=centre)
        probs = apply_temperature(raw.astype(np.float32), self.temperature)
        if spectral and self.spectral is not None:
            probs = self.spectral.apply(probs, stats)
        ood = self.ood.score(x) if self.ood is not None else np.full(len(x), np.nan, np.float32)
        return probs, ood


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
                         "give a model made by landcover train-head --embeddings.")
    return set(pq.read_table(io.BytesIO(storage.read_bytes(uri))).column("tile_id").to_pylist())

"""The runtime model: what a model directory (``models.model_dir``) loads as.

``LandcoverModel.load(uri)`` gives the backbone and head (or a fine-tuned network,
``FinetunedNet``) with the model's calibration, out-of-distribution scorer, spectral prior
and pixel classifier; ``predict`` maps tiles scaled to [0, 1] to class probabilities,
``predict_embeddings`` maps stored embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raylib.errors import InputError
from raylib.io import storage
from raylib.models.augment import tta_probs
from raylib.models.backbones import Backbone
from raylib.models.calibration import OODScorer, apply_temperature
from raylib.models.device import TileFeed, inference, pad_rows, pick_device, set_precision
from raylib.models.head_loading import load_saved_head
from raylib.models.manifest import MANIFEST, ModelManifest
from raylib.models.model_dir import local_model_folder, refuse_pickles
from raylib.models.tilefeatures import TileFeatures

# the per-tile statistics a head reads beside its embedding (``needs_statistics``): its features', the spectral head's
HEAD_STATISTICS = ("band_mean", "band_std", "ndvi", "ndwi", "stats_reflectance")


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

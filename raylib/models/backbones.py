"""Hugging Face vision backbones at run time: load (hub id, local folder, ``s3://`` folder;
where the weights come from is ``backbone_weights``), preprocess in torch (no torchvision),
embed a batch of tiles. Fine-tuning builds its network in ``finetune_net``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raylib.errors import InputError
from raylib.models.backbone_weights import DEFAULT_BACKBONE, IMAGENET_MEAN, IMAGENET_STD, resolve_backbone
from raylib.models.device import TileFeed, inference, pad_rows, pick_device, set_precision


@dataclass
class Preprocessor:
    """The image-processor settings a backbone expects, applied with torch."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize_shortest_edge: int | None = 256
    resize_hw: tuple[int, int] | None = None
    crop_hw: tuple[int, int] | None = (224, 224)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, cfg: dict) -> "Preprocessor":
        size = cfg.get("size") if cfg.get("do_resize", True) else None
        shortest = hw = None
        if isinstance(size, dict):
            if "shortest_edge" in size:
                shortest = int(size["shortest_edge"])
            elif "height" in size:
                hw = (int(size["height"]), int(size["width"]))
        elif isinstance(size, int):
            hw = (size, size)
        crop = cfg.get("crop_size") if cfg.get("do_center_crop", False) else None
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        return cls(
            mean=tuple(cfg.get("image_mean", IMAGENET_MEAN)) if cfg.get("do_normalize", True) else (0.0,),
            std=tuple(cfg.get("image_std", IMAGENET_STD)) if cfg.get("do_normalize", True) else (1.0,),
            resize_shortest_edge=shortest,
            resize_hw=hw,
            crop_hw=(int(crop["height"]), int(crop["width"])) if crop else None,
        )

    @classmethod
    def from_folder(cls, folder: str) -> "Preprocessor":
        p = Path(folder) / "preprocessor_config.json"
        if p.exists():
            return cls.from_dict(json.loads(p.read_text()))
        return cls()

    @property
    def input_hw(self) -> tuple[int, int]:
        """The final model input size (what a tile is resized to)."""
        if self.crop_hw:
            return self.crop_hw
        if self.resize_hw:
            return self.resize_hw
        s = self.resize_shortest_edge or 224
        return (s, s)

    def normalize(self, x):
        import torch

        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def photo(self, x):
        """Full image-processor semantics for photos: resize, centre crop, normalise.

        ``x``: float tensor (N, C, H, W) in [0, 1].
        """
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        if self.resize_shortest_edge:
            s = self.resize_shortest_edge
            nh, nw = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        elif self.resize_hw:
            x = F.interpolate(x, size=self.resize_hw, mode="bilinear", align_corners=False, antialias=True)
        if self.crop_hw:
            ch, cw = self.crop_hw
            h, w = x.shape[-2:]
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        return self.normalize(x)

    def tiles(self, x, size: int | None = None):
        """Tiles are resized straight to the model input size (no crop: every pixel counts)."""
        import torch.nn.functional as F

        hw = (size, size) if size else self.input_hw
        if tuple(x.shape[-2:]) != tuple(hw):
            x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
        return self.normalize(x)


# --------------------------------------------------------------------------- the backbone


class Backbone:
    """A frozen HF vision model that turns tiles into embeddings.

    ``pooling``: ``auto`` (pooler output when the model has one, else mean of the last
    hidden state), ``pooler`` or ``mean``. ``precision``: ``models.device.PRECISIONS``.
    """

    def __init__(self, model, preprocessor: Preprocessor, ref: str, device: str = "cpu",
                 input_size: int | None = None, pooling: str = "auto", precision: str = "fp32"):
        self.model = model
        self.preprocessor = preprocessor
        self.ref = ref
        self.device = device
        self.input_size = input_size
        self.pooling = pooling
        self.precision = precision
        self.feed = TileFeed(device)
        set_precision(device, precision)

    @classmethod
    def from_pretrained(cls, ref: str = DEFAULT_BACKBONE, device: str = "auto", input_size: int | None = None,
                        pooling: str = "auto", precision: str = "fp32") -> "Backbone":
        import torch

        folder = resolve_backbone(ref)
        device = pick_device(device)
        model = _native(folder) or _transformers(folder, ref)
        model.eval().to(device)
        if device == "cuda":
            model = model.to(memory_format=torch.channels_last)
        pre = Preprocessor.from_folder(folder) if Path(folder).exists() else _hub_preprocessor(folder)
        return cls(model, pre, ref=ref, device=device, input_size=input_size, pooling=pooling, precision=precision)

    def _pool(self, out):
        pooled = getattr(out, "pooler_output", None)
        if self.pooling in ("auto", "pooler") and pooled is not None:
            return pooled.flatten(1)
        if self.pooling == "pooler":
            raise InputError(f"Backbone {self.ref} has no pooler output.", "use pooling: mean.")
        h = out.last_hidden_state
        if h.ndim == 4:  # CNN feature map (N, C, H, W)
            return h.mean(dim=(2, 3))
        return h.mean(dim=1)  # tokens (N, L, D)

    def embed_tensor(self, tiles, gain=None, offset=None):
        """Embeddings (float32 tensor (N, D), on the device) of tiles: floats (N, C, H, W) in
        [0, 1], or raw values with their ``gain``/``offset`` (scaled on the device:
        ``models.device.TileFeed``); resized and normalised on the device."""
        import torch

        x = self.feed(tiles, gain, offset)
        n = len(x)
        x = self.preprocessor.tiles(pad_rows(x), self.input_size)  # a GPU sees few batch shapes
        if self.device == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with inference(self.device, self.precision):
            return self._pool(self.model(pixel_values=x)).float()[:n]

    def embed(self, tiles, gain=None, offset=None) -> np.ndarray:
        """Embed tiles (as ``embed_tensor``). Returns float32 (N, D)."""
        return self.embed_tensor(tiles, gain, offset).cpu().numpy()


def _native(folder: str):
    """A local MobileNetV2 folder in plain torch (``models.mobilenet_v2``: the same weights
    and outputs without importing transformers), or None."""
    if not Path(folder).exists():
        return None
    from raylib.models import mobilenet_v2

    return mobilenet_v2.load(folder)


def _transformers(folder: str, ref: str):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the head-less load report is expected noise
    hf_logging.disable_progress_bar()
    try:
        return AutoModel.from_pretrained(folder, use_safetensors=True if Path(folder).exists() else None)
    except OSError as exc:
        raise InputError(
            f"Cannot load backbone {ref!r}: {str(exc).splitlines()[0]}",
            "give a local folder written by save_pretrained(), an s3:// folder, or a reachable hub id.",
        ) from None


def _hub_preprocessor(hub_id: str) -> Preprocessor:
    try:
        from transformers.utils import cached_file

        path = cached_file(hub_id, "preprocessor_config.json")
        return Preprocessor.from_dict(json.loads(Path(path).read_text()))
    except Exception:
        return Preprocessor()

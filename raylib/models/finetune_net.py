"""A backbone as a network to fine-tune: ``build_classifier`` gives a ``transformers``
image classifier with a new classification layer and, for other bands than R, G, B, a stem
widened to them (``widen_stem``); ``classifier_parameter_names`` tells the new layer's
parameters from the backbone's."""

from __future__ import annotations

from pathlib import Path

from raylib.errors import InputError
from raylib.models.backbone_weights import resolve_backbone


def find_stem_key(state_dict: dict, channels: int = 3) -> str:
    """The state-dict key of the input convolution: the first 4-D weight taking ``channels``
    input channels (``conv_stem.first_conv`` in MobileNetV2, ``embedder`` in ResNet,
    ``patch_embeddings`` in ConvNeXt/ViT/BEiT)."""
    for k, v in state_dict.items():
        if k.endswith("weight") and getattr(v, "ndim", 0) == 4 and v.shape[1] == channels:
            return k
    raise InputError(f"Found no {channels}-channel input convolution in the backbone.",
                     "use a convolutional or patch-embedding vision backbone.")


def widen_stem(model, n_channels: int, rgb_positions: list[int] | None):
    """A copy of an RGB classification ``model`` that takes ``n_channels`` input bands.

    The stem kernels of the pretrained R, G and B channels are copied unchanged onto the
    input positions ``rgb_positions`` (0-based, in R, G, B order); every other band's
    kernels start at zero, so the widened network computes exactly what the RGB network
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
    widened = type(model)(cfg)
    widened.load_state_dict(sd)
    return widened


def build_classifier(ref: str, classes: list[str], n_channels: int = 3, rgb_positions: list[int] | None = (0, 1, 2)):
    """A ``transformers`` image-classification model from backbone ``ref`` (hub id, folder,
    ``s3://`` folder or ``default``) with a new ``len(classes)``-way classifier and, for other
    than 3 bands or another band order, a widened stem (``widen_stem``)."""
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
        model = widen_stem(model, n_channels, rgb)
    return model


def classifier_parameter_names(model) -> list[str]:
    """Names of the classification layer's parameters (the rest is the backbone)."""
    names = [n for n, _ in model.named_parameters() if n.split(".")[0] in ("classifier", "head", "fc")]
    if not names:
        raise InputError(f"{type(model).__name__} has no 'classifier' layer to train.",
                         "use a transformers *ForImageClassification model.")
    return names

"""A MobileNetV2 backbone in plain torch that reads a ``transformers`` MobileNetV2 folder.

Loading a backbone through ``transformers`` costs seconds of imports (``AutoModel`` scans
its model registry and pulls in ``torch.distributed``; BENCHMARKS.md, "time to first row"),
in every model actor's start. For the MobileNetV2 configurations it covers (the offline
default among them: width 1.0, output stride 32, expansion as the first layer, ReLU6), this
module builds the same network in a few lines of torch, with the same parameter names, and
loads the folder's ``model.safetensors`` into it: the same weights, the same outputs
(``last_hidden_state``, ``pooler_output``). Any other configuration goes through
``transformers`` (``backbones.Backbone.from_pretrained``).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from torch import nn

CHANNELS = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
STRIDES = [2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
# configuration values this module implements (transformers' MobileNetV2Config defaults)
SUPPORTED = {"model_type": "mobilenet_v2", "depth_multiplier": 1.0, "depth_divisible_by": 8, "min_depth": 8,
             "expand_ratio": 6.0, "output_stride": 32, "first_layer_is_expansion": True, "hidden_act": "relu6",
             "tf_padding": False}


def _divisible(v: float, divisor: int = 8, min_value: int = 8) -> int:
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return int(new)


class _ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True,
                 eps: float = 1e-3):
        super().__init__()
        self.convolution = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False)
        self.normalization = nn.BatchNorm2d(cout, eps=eps, momentum=0.997)
        self.act = act

    def forward(self, x):
        x = self.normalization(self.convolution(x))
        return nn.functional.relu6(x) if self.act else x


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: float, eps: float):
        super().__init__()
        mid = _divisible(round(cin * expand))
        self.use_residual = stride == 1 and cin == cout
        self.expand_1x1 = _ConvLayer(cin, mid, 1, eps=eps)
        self.conv_3x3 = _ConvLayer(mid, mid, 3, stride=stride, groups=mid, eps=eps)
        self.reduce_1x1 = _ConvLayer(mid, cout, 1, act=False, eps=eps)

    def forward(self, x):
        y = self.reduce_1x1(self.conv_3x3(self.expand_1x1(x)))
        return x + y if self.use_residual else y


class _Stem(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, eps: float):
        super().__init__()
        self.first_conv = _ConvLayer(cin, mid, 3, stride=2, eps=eps)
        self.conv_3x3 = _ConvLayer(mid, mid, 3, groups=mid, eps=eps)
        self.reduce_1x1 = _ConvLayer(mid, cout, 1, act=False, eps=eps)

    def forward(self, x):
        return self.reduce_1x1(self.conv_3x3(self.first_conv(x)))


class MobileNetV2(nn.Module):
    """transformers' ``MobileNetV2Model`` for the ``SUPPORTED`` configurations: the same
    modules under the same names, called with ``pixel_values``."""

    def __init__(self, num_channels: int = 3, eps: float = 1e-3):
        super().__init__()
        self.conv_stem = _Stem(num_channels, 32, CHANNELS[0], eps)
        self.layer = nn.ModuleList(_InvertedResidual(CHANNELS[i], CHANNELS[i + 1], STRIDES[i], 6.0, eps)
                                   for i in range(16))
        self.conv_1x1 = _ConvLayer(CHANNELS[-1], 1280, 1, eps=eps)

    def forward(self, pixel_values):
        h = self.conv_1x1(self._blocks(self.conv_stem(pixel_values)))
        return SimpleNamespace(last_hidden_state=h, pooler_output=h.mean(dim=(2, 3)))

    def _blocks(self, x):
        for block in self.layer:
            x = block(x)
        return x


def supported(config: dict) -> bool:
    return all(config.get(k, v) == v for k, v in SUPPORTED.items())


def load(folder: str) -> MobileNetV2 | None:
    """The folder's MobileNetV2 in plain torch, or None when its configuration or weights are
    not the ones this module implements (the caller then loads it with ``transformers``)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    if not (cfg_path.exists() and weights.exists()):
        return None
    config = json.loads(cfg_path.read_text())
    if not supported(config):
        return None
    model = MobileNetV2(int(config.get("num_channels", 3)), float(config.get("layer_norm_eps", 1e-3)))
    state = load_file(str(weights))
    prefix = "mobilenet_v2."
    ours = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()
            if not k.startswith("classifier.") and not k.endswith("num_batches_tracked")}
    want = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if set(ours) != want:
        return None
    model.load_state_dict(ours, strict=False)
    return model.eval()

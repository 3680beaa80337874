"""Fine-tuning recipe parts that need no cluster: class weights, the one-cycle schedule,
band plans, stem adaptation for 4- and 13-band input."""

import numpy as np
import pytest
import torch

from raylib.config import FinetuneConfig
from raylib.errors import ConfigError
from raylib.models.backbone_weights import default_backbone_dir
from raylib.models.finetune_net import build_classifier, find_stem_key
from raylib.pipelines.finetune import band_plan, class_weights, one_cycle
from raylib.raster.patches import LabelledSet

from ..conftest import DATA


def test_class_weights():
    np.testing.assert_allclose(class_weights([10, 30], "inverse"), [1.5, 0.5])
    np.testing.assert_allclose(class_weights([10, 30], "none"), [1, 1])
    eff = class_weights([10, 3000], "effective", beta=0.999)
    assert eff[0] > eff[1] and eff.mean() == pytest.approx(1)
    # effective-number weights are milder than inverse frequency for large classes
    assert eff[0] / eff[1] < class_weights([10, 3000], "inverse")[0] / class_weights([10, 3000], "inverse")[1]


def test_one_cycle_schedule():
    peak = 1e-3
    assert one_cycle(0, peak) == pytest.approx(peak / 25)
    assert one_cycle(0.3, peak) == pytest.approx(peak)
    assert one_cycle(1, peak) == pytest.approx(peak / 1e4)
    ts = np.linspace(0, 1, 101)
    lr = np.array([one_cycle(t, peak) for t in ts])
    top = int(np.argmax(lr))
    assert ts[top] == pytest.approx(0.3) and (np.diff(lr[: top + 1]) >= 0).all() and (np.diff(lr[top:]) <= 0).all()
    assert one_cycle(1.5, peak) == one_cycle(1, peak)  # clamped


def _ls():
    src = str(sorted((DATA / "eurosat-ms-sample" / "Forest").glob("*.tif"))[0])
    return LabelledSet([src], np.array([0]), np.array(["train"]), ["Forest"])


def test_band_plans():
    ls = _ls()
    rgb = band_plan(FinetuneConfig(data="d", out="o"), ls)
    assert rgb["indices"] == [1, 2, 3] and rgb["rgb"] == [0, 1, 2] and rgb["channels"] == ["red", "green", "blue"]
    s2 = band_plan(FinetuneConfig(data="d", out="o", bands="sentinel2-eurosat"), ls)
    assert s2["indices"] == [4, 3, 2] and s2["rgb"] == [0, 1, 2]
    ms = band_plan(FinetuneConfig(data="d", out="o", bands="all", rgb_bands="sentinel2-eurosat", scale=3000), ls)
    assert ms["indices"] == list(range(1, 14)) and ms["rgb"] == [3, 2, 1] and ms["scale"] == 3000
    assert ms["channels"][:5] == ["band1", "blue", "green", "red", "band5"]
    four = band_plan(FinetuneConfig(data="d", out="o", bands=[4, 3, 2, 8], rgb_bands=[4, 3, 2]), ls)
    assert four["rgb"] == [0, 1, 2] and four["channels"] == ["red", "green", "blue", "band8"]
    with pytest.raises(ConfigError, match="rgb_bands"):
        band_plan(FinetuneConfig(data="d", out="o", bands="all"), ls)
    with pytest.raises(ConfigError, match="must name 3 of the selected bands"):
        band_plan(FinetuneConfig(data="d", out="o", bands=[2, 3, 4, 8], rgb_bands=[4, 3, 1]), ls)
    with pytest.raises(ConfigError, match="Unknown band preset"):
        band_plan(FinetuneConfig(data="d", out="o", bands="landsat9"), ls)


@pytest.mark.parametrize("n_bands,rgb", [(4, [0, 1, 2]), (13, [3, 2, 1])])
def test_adapted_stem_keeps_rgb_kernels_and_the_rgb_function(n_bands, rgb):
    classes = ["a", "b", "c"]
    default_backbone_dir()  # converted on first use, which draws random numbers
    torch.manual_seed(0)
    m3 = build_classifier("default", classes).eval()
    torch.manual_seed(0)
    mn = build_classifier("default", classes, n_bands, rgb).eval()
    key = find_stem_key(m3.state_dict())
    w3, wn = m3.state_dict()[key], mn.state_dict()[key]
    assert wn.shape == (w3.shape[0], n_bands, *w3.shape[2:])
    assert torch.equal(wn[:, rgb], w3)  # the pretrained R, G, B kernels, unchanged
    others = [i for i in range(n_bands) if i not in rgb]
    assert torch.count_nonzero(wn[:, others]) == 0  # extra bands start at zero
    x = torch.rand(2, n_bands, 32, 32)
    with torch.no_grad():  # so the adapted network starts as the RGB network
        torch.testing.assert_close(mn(pixel_values=x).logits, m3(pixel_values=x[:, rgb]).logits, atol=1e-5, rtol=1e-5)
    assert mn.config.num_channels == n_bands


def test_stem_without_rgb_bands_sums_the_kernels():
    m3 = build_classifier("default", ["a", "b"])
    m1 = build_classifier("default", ["a", "b"], 1, None)
    key = find_stem_key(m3.state_dict())
    torch.testing.assert_close(m1.state_dict()[key][:, 0], m3.state_dict()[key].sum(1))

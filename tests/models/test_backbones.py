import numpy as np
import pytest
import torch

from raylib.errors import InputError
from raylib.io import storage
from raylib.models.backbones import Backbone, Preprocessor
from raylib.models.backbone_weights import default_backbone_dir, resolve_backbone


def test_converted_mobilenet_v2_recognises_a_real_photo():
    """torchvision ImageNet weights -> HF folder: china.jpg must be 'palace' (698), p > 0.6."""
    from sklearn.datasets import load_sample_image
    from transformers import MobileNetV2ForImageClassification

    folder = default_backbone_dir()
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.bin"))
    model = MobileNetV2ForImageClassification.from_pretrained(folder).eval()
    pre = Preprocessor.from_folder(str(folder))
    img = torch.from_numpy(load_sample_image("china.jpg").copy()).permute(2, 0, 1)[None].float() / 255
    x = pre.photo(img)
    assert tuple(x.shape) == (1, 3, 224, 224)
    with torch.no_grad():
        p = model(pixel_values=x).logits.softmax(-1)[0]
    assert int(p.argmax()) == 698
    assert float(p[698]) > 0.6


def test_embed_shapes_and_pooling():
    bb = Backbone.from_pretrained("default", device="cpu", input_size=64)
    x = np.random.default_rng(0).random((5, 3, 48, 48), dtype=np.float32)
    e = bb.embed(x)
    assert e.shape == (5, 1280) and e.dtype == np.float32
    bb.pooling = "mean"
    np.testing.assert_allclose(bb.embed(x), e, rtol=1e-4, atol=1e-5)  # MobileNetV2's pooler is a spatial mean


def test_native_mobilenet_v2_is_the_transformers_model():
    """The default backbone loads in plain torch (no transformers import in a model actor),
    with the transformers model's outputs bit for bit; other configurations are left to it."""
    from transformers import AutoModel

    from raylib.models import mobilenet_v2

    folder = default_backbone_dir()
    native, ref = mobilenet_v2.load(str(folder)), AutoModel.from_pretrained(folder).eval()
    assert isinstance(Backbone.from_pretrained("default", device="cpu").model, mobilenet_v2.MobileNetV2)
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(3, 3, 96, 80)).astype(np.float32))
    with torch.inference_mode():
        a, b = native(pixel_values=x), ref(pixel_values=x)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(a.pooler_output, b.pooler_output.flatten(1), rtol=0, atol=0)
    import json

    config = json.loads((folder / "config.json").read_text())
    assert mobilenet_v2.supported(config)
    assert not mobilenet_v2.supported({**config, "depth_multiplier": 0.75})
    assert not mobilenet_v2.supported({**config, "model_type": "resnet"})


def test_backbone_from_s3_folder(bucket):
    uri = "s3://data/backbones/mnv2/"
    storage.upload_folder(default_backbone_dir(), uri)
    local = resolve_backbone(uri)
    assert "s3-backbones" in local
    x = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    a = Backbone.from_pretrained(uri, device="cpu", input_size=64).embed(x)
    b = Backbone.from_pretrained("default", device="cpu", input_size=64).embed(x)
    np.testing.assert_array_equal(a, b)


def test_missing_backbone_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        resolve_backbone(str(tmp_path / "nope") + "/")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        resolve_backbone(str(tmp_path / "empty"))

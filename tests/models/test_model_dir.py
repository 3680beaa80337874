import json
import shutil

import numpy as np
import pytest

from raylib.errors import InputError
from raylib.io import storage
from raylib.models.landcover_model import LandcoverModel


def test_model_dir_contents_and_holdout(test_model):
    from pathlib import Path

    folder = Path(test_model["uri"])
    m = json.loads((folder / "model.json").read_text())
    assert m["kind"] == "head" and m["classes"][0] == "AnnualCrop" and len(m["classes"]) == 10
    assert m["tile_size"] == 64 and m["gsd"] == 10.0 and m["backbone"]["path"] == "backbone"
    assert len(m["bands"]["mean"]) == 3 and all(0 < v < 1 for v in m["bands"]["mean"])
    assert (folder / "backbone" / "model.safetensors").exists() and (folder / "head.safetensors").exists()
    # even 16 train patches per class give far better than chance (10 %)
    assert test_model["scores"]["balanced_accuracy"] > 0.6


def test_predict_proba_sums_to_one(test_model):
    model = LandcoverModel.load(test_model["uri"], device="cpu")
    x = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    p = model.predict_proba(x)
    assert p.shape == (4, 10)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_pickle_in_model_dir_is_refused(test_model, tmp_path):
    bad = tmp_path / "m"
    shutil.copytree(test_model["uri"], bad)
    (bad / "extra.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(InputError, match="pickle"):
        LandcoverModel.load(str(bad))


def test_missing_or_broken_model_dir(tmp_path, test_model):
    with pytest.raises(InputError, match="does not exist"):
        LandcoverModel.load(str(tmp_path / "nope"))
    broken = tmp_path / "broken"
    shutil.copytree(test_model["uri"], broken)
    (broken / "model.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        LandcoverModel.load(str(broken))


def test_model_dir_on_s3(test_model, bucket):
    uri = "s3://data/models/small"
    storage.upload_folder(test_model["uri"], uri)
    a = LandcoverModel.load(uri, device="cpu")
    b = LandcoverModel.load(test_model["uri"], device="cpu")
    assert a.id == b.id
    x = np.random.default_rng(2).random((3, 3, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


def test_a_model_actor_starts_without_scikit_learn_or_transformers(test_model):
    """The map's model actor loads a head model with the numpy heads and the plain-torch
    MobileNetV2: scikit-learn and transformers (about 6 s of imports on 2 cores) stay out."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from raylib.pipelines.map.predictor import Predictor\n"
            f"p = Predictor({test_model['uri']!r}, 1)\n"
            "p.model.predict(np.zeros((2, 3, 64, 64), np.float32))\n"
            "print(sorted(m for m in ('sklearn', 'transformers', 'xgboost') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"

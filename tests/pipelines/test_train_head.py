import json
import shutil

import pytest

from raylib.cli import main

from ..conftest import EUROSAT, eurosat_subset


@pytest.fixture()
def small_set(tmp_path):
    return eurosat_subset(tmp_path / "set", ("Forest", "SeaLake", "Industrial"), 0, 30)


def test_train_head_cli_writes_a_model_dir(small_set, tmp_path, capsys):
    out = tmp_path / "model"
    rc = main(["train-head", "--data", str(small_set), "--out", str(out), "--per-class", "30", "--input-size", "64"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "model.json").read_text())
    assert m["classes"] == ["Forest", "Industrial", "SeaLake"]
    assert m["metrics"]["n_train"] + m["metrics"]["n_test"] == 90
    assert m["metrics"]["holdout"]["balanced_accuracy"] > 0.8  # forest / sea / industry are easy
    assert "created_by" in m and "train-head" in m["created_by"]


def test_corrupt_image_is_named(small_set, tmp_path, capsys):
    bad = small_set / "Forest" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    rc = main(["train-head", "--data", str(small_set), "--out", str(tmp_path / "m"), "--per-class", "100",
               "--input-size", "64"])
    err = capsys.readouterr().err
    assert rc == 2 and "broken.jpg" in err and "Fix:" in err
    assert not (tmp_path / "m").exists()


def test_unknown_file_and_single_class(small_set, tmp_path, capsys):
    (small_set / "Forest" / "notes.txt").write_text("hi")
    assert main(["train-head", "--data", str(small_set), "--out", str(tmp_path / "m")]) == 2
    assert "notes.txt is not an image" in capsys.readouterr().err
    one = tmp_path / "one" / "Forest"
    one.mkdir(parents=True)
    shutil.copy(next((EUROSAT / "Forest").glob("*.jpg")), one)
    assert main(["train-head", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "m")]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_refuses_to_overwrite_a_foreign_folder(small_set, tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    rc = main(["train-head", "--data", str(small_set), "--out", str(out), "--per-class", "4", "--input-size", "64"])
    assert rc == 2 and "is not a model directory; refusing to write into it" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "do not delete"

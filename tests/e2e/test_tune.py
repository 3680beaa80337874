"""landcover tune: a short real sweep on the local Ray cluster, then the exported head maps a scene."""

import json
import shutil

import numpy as np
import pytest

from raylib.cli import main
from raylib.config import EmbedConfig, MapConfig, TuneConfig
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.pipelines.embed import run_embed
from raylib.pipelines.map.run import run_map
from raylib.pipelines.tune import FAMILIES, run_tune

from ..conftest import EUROSAT, NAIP, NAIP_COUNTS, eurosat_subset


@pytest.fixture(scope="module")
def small_embeddings(ray_session, tmp_path_factory):
    root = eurosat_subset(tmp_path_factory.mktemp("tune-set"), ("Forest", "SeaLake", "Industrial", "AnnualCrop"), 0, 30)
    out = str(root / "emb")
    run_embed(EmbedConfig(data=str(root), out=out, input_size=64, batch_size=32))
    return out


def test_short_sweep_runs_every_family_and_refit_matches(small_embeddings, tmp_path):
    out = str(tmp_path / "tune")
    cfg = TuneConfig(data=small_embeddings, out=out, trials=6, max_epochs=8, max_rounds=20,
                     grace_period=2, cpus_per_trial=1)
    s = run_tune(cfg)
    assert s["trials"] == 6 and s["families"] == sorted(FAMILIES)  # each family ran
    assert s["refit_validation_score"] == pytest.approx(s["best_trial_score"], abs=1e-12)
    assert s["test"]["balanced_accuracy"] > 0.7  # 4 easy classes, 24 test patches
    m = json.loads((tmp_path / "tune" / "model" / "model.json").read_text())
    assert m["head"]["type"] == s["best_config"]["family"]
    assert (tmp_path / "tune" / "trials.parquet").exists()
    for f in ("report.md", "confusion.png", "pca.png", "metrics.json", "summary.json"):
        assert (tmp_path / "tune" / f).exists()
    # landcover evaluate on the same split gives the same numbers as the sweep's report
    rc = main(["evaluate", "--model", s["model"], "--data", small_embeddings, "--out", str(tmp_path / "ev")])
    assert rc == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["balanced_accuracy"] == pytest.approx(s["test"]["balanced_accuracy"])
    assert ev["confusion_matrix"] == s["test"]["confusion_matrix"] and ev["rows"] == 24


def test_exported_head_maps_a_scene(small_embeddings, tmp_path, ray_session, bucket):
    """Tune state and the exported model on S3; the map job loads the model from there."""
    s = run_tune(TuneConfig(data=small_embeddings, out="s3://maps/tune-out", trials=4,
                            families=["knn", "xgboost"], max_rounds=10, grace_period=2,
                            storage_path="s3://maps/tune-state"))
    assert s["model"] == "s3://maps/tune-out/model"
    assert storage.list_files("s3://maps/tune-state/")  # Tune wrote its experiment state to S3
    summary = run_map(MapConfig(scenes=[str(NAIP)], model=s["model"], out=str(tmp_path / "map")))
    t = read_map(str(tmp_path / "map"))
    assert summary["tiles"] == 48 == t.num_rows and summary["counts"] == NAIP_COUNTS
    assert set(t["label"].drop_null().to_pylist()) <= {"AnnualCrop", "Forest", "Industrial", "SeaLake"}
    p = np.array(t["probs"].drop_null().to_pylist())
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)


def test_evaluate_on_an_image_folder_and_unknown_class(small_embeddings, tmp_path, ray_session, capsys):
    out = str(tmp_path / "tune")
    s = run_tune(TuneConfig(data=small_embeddings, out=out, trials=1, families=["logistic_regression"]))
    folder = eurosat_subset(tmp_path / "holdout", ("Forest", "SeaLake"), 200, 205)
    assert main(["evaluate", "--model", s["model"], "--data", str(folder), "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["rows"] == 10 and ev["per_class_accuracy"]["Forest"] is not None
    assert ev["per_class_accuracy"]["Industrial"] is None  # not in this data
    (folder / "Pasture").mkdir()
    shutil.copy(next((EUROSAT / "Pasture").glob("*.jpg")), folder / "Pasture")
    assert main(["evaluate", "--model", s["model"], "--data", str(folder), "--out", str(tmp_path / "ev2")]) == 2
    assert "['Pasture']" in capsys.readouterr().err

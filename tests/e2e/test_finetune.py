"""landcover finetune on the real local Ray cluster (2 Ray Train workers, gloo): checkpoints,
resume after a killed driver, recovery from a killed worker, multi-band stems, and the
fine-tuned model in the map, evaluate and compare jobs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from raylib.cli import main
from raylib.config import EmbedConfig, FinetuneConfig, MapConfig, TuneConfig
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.models.landcover_model import LandcoverModel
from raylib.pipelines.embed import run_embed
from raylib.pipelines.finetune import run_finetune
from raylib.pipelines.map.run import run_map
from raylib.pipelines.tune import run_tune

from ..conftest import DATA, NAIP, NAIP_COUNTS, REPO, eurosat_subset

CLASSES = ("AnnualCrop", "Forest", "Industrial", "SeaLake")


def small_cfg(data, out, **kw) -> FinetuneConfig:
    base = dict(data=str(data), out=str(out), input_size=32, batch_size=16, epochs=3, workers=2,
                cpus_per_worker=0.5, patience=0)
    return FinetuneConfig(**{**base, **kw})


def checkpoints(run: Path) -> list[Path]:
    return sorted(p for p in run.glob("checkpoint_*") if (p / "state.json").exists())


@pytest.fixture(scope="module")
def ft_set(tmp_path_factory):
    return eurosat_subset(tmp_path_factory.mktemp("ft-set"), CLASSES, 0, 40)


@pytest.fixture(scope="module")
def trained(ray_session, ft_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "model"
    cfg = small_cfg(ft_set, out)
    return cfg, run_finetune(cfg)


def test_two_workers_write_checkpoints_that_reload_into_the_model_dir(trained):
    cfg, s = trained
    assert s["epochs_completed"] == 3 and s["resumed_from"] == [] and not s["stopped_early"]
    man = json.loads((Path(cfg.out) / "model.json").read_text())
    assert man["kind"] == "finetuned" and man["classes"] == list(CLASSES) and man["inference"] == {"tta": True}
    assert [h["epoch"] for h in man["training"]["history"]] == [1, 2, 3]
    assert [h["phase"] for h in man["training"]["history"]] == ["frozen", "full", "full"]
    assert man["training"]["rows"] == {"train": 116, "val": 12, "test": 32}
    assert len(man["bands"]["mean"]) == 3 and 0 < man["bands"]["mean"][0] < 1
    # the test split (32 patches of 4 classes), scored with TTA: well above chance (0.25)
    assert man["metrics"]["test"]["accuracy"] >= 0.6
    assert sum(map(sum, man["metrics"]["test"]["confusion_matrix"]["matrix"])) == 32
    # keep_checkpoints=2: the best and the latest stay, each complete and loadable
    ckpts = checkpoints(Path(s["run"]))
    assert 1 <= len(ckpts) <= 2
    states = [json.loads((c / "state.json").read_text()) for c in ckpts]
    assert max(st["epoch"] for st in states) == 3
    for c in ckpts:
        opt = torch.load(c / "optimizer.pt", weights_only=True)
        assert opt["param_groups"] and (c / "model.safetensors").stat().st_size > 1e6
    # the model directory holds the weights of the best kept checkpoint
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification

    exported = AutoModelForImageClassification.from_pretrained(Path(cfg.out) / "model").state_dict()
    best = max(st["history"][-1]["val_balanced_accuracy"] for st in states)
    matches = []
    for c, st in zip(ckpts, states):
        w = load_file(str(c / "model.safetensors"))
        if all(torch.equal(w[k], exported[k]) for k in w):
            matches.append(st["history"][-1]["val_balanced_accuracy"])
    assert matches and matches[0] == best


def test_map_uses_the_finetuned_model_with_and_without_tta(trained, tmp_path, ray_session):
    cfg, s = trained
    run_map(MapConfig(scenes=[str(NAIP)], model=cfg.out, out=str(tmp_path / "map"), bands="naip"))
    t = read_map(str(tmp_path / "map"))
    assert t.num_rows == 48 and t["status"].to_pylist().count("ok") == NAIP_COUNTS["ok"]
    assert set(t["model_id"].to_pylist()) == {s["model_id"]}
    t = t.filter(pc.equal(t["status"], "ok"))
    assert set(t["label"].to_pylist()) <= set(CLASSES)
    p = np.array(t["probs"].to_pylist())
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    run_map(MapConfig(scenes=[str(NAIP)], model=cfg.out, out=str(tmp_path / "map1"), bands="naip", tta=False))
    t1 = read_map(str(tmp_path / "map1"))
    p1 = np.array(t1.filter(pc.equal(t1["status"], "ok"))["probs"].to_pylist())
    assert not np.allclose(p, p1, atol=1e-4)  # TTA changes the probabilities...
    # ...to the mean over the 8 views: check one batch of tiles against the model directly
    model = LandcoverModel.load(cfg.out, device="cpu")
    x = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    from raylib.models.augment import dihedral

    views = np.mean([model.net.predict_proba(dihedral(torch.from_numpy(x), k).numpy(), tta=False)
                     for k in range(8)], axis=0)
    np.testing.assert_allclose(model.predict_proba(x), views, atol=1e-5)


def test_compare_frozen_head_and_finetuned_on_one_stored_split(trained, ft_set, tmp_path, ray_session, capsys):
    cfg, s = trained
    emb = str(tmp_path / "emb")
    run_embed(EmbedConfig(data=str(ft_set), out=emb, input_size=64))
    head = run_tune(TuneConfig(data=emb, out=str(tmp_path / "tune"), trials=1,
                               families=["logistic_regression"]))
    rc = main(["compare", "--models", head["model"], cfg.out, "--data", emb, "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert rc == 0 and "(head)" in out and "(finetuned)" in out
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["rows"] for r in res] == [32, 32]
    # the embeddings table stores the same split fine-tuning used for the image folder:
    # the fine-tuned model scores exactly what it scored at the end of training
    man = json.loads((Path(cfg.out) / "model.json").read_text())
    assert res[1]["metrics"]["confusion_matrix"] == man["metrics"]["test"]["confusion_matrix"]
    assert res[0]["metrics"]["balanced_accuracy"] == pytest.approx(head["test"]["balanced_accuracy"])
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "balanced accuracy" in md and "Forest" in md and (tmp_path / "cmp" / "model-2" / "confusion.png").exists()


def test_evaluate_and_compare_name_bad_inputs_before_writing(trained, ft_set, tmp_path, ray_session, capsys):
    cfg, _ = trained
    other = eurosat_subset(tmp_path / "other", ("Forest", "Pasture"), 0, 2)
    rc = main(["evaluate", "--model", cfg.out, "--data", str(other), "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert rc == 2 and "['Pasture']" in err and "are not classes of model" in err
    assert not (tmp_path / "ev").exists()
    rc = main(["compare", "--models", cfg.out, str(tmp_path / "missing"), "--data", str(ft_set),
               "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing does not exist" in err
    assert not (tmp_path / "cmp").exists()  # the first model was not scored for nothing


def test_a_killed_driver_resumes_from_the_latest_checkpoint(ray_session, ft_set, tmp_path):
    out = tmp_path / "model"
    cfg = small_cfg(ft_set, out, epochs=4)
    run = Path(str(out) + ".runs") / "finetune"
    args = [sys.executable, "-m", "raylib.cli", "finetune", "--data", cfg.data, "--out", cfg.out, "--input-size", "32",
            "--batch-size", "16", "--epochs", "4", "--cpus-per-worker", "0.5", "--patience", "0",
            "--ray-address", ray_session.get_runtime_context().gcs_address]
    with open(tmp_path / "driver.log", "wb") as log:
        proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 240
        # Ray Train resumes from checkpoints it has registered (its checkpoint_manager_snapshot.json);
        # the driver dies right after the first one is registered
        while not ((run / "checkpoint_manager_snapshot.json").exists() and checkpoints(run)) \
                and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "model.json").exists()
    done = max(json.loads((c / "state.json").read_text())["epoch"] for c in checkpoints(run))
    assert 1 <= done < 4
    s = run_finetune(cfg)  # the same command again
    assert s["resumed_from"] and 1 <= s["resumed_from"][0] <= done
    assert s["epochs_completed"] == 4  # as many as an uninterrupted run
    man = json.loads((out / "model.json").read_text())
    assert [h["epoch"] for h in man["training"]["history"]] == [1, 2, 3, 4]


def test_a_killed_worker_is_replaced_and_training_continues(ray_session, ft_set, tmp_path):
    import psutil

    out = tmp_path / "model"
    cfg = small_cfg(ft_set, out, epochs=6, max_failures=2)
    run = Path(str(out) + ".runs") / "finetune"
    killed = []

    def kill_one_worker():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            if (run / "checkpoint_manager_snapshot.json").exists() and checkpoints(run):
                for p in psutil.process_iter(["pid", "cmdline"]):
                    if any("RayTrainWorker" in part for part in (p.info["cmdline"] or [])):
                        os.kill(p.info["pid"], signal.SIGKILL)
                        killed.append(p.info["pid"])
                        return
            time.sleep(0.05)

    t = threading.Thread(target=kill_one_worker, daemon=True)
    t.start()
    s = run_finetune(cfg)
    t.join(timeout=5)
    assert killed, "no Ray Train worker was found to kill"
    assert s["resumed_from"], "training was not restarted from a checkpoint"
    assert s["epochs_completed"] == 6
    man = json.loads((out / "model.json").read_text())
    assert [h["epoch"] for h in man["training"]["history"]] == [1, 2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def ms_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("ms-set")
    for cls in ("Forest", "Industrial", "SeaLake"):
        (root / cls).mkdir()
        for f in sorted((DATA / "eurosat-ms-sample" / cls).glob("*.tif"))[:16]:
            shutil.copy(f, root / cls / f.name)
    return root


def test_4_band_model_trains_and_maps_a_4_band_scene(ray_session, ms_set, tmp_path):
    out = tmp_path / "model4"
    s = run_finetune(small_cfg(ms_set, out, bands=[4, 3, 2, 8], rgb_bands="sentinel2-eurosat", scale=3000,
                               epochs=2, batch_size=8))
    man = json.loads((out / "model.json").read_text())
    assert man["bands"]["channels"] == ["red", "green", "blue", "band8"] and man["bands"]["indices"] == [4, 3, 2, 8]
    assert len(man["bands"]["mean"]) == 4 and s["epochs_completed"] == 2
    model = LandcoverModel.load(str(out), device="cpu")
    assert model.net.model.config.num_channels == 4
    # NAIP holds R, G, B, NIR: the same four bands
    run_map(MapConfig(scenes=[str(NAIP)], model=str(out), out=str(tmp_path / "map"), bands=[1, 2, 3, 4]))
    t = read_map(str(tmp_path / "map"))
    assert t.num_rows == 48 and t["status"].to_pylist().count("ok") == NAIP_COUNTS["ok"]


def test_13_band_model_from_s3_with_checkpoints_on_s3(ray_session, bucket, ms_set, tmp_path):
    for f in ms_set.rglob("*.tif"):
        storage.write_bytes(f"s3://data/ms-ft/{f.parent.name}/{f.name}", f.read_bytes())
    cfg = small_cfg("s3://data/ms-ft/", "s3://maps/ft13", bands="all", rgb_bands="sentinel2-eurosat", scale=3000,
                    epochs=2, batch_size=8, storage_path="s3://maps/ft13-runs")
    s = run_finetune(cfg)
    assert s["epochs_completed"] == 2 and s["run"] == "s3://maps/ft13-runs/finetune"
    assert any("/checkpoint_" in u and u.endswith("model.safetensors")
               for u in storage.list_files("s3://maps/ft13-runs/finetune/"))
    model = LandcoverModel.load("s3://maps/ft13", device="cpu")
    assert model.net.model.config.num_channels == 13 and len(model.manifest.bands["mean"]) == 13
    assert model.manifest.bands["rgb"] == [3, 2, 1]


def test_bad_inputs_are_named(ray_session, ft_set, tmp_path, capsys):
    def err(argv):
        rc = main(["finetune", *argv])
        return rc, capsys.readouterr().err

    rc, e = err(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m")])
    assert rc == 2 and "does not exist" in e
    rc, e = err(["--data", str(ft_set), "--out", str(tmp_path / "m"), "--epochs", "2", "--freeze-epochs", "2"])
    assert rc == 2 and "freeze_epochs (2) must be below epochs (2)" in e
    rc, e = err(["--data", str(ft_set), "--out", str(tmp_path / "m"), "--batch-size", "4000"])
    assert rc == 2 and "do not fill one batch" in e
    rc, e = err(["--data", str(ft_set), "--out", str(tmp_path / "m"), "--class-weighting", "sqrt"])
    assert rc == 2 and "class_weighting" in e
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("x")
    rc, e = err(["--data", str(ft_set), "--out", str(tmp_path / "foreign")])
    assert rc == 2 and "is not a model directory; refusing" in e
    # the same run name with other settings is refused instead of mixing two recipes
    sp = str(tmp_path / "runs")
    os.makedirs(Path(sp) / "finetune")
    (Path(sp) / "finetune" / "landcover_run.json").write_text(json.dumps({"settings": {"lr": 1.0}}))
    rc, e = err(["--data", str(ft_set), "--out", str(tmp_path / "m2"), "--storage-path", sp, "--batch-size", "16"])
    assert rc == 2 and "was started with other settings" in e and "lr" in e
    # --gpu on a cluster whose GPU (the session's logical one) has a torch without CUDA: one line, before training
    # (Ray Train's workers would stop setting up NCCL, with a traceback)
    rc, e = err(["--data", str(ft_set), "--out", str(tmp_path / "m3"), "--gpu", "--batch-size", "16"])
    assert rc == 2 and e.count("\n") == 1, e
    assert "--gpu: the torch on the cluster's GPU node (2.13.0+cpu on " in e and "has no CUDA" in e
    assert "Fix: install a CUDA build of torch on the GPU nodes, or leave out --gpu" in e
    assert not (tmp_path / "m3").exists()


def test_a_corrupt_training_image_is_named_and_nothing_written(ray_session, ft_set, tmp_path, capsys):
    data = tmp_path / "set"
    shutil.copytree(ft_set, data)
    (data / "Forest" / "Forest_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rc = main(["finetune", "--data", str(data), "--out", str(tmp_path / "m"), "--input-size", "32",
               "--batch-size", "16", "--cpus-per-worker", "0.5"])
    e = capsys.readouterr().err
    assert rc == 2 and "Forest_broken.jpg" in e and "nothing was written" in e
    assert not (tmp_path / "m" / "model.json").exists()

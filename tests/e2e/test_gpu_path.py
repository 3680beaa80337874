"""The GPU path on a machine without a GPU. The test session's Ray has one logical GPU
(``ray.init(num_gpus=1)``, conftest), so Ray places GPU actors and Ray Data runs a GPU
stage with everything it asks of one (a batch size, among others); the model itself runs
on this CPU there (no CUDA), at the precision a GPU map runs by default (fp32). What a
GPU adds beyond that is measured by ``scripts/gpu_check.sh`` on a GPU node."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from raylib.config import MapConfig
from raylib.formats.mapfile import read_map
from raylib.pipelines.map.run import run_map

from ..conftest import NAIP, eurosat_subset

LANDCOVER = str(Path(sys.executable).parent / "landcover")


def _rows(out):
    t = read_map(str(out)).sort_by("tile_id")
    return t["tile_id"].to_pylist(), t["status"].to_pylist(), t["label"].to_pylist(), t["probs"].to_pylist()


def test_num_gpus_1_maps_every_tile_with_the_cpu_maps_labels(ray_session, test_model, tmp_path):
    """``landcover map --ray-address <a Ray with a GPU> --num-gpus 1 --store`` of the
    shipped NAIP scene: every tile, the CPU map's labels and probabilities, and the store.
    (Before the GPU path was built, this stopped before the first tile: Ray Data refuses a
    GPU stage without a batch size.)"""
    ray = ray_session
    assert ray.cluster_resources().get("GPU") == 1
    cpu = run_map(MapConfig(scenes=[str(NAIP)], out=str(tmp_path / "cpu"), model=test_model["uri"]))
    address = ray.get_runtime_context().gcs_address
    r = subprocess.run([LANDCOVER, "map", "--scenes", str(NAIP), "--model", test_model["uri"], "--out",
                        str(tmp_path / "gpu"), "--ray-address", address, "--num-gpus", "1", "--store"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"mapped {cpu['tiles']} tiles from 1 scene(s)" in r.stdout
    ids, status, labels, probs = _rows(tmp_path / "gpu")
    cids, cstatus, clabels, cprobs = _rows(tmp_path / "cpu")
    assert ids == cids and status == cstatus and labels == clabels and len(ids) == cpu["tiles"] == 48
    ok = [i for i, s in enumerate(status) if s == "ok"]
    np.testing.assert_allclose(np.array([probs[i] for i in ok]), np.array([cprobs[i] for i in ok]), atol=1e-5)
    store = pq.read_table(tmp_path / "gpu" / "_embeddings")
    assert sorted(store["tile_id"].to_pylist()) == sorted(ids)  # the store: every tile, an error row's without
    mapped = {t for t, e in zip(store["tile_id"].to_pylist(), store["embedding"].is_valid().to_pylist()) if e}
    assert mapped == {ids[i] for i in ok}  # (an embedding)
    # the session's GPU is logical and this torch a CPU build: the map says it ran on the CPUs, once, and the summary
    said = "--num-gpus 1: the torch on the cluster's GPU node (2.13.0+cpu on "
    assert r.stderr.count(said) == 1 and "is a build without CUDA, so the model ran on its CPUs" in r.stderr, r.stderr
    summary = json.loads((tmp_path / "gpu" / "_summary.json").read_text())
    assert summary["gpu_warning"].startswith(said) and "gpu_warning" not in cpu
    # Ray Data's account of the stages (gpu_check reads it): the read tasks, then the model actor on the GPU
    ops = [ln for ln in summary["ray_data_stats"] if ln.startswith("Operator ")]
    assert len(ops) == 2 and "ReadScene" in ops[0] and "MapBatches(Predictor)" in ops[1], summary["ray_data_stats"]


def test_compare_and_embed_data_on_a_gpu_actor_give_the_cpus_answers(ray_session, test_model, tmp_path):
    """``compare --num-gpus 1`` (evaluate's scorer, twice) and ``embed --data --num-gpus 1``
    against the session's logical GPU: the CPU's metrics and embeddings, and, the GPU node's
    torch being a CPU build here, the warning once on stderr and in each report."""
    from raylib.formats.embtable import read_embeddings

    folder = eurosat_subset(tmp_path / "set", ("Forest", "Highway", "SeaLake"), 300, 306)
    address = ray_session.get_runtime_context().gcs_address
    model = test_model["uri"]

    def cli(*args):
        r = subprocess.run([LANDCOVER, *args, "--ray-address", address], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        return r.stderr

    said = "--num-gpus 1: the torch on the cluster's GPU node (2.13.0+cpu on "
    err = cli("compare", "--models", model, model, "--data", str(folder), "--out", str(tmp_path / "cmp"),
              "--num-gpus", "1")
    assert err.count(said) == 1, err  # two models scored, one warning
    gpu = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert all(r["gpu_warning"].startswith(said) and r["rows"] == 18 for r in gpu)
    assert said in (tmp_path / "cmp" / "model-1" / "report.md").read_text()
    err = cli("evaluate", "--model", model, "--data", str(folder), "--out", str(tmp_path / "ev"), "--num-gpus", "0")
    cpu = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "gpu_warning" not in cpu and said not in err
    assert gpu[0]["metrics"]["confusion_matrix"] == gpu[1]["metrics"]["confusion_matrix"] == cpu["confusion_matrix"]
    assert cpu["rows"] == 18 and cpu["balanced_accuracy"] > 0.5

    err = cli("embed", "--data", str(folder), "--out", str(tmp_path / "eg"), "--input-size", "64", "--num-gpus", "1")
    assert err.count(said) == 1, err
    cli("embed", "--data", str(folder), "--out", str(tmp_path / "ec"), "--input-size", "64")
    Xg, yg, *_, tg = read_embeddings(str(tmp_path / "eg"))
    Xc, yc, *_, tc = read_embeddings(str(tmp_path / "ec"))
    assert tg["tile_id"].equals(tc["tile_id"]) and (yg == yc).all() and Xg.shape == (18, 1280)
    np.testing.assert_allclose(Xg, Xc, atol=1e-5)


@pytest.mark.parametrize("args, says", [
    (["--num-gpus", "2"], "--num-gpus 2: no node of this Ray cluster has 2 GPU(s)"),
    (["--num-gpus", "1.5"], "more than one GPU per actor must be a whole number"),
    (["--precision", "bf16"], "precision bf16 is for GPU actors, and num_gpus is 0"),
])
def test_a_gpu_request_that_cannot_be_met_is_one_line_and_exit_2(ray_session, test_model, tmp_path, args, says):
    out = tmp_path / "out"
    r = subprocess.run([LANDCOVER, "map", "--scenes", str(NAIP), "--model", test_model["uri"], "--out", str(out),
                        "--ray-address", ray_session.get_runtime_context().gcs_address, *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0] and "Fix:" in lines[0], r.stderr[-2000:]
    assert not any(out.glob("*.parquet"))


OOM_RUN = """
import sys, torch
from raylib.config import MapConfig
from raylib.models.device import memory_guard
from raylib.pipelines.map.predictor import Predictor
from raylib.pipelines.map.run import run_map

where, scene, model, out, address = sys.argv[1:]


class TooBig(Predictor):  # the model actor on a GPU whose memory a batch of 65536 tiles exceeds
    WHERE = where

    def _oom(self):
        import torch

        from raylib.models.device import memory_guard

        with memory_guard(self.batch_size):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 96.00 GiB (GPU 0)")

    def warm_up(self, every_shape=True):
        self._oom()

    def __init__(self, *args, **kwargs):
        from raylib.errors import InputError

        super().__init__(*args, **kwargs)
        if self.WHERE == "start":  # what Predictor does on a GPU at its start
            try:
                self.warm_up()
            except InputError as exc:
                self.unfit = exc

    def __call__(self, batch):
        if self.WHERE == "start":
            return super().__call__(batch)
        self._oom()


try:
    run_map(MapConfig(scenes=[scene], out=out, model=model, num_gpus=1, batch_size=65536, driver_first_block=False,
                      ray_address=address), predictor=TooBig)
except Exception as exc:
    print(f"ERROR:{type(exc).__name__}:{exc}")
"""


@pytest.mark.parametrize("where", ["start", "batch"])
def test_a_batch_that_does_not_fit_the_gpu_stops_the_map_in_one_line(where, ray_session, test_model, tmp_path):
    """CUDA out of memory in a GPU actor, at its start (its blank batch) or on a batch: the
    map stops with one line naming --batch-size (exit 2 from the CLI), not a CUDA traceback.
    (A driver of its own, as a user's command is: a failed pipeline's actor, and the GPU it
    holds, go with the driver's job.)"""
    r = subprocess.run([sys.executable, "-c", OOM_RUN, where, str(NAIP), test_model["uri"], str(tmp_path / where),
                        ray_session.get_runtime_context().gcs_address], capture_output=True, text=True, timeout=300)
    said = [ln for ln in r.stdout.splitlines() if ln.startswith("ERROR:")]
    assert len(said) == 1, r.stdout[-2000:] + r.stderr[-3000:]
    assert said[0] == ("ERROR:InputError:--batch-size 65536: a batch of 65536 tiles does not fit in the GPU's memory (CUDA out "
                       "of memory. Tried to allocate 96.00 GiB (GPU 0)). Fix: lower --batch-size (e.g. 16384).")


def test_a_gpu_actors_blank_first_batch_runs_the_network_alone(test_model):
    """What a GPU actor runs at its start (here on the CPU): the network on a blank batch,
    without the head's inputs (statistics, pixels)."""
    from raylib.pipelines.map.predictor import Predictor

    p = Predictor(test_model["uri"], torch_threads=1, batch_size=8)
    p.warm_up()
    assert p.model.device == "cpu" and p.batch_size == 8
    # every padded shape a batch of 1,024 can take, largest first; an adapting run's first pass: the largest alone
    assert p.model.net is None  # (a head model: its warm-up runs embed16, recorded here)
    p.batch_size, seen, embed16 = 1024, [], p.model.embed16
    p.model.embed16 = lambda x, g, o: seen.append(len(x)) or embed16(x[:1], g, o)
    p.warm_up()
    assert seen == [1024, 512, 256, 128, 64]
    seen.clear()
    p.warm_up(every_shape=False)
    assert seen == [1024]

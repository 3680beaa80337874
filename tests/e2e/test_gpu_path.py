"""The GPU path on a machine without a GPU. The test session's Ray has one logical GPU
(``ray.init(num_gpus=1)``, conftest), so Ray places GPU actors and Ray Data runs a GPU
stage with everything it asks of one (a batch size, among others); the model itself runs
on this CPU there (no CUDA), at the precision a GPU map runs by default (fp32). What a
GPU adds beyond that is measured by ``scripts/gpu_check.sh`` on a GPU node."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from raylib.config import MapConfig
from raylib.formats.mapfile import read_map
from raylib.pipelines.map.run import run_map

from ..conftest import NAIP

LANDCOVER = str(Path(sys.executable).parent / "landcover")


def _rows(out):
    t = read_map(str(out)).sort_by("tile_id")
    return t["tile_id"].to_pylist(), t["status"].to_pylist(), t["label"].to_pylist(), t["probs"].to_pylist()


def test_num_gpus_1_maps_every_tile_with_the_cpu_maps_labels(ray_session, test_model, tmp_path):
    """``landcover map --ray-address <a Ray with a GPU> --num-gpus 1 --embeddings`` of the
    shipped NAIP scene: every tile, the CPU map's labels and probabilities, and the store.
    (Before the GPU path was built, this stopped before the first tile: Ray Data refuses a
    GPU stage without a batch size.)"""
    ray = ray_session
    assert ray.cluster_resources().get("GPU") == 1
    cpu = run_map(MapConfig(scenes=[str(NAIP)], out=str(tmp_path / "cpu"), model=test_model["uri"]))
    address = ray.get_runtime_context().gcs_address
    r = subprocess.run([LANDCOVER, "map", "--scenes", str(NAIP), "--model", test_model["uri"], "--out",
                        str(tmp_path / "gpu"), "--ray-address", address, "--num-gpus", "1", "--embeddings"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"mapped {cpu['tiles']} tiles from 1 scene(s)" in r.stdout
    ids, status, labels, probs = _rows(tmp_path / "gpu")
    cids, cstatus, clabels, cprobs = _rows(tmp_path / "cpu")
    assert ids == cids and status == cstatus and labels == clabels and len(ids) == cpu["tiles"] == 48
    ok = [i for i, s in enumerate(status) if s == "ok"]
    np.testing.assert_allclose(np.array([probs[i] for i in ok]), np.array([cprobs[i] for i in ok]), atol=1e-5)
    store = pq.read_table(tmp_path / "gpu" / "embeddings")
    assert sorted(store["tile_id"].to_pylist()) == sorted(ids[i] for i in ok)  # the store: every mapped tile


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

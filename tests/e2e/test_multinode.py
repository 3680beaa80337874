"""The map past one machine: a real Ray cluster of several nodes (``ray start``), shaped like
cluster.yaml (a head with no CPU, a CPU read node, a node with a logical GPU), each node on
a loopback address of its own so that Ray sees three hosts. The map runs on it as users run
it, a driver process with ``--ray-address``, against the S3 server; Ray's own task records
say, by node id, where its stages ran."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from raylib.config import MapConfig
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.pipelines.map.run import run_map

from ..conftest import LANDSAT, NAIP, REPO
from .ray_nodes import RayNodes

NAIP_S3 = f"s3://data/scenes/{NAIP.name}"


@pytest.fixture(scope="module")
def nodes(bucket):
    """Three nodes, started after the S3 server (their workers inherit its endpoint and keys)."""
    cluster = RayNodes()
    try:
        cluster.start_head()
        cluster.add("cpu", "127.0.0.3", cpus=2)
        cluster.add("gpu", "127.0.0.2", cpus=1, gpus=1)
        yield cluster
    finally:
        cluster.stop()


def landcover(nodes: RayNodes, *args: str, timeout: float = 300, **env_vars: str) -> subprocess.CompletedProcess:
    """``landcover`` as a driver process of its own joining the cluster, as a user runs it."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **env_vars}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "raylib.cli", *args, "--ray-address", nodes.address],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def test_the_map_reads_on_cpu_nodes_embeds_on_the_gpu_node_and_equals_the_one_node_map(
        nodes, ray_session, test_model, tmp_path):
    out = "s3://maps/multinode/naip"
    r = landcover(nodes, "map", "--scenes", NAIP_S3, "--bands", "naip", "--model", test_model["uri"], "--out", out,
                  "--num-gpus", "1", "--read-batch-size", "8")
    assert r.returncode == 0, r.stderr[-3000:]
    where = nodes.placements(nodes.last_job())
    assert where["read"] and where["read"] <= {nodes.node_id("cpu")}, where  # the head runs no task
    assert where["model"] == {nodes.node_id("gpu")}, where

    # the same map on one node (this session's Ray, its logical GPU): tile for tile
    one = run_map(MapConfig(scenes=[NAIP_S3], bands="naip", model=test_model["uri"], out="s3://maps/multinode/one",
                            num_gpus=1, read_batch_size=8))
    assert one["result"] == "ok"
    cols = ["tile_id", "scene", "label", "status", "reason", "row_off", "col_off", "probs", "area_ha"]
    a, b = (read_map(u, columns=cols).sort_by("tile_id").to_pydict() for u in (out, "s3://maps/multinode/one"))
    assert len(a["tile_id"]) == 48 and len(set(a["tile_id"])) == 48
    for c in cols[:-2]:
        assert a[c] == b[c], c
    np.testing.assert_allclose(np.array([p or [np.nan] * 10 for p in a["probs"]], float),
                               np.array([p or [np.nan] * 10 for p in b["probs"]], float), atol=1e-4)
    assert a["area_ha"] == b["area_ha"]


def test_a_local_path_on_a_cluster_of_several_hosts_is_one_line_and_nothing_written(nodes, test_model, tmp_path):
    """The workers of a cluster on several machines cannot reach this machine's files: a
    local --out or local scenes are refused before anything is written, naming the path and
    the fix; with LANDCOVER_SHARED_FS=1 (every node mounts the same file system) they run."""
    out = tmp_path / "local-map"
    r = landcover(nodes, "map", "--scenes", NAIP_S3, "--bands", "naip", "--model", test_model["uri"],
                  "--out", str(out))
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--out {out} is a path on this machine" in lines[0], r.stderr
    assert "3 hosts" in lines[0] and "s3://" in lines[0] and "LANDCOVER_SHARED_FS=1" in lines[0]
    assert not out.exists()

    r = landcover(nodes, "map", "--scenes", str(NAIP), "--bands", "naip", "--model", test_model["uri"],
                  "--out", "s3://maps/multinode/never")
    assert r.returncode == 2 and f"--scenes {NAIP} is a path on this machine" in r.stderr, r.stderr[-3000:]
    assert not storage.exists("s3://maps/multinode/never/_landcover.json")

    # every node mounts the same file system (here: one machine): said so, local paths run
    r = landcover(nodes, "map", "--scenes", str(NAIP), "--bands", "naip", "--model", test_model["uri"],
                  "--out", str(out), "--no-quicklook", LANDCOVER_SHARED_FS="1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "_SUCCESS").exists() and read_map(str(out), columns=["tile_id"]).num_rows == 48


def test_a_read_node_killed_mid_map_loses_and_doubles_no_tile(nodes, test_model):
    """The CPU read node's raylet killed (SIGKILL, as a lost machine) while the map reads, and
    a new read node joining: the run finishes, or a rerun of it completes it, with every tile
    of the scene once. (Last in this module: it takes the cluster's read node away.)"""
    import signal
    import time

    from ray.util.state import list_tasks

    out = "s3://maps/multinode/killed"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    args = [sys.executable, "-m", "raylib.cli", "map", "--scenes", f"s3://data/scenes/{LANDSAT.name}", "--bands",
            "landsat8-b234", "--fill-value", "0", "--tile-size", "64", "--gsd", "native", "--model", test_model["uri"],
            "--out", out, "--num-gpus", "1", "--read-batch-size", "16", "--no-quicklook", "--ray-address", nodes.address]
    jobs_before = nodes.jobs()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    cpu, deadline, job = nodes.node_id("cpu"), time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:  # some of its reads done on the read node, most to come
        job = job or next(iter(nodes.jobs() - jobs_before), None)
        done = [] if job is None else [
            t for t in list_tasks(address=nodes.address, filters=[("job_id", "=", job), ("state", "=", "FINISHED")],
                                  limit=10_000, detail=True, raise_on_missing_output=False)
            if "ReadScene" in t.name and t.node_id == cpu]
        if len(done) >= 3:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the map ended before the read node could be killed: " + proc.stderr.read()[-2000:]
    os.kill(nodes.raylet_pid("cpu"), signal.SIGKILL)
    nodes.add("cpu2", "127.0.0.4", cpus=2)  # the autoscaler's replacement
    _, err = proc.communicate(timeout=600)
    reads = nodes.placements(job)["read"]
    if proc.returncode != 0:  # the run failed cleanly: its rerun resumes it
        before = nodes.jobs()
        r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
        assert r.returncode == 0, (err[-2000:], r.stderr[-3000:])
        reads |= nodes.placements(next(iter(nodes.jobs() - before)))["read"]
    # the lost node had read part of the scene while the run went on (where the rest was read depends on
    # when Ray noticed the loss: the new node, or the lost node's reads run again)
    assert len(done) >= 3 and reads, (reads, proc.returncode, err[-2000:])
    t = read_map(out, columns=["tile_id", "status"])
    ids = t.column("tile_id").to_pylist()
    assert len(ids) == 960 and len(set(ids)) == 960

"""Autoscaled sweeps: a Tune sweep wider than the cluster makes Ray's own autoscaler add
worker nodes, finishes, and the idle nodes go away.

Ray's fake multi-node provider (``RAY_FAKE_CLUSTER=1``) runs the real autoscaler (monitor,
resource-demand scheduler, idle timeout) and starts each "node" as a real raylet on this
machine. The head (0 CPUs, like cluster.yaml's) runs in its own process group with its own
ports, so the test session's cluster is untouched; the sweep's driver is a subprocess
because one process talks to one cluster.
"""

import json
import subprocess
import sys

import pytest
import yaml

from raylib.config import EmbedConfig
from raylib.pipelines.embed import run_embed

from ..conftest import REPO, _free_port, eurosat_subset, ray_binary, separate_ray_head

DRIVER = r"""
import json, sys, threading, time
import ray
from raylib.config import TuneConfig
from raylib.pipelines.tune import run_tune

address, emb, out, temp = sys.argv[1:5]
# this machine runs other Ray nodes too (the test session's): attach to the fake head's
ray.init(address=address, _temp_dir=temp, logging_level="WARNING", log_to_driver=False)

def workers():
    return [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]

peak, stop = [0], [False]
def watch():
    while not stop[0]:
        peak[0] = max(peak[0], len(workers()))
        time.sleep(0.5)

before = len(workers())
# a GPU request the live nodes cannot meet is left to an autoscaler with node types of its own
from raylib.pipelines.common.gpu_probe import check_gpus
from raylib.pipelines.common.ray_session import autoscaler_node_types
deadline = time.time() + 30
while not autoscaler_node_types() and time.time() < deadline:
    time.sleep(0.5)
types = autoscaler_node_types()
check_gpus(1)  # (raises when no autoscaler may start a node)
threading.Thread(target=watch, daemon=True).start()
s = run_tune(TuneConfig(data=emb, out=out, trials=2, families=["logistic_regression", "knn"],
                        cpus_per_trial=1, max_concurrent_trials=2))
stop[0] = True
deadline = time.time() + 120
while workers() and time.time() < deadline:  # idle nodes are removed after idle_timeout_minutes
    time.sleep(1)
print("RESULT " + json.dumps({"before": before, "peak": peak[0], "after": len(workers()), "trials": s["trials"],
                             "types": types}))
"""


def fake_cluster_config(gcs: str) -> dict:
    """cluster.yaml's shape on the fake provider: a head without CPUs and a spot-like CPU
    worker type (1 CPU a node here, 0..3 nodes)."""
    real = yaml.safe_load((REPO / "cluster.yaml").read_text())
    cpu_type = real["available_node_types"]["cpu_spot"]
    return {
        "cluster_name": "landcover-fake",
        "max_workers": 3,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs},
        "available_node_types": {
            "ray.head.default": {"resources": real["available_node_types"][real["head_node_type"]]["resources"],
                                 "node_config": {}, "max_workers": 0},
            "cpu_spot": {"resources": {"CPU": 1, "object_store_memory": 200_000_000}, "node_config": {},
                         "min_workers": cpu_type.get("min_workers", 0), "max_workers": 3},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1, "docker": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
    }


@pytest.fixture()
def fake_autoscaling_head(tmp_path):
    from ray.util import get_node_ip_address

    ray_bin = ray_binary()
    gcs = _free_port()
    address = f"{get_node_ip_address()}:{gcs}"  # this machine's own address, as Ray resolves it
    cfg_path = tmp_path / "fake-cluster.yaml"
    cfg_path.write_text(yaml.safe_dump(fake_cluster_config(address)))

    def gcs_up(env):
        r = subprocess.run([ray_bin, "status", f"--address={address}"], env=env, capture_output=True, timeout=30)
        return r.returncode == 0

    args = [f"--port={gcs}", "--num-cpus=0", "--include-dashboard=false", f"--autoscaling-config={cfg_path}"]
    env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    with separate_ray_head(args, env, gcs_up, "ray-fake-head") as head:
        yield {"address": address, "env": head["env"], "temp": head["temp"]}


def test_a_sweep_wider_than_the_cluster_scales_it_up_and_back_down(ray_session, fake_autoscaling_head, tmp_path):
    data = eurosat_subset(tmp_path / "set", ("Forest", "SeaLake", "Industrial"), 0, 12)
    emb = str(tmp_path / "emb")
    run_embed(EmbedConfig(data=str(data), out=emb, input_size=32))  # on the test session's cluster
    r = subprocess.run([sys.executable, "-c", DRIVER, fake_autoscaling_head["address"], emb, str(tmp_path / "tune"),
                        fake_autoscaling_head["temp"]],
                       env=fake_autoscaling_head["env"], capture_output=True, text=True, timeout=420, cwd=REPO)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert r.returncode == 0 and line, (r.stdout + r.stderr)[-4000:]
    res = json.loads(line[0][len("RESULT "):])
    assert res["before"] == 0  # the head has no CPUs and no worker node is up
    assert res["peak"] >= 1  # the autoscaler added nodes for the trials' CPUs
    assert res["trials"] == 2  # ... and the sweep finished
    assert res["after"] == 0  # idle nodes went away
    assert "ray.head.default" in res["types"]  # the autoscaler's own node types: a GPU request waits for it
    assert (tmp_path / "tune" / "model" / "model.json").exists()

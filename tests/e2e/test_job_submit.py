"""`ray job submit` against a real local head (ray start --head), through the dashboard's job API."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from raylib.outputs import read_map

from ..conftest import NAIP, REPO, _free_port, background_server


@pytest.fixture()
def ray_head():
    ray_bin = str(Path(sys.executable).parent / "ray")
    if not os.path.exists(ray_bin):
        ray_bin = shutil.which("ray")
    gcs, dash = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="lcr-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = dict(os.environ, RAY_AUTH_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    # --block keeps the head's processes under one process group, which the teardown kills:
    # `ray stop` would also stop the test session's own cluster.
    start = [ray_bin, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--disable-usage-stats",
             f"--temp-dir={temp}"]
    # every port its own: the test session's cluster already holds Ray's defaults (agent 52365, ...)
    start += [f"--{name}={_free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "node-manager-port", "object-manager-port", "ray-client-server-port")]
    address = f"http://127.0.0.1:{dash}"

    def dashboard_up():
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as resp:
            return resp.status == 200

    try:
        with background_server(start, env, temp, "ray-head", dashboard_up, stop_wait=5):
            yield {"ray": ray_bin, "address": address, "env": env}
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_map_job_via_ray_job_submit(ray_head, tmp_path, test_model):
    out = tmp_path / "submitted"
    cfg = tmp_path / "map.yaml"
    cfg.write_text(f"scenes: [{NAIP}]\nmodel: {test_model['uri']}\nout: {out}\n")
    # the project's runtime_env file: working_dir "." resolves against the submitting directory
    cmd = [ray_head["ray"], "job", "submit", "--address", ray_head["address"],
           "--runtime-env", "jobs/runtime_env.yaml", "--", sys.executable, "jobs/map.py", "--config", str(cfg)]
    t = time.time()
    for _ in range(20):  # the dashboard answers before the head's job agent has registered
        r = subprocess.run(cmd, env=ray_head["env"], capture_output=True, text=True, timeout=600, cwd=REPO)
        if "No available agent to submit job" not in r.stdout + r.stderr:
            break
        time.sleep(3)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in r.stdout + r.stderr and "mapped 48 tiles from 1 scene(s)" in r.stdout
    table = read_map(str(out))
    assert table.num_rows == 48 and set(table["status"].to_pylist()) == {"ok"}
    assert (out / "_SUCCESS").exists() and time.time() - t < 600

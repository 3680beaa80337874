"""`ray job submit` against a real local head (ray start --head), through the dashboard's job API."""

import subprocess
import sys
import time
import urllib.request

import pytest

from raylib.formats.mapfile import read_map

from ..conftest import NAIP, REPO, _free_port, separate_ray_head


@pytest.fixture()
def ray_head():
    gcs, dash = _free_port(), _free_port()
    address = f"http://127.0.0.1:{dash}"

    def dashboard_up(env):
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as resp:
            return resp.status == 200

    args = [f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}"]
    with separate_ray_head(args, {}, dashboard_up, "ray-head") as head:
        yield {"ray": head["ray"], "address": address, "env": head["env"]}


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

"""`ray job submit` against a real local head (ray start --head), through the dashboard's job API."""

import subprocess
import sys
import time
import urllib.request

import pytest

from raylib.formats.mapfile import read_map

from ..conftest import NAIP, NAIP_COUNTS, REPO, _free_port, separate_ray_head


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
        yield {"ray": head["ray"], "address": address, "env": head["env"], "gcs": f"127.0.0.1:{gcs}"}


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
    assert table.num_rows == 48 and table["status"].to_pylist().count("ok") == NAIP_COUNTS["ok"]
    assert (out / "_SUCCESS").exists() and time.time() - t < 600


def test_num_gpus_on_a_ray_without_gpus_is_one_line_and_exit_2(ray_head, tmp_path, test_model):
    """A GPU request against a cluster with no GPU (this head: CPUs only) is refused at once,
    not left waiting for an actor that can never be placed."""
    from pathlib import Path

    landcover = str(Path(sys.executable).parent / "landcover")
    r = subprocess.run([landcover, "map", "--scenes", str(NAIP), "--model", test_model["uri"], "--out",
                        str(tmp_path / "out"), "--ray-address", ray_head["gcs"], "--num-gpus", "1"],
                       env=ray_head["env"], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "--num-gpus 1: no node of this Ray cluster has 1 GPU(s) for one actor (the most on one node is 0)" \
        in lines[0]

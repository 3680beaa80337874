"""Ray plumbing shared by the Ray Data jobs (map, embed, change, accounts, export): connecting
to a cluster, sizing the model actor pool, one task per item."""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading

from raylib.console import Progress
from raylib.errors import InputError
from raylib.io.cache import cache_dir, cached

log = logging.getLogger(__name__)


def ensure_ray(address: str | None = None) -> None:
    """Connect to ``address`` / ``RAY_ADDRESS``, or start a local cluster; quiet unless -v.

    A local start has no dashboard (1.2 s less of Ray's 6 s start on a 2-core machine; for
    one, start Ray with ``ray start --head`` and pass its address), and ``ray.data`` (1 s to
    import) is imported while Ray starts."""
    import ray

    quiet = not logging.getLogger("raylib").isEnabledFor(logging.INFO)
    if quiet:  # this program's own lines and progress only (``-v`` shows Ray's)
        for name in ("ray.data", "ray", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if not ray.is_initialized():
        data = threading.Thread(target=importlib.import_module, args=("ray.data",), daemon=True)
        data.start()
        # quiet: workers' own output (library warnings, weight-loading bars) stays in the
        # session's log files; their failures still come back as exceptions and error rows
        ray.init(address=address, ignore_reinit_error=True, logging_level=logging.ERROR if quiet else logging.INFO,
                 log_to_driver=not quiet, include_dashboard=False)
        data.join()
    if quiet:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        # Ray Data sets up its loggers when it is imported (a console handler at INFO): its
        # lines ("execution finished", "progress bars disabled") reach the terminal only with -v;
        # its log files keep them
        for h in logging.getLogger("ray.data").handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setLevel(logging.ERROR)


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
        if not types and _autoscaler_node_types():  # node types this driver cannot see: the autoscaler decides
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


_SAID_GPU_BUILD: set[str] = set()  # the warnings this process has logged (a compare's models share one)


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


def _autoscaler_node_types() -> list[str]:
    """The node types of an autoscaler that starts nodes from a cluster config (``ray up``
    cluster.yaml's ``head``, ``gpu``, ...), as its last status names them; empty for a local
    Ray or a fixed ``ray start`` cluster (their read-only provider names each node
    ``node_<id>``). Ray's v1 autoscaler publishes its status, not its config's resources."""
    try:
        import json

        from ray._private import ray_constants
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        report = (json.loads(raw) if raw else {}).get("autoscaler_report") or {}
    except Exception:
        return []
    names = set(report.get("active_nodes") or {}) | set(report.get("pending_launches") or {})
    names |= {p[1] for p in report.get("pending_nodes") or [] if len(p) > 1}
    return sorted(n for n in names if not str(n).startswith("node_"))


def landcover_cause(exc: BaseException):
    """The user's error (a ``LandcoverError``) an exception from a Ray task or actor carries,
    however Ray and Ray Data wrapped it; None when there is none."""
    from raylib.errors import LandcoverError

    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, LandcoverError) and type(e).__module__.startswith("raylib."):  # not Ray's wrapper of it
            if e.args and isinstance(e.args[0], str):  # its one line (Ray Data appends its retry advice)
                e.args = (e.args[0].split("\n")[0], *e.args[1:])
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return None


def pool_size(actors: int | None, num_gpus: float) -> int:
    """Actors in the pool: as asked, else one per GPU of the cluster (GPU jobs), else one."""
    import ray

    if actors:
        return actors
    if num_gpus:
        return max(1, int(ray.cluster_resources().get("GPU", 0) // num_gpus))
    return 1


def set_torch_threads(torch_threads: int | None, actors: int) -> int:
    """Torch threads for one actor: as asked, else this node's cores shared by the pool
    (capped at 8: more threads stop paying for these models)."""
    import torch

    n = torch_threads or max(1, min(8, (os.cpu_count() or 1) // max(1, actors)))
    torch.set_num_threads(int(n))
    return int(n)


def actor_stage(ds, cls, constructor_kwargs: dict, *, actors: int, batch_size: int | None, actor_cpus: float,
                num_gpus: float, concurrency: int = 1):
    """``ds.map_batches`` with a callable class on an autoscaling actor pool (1..actors).

    ``batch_size``: rows per call (None: each block as it comes, CPU actors only: Ray Data
    asks GPU stages for a batch size, and then joins small blocks up to it).

    ``concurrency`` > 1: each actor takes that many calls at once (and twice as many blocks
    in flight), so it fetches, converts and returns blocks while its model runs one; the
    model itself still runs one call at a time (Ray's ``max_concurrent_calls_per_actor``
    without true multi-threading)."""
    from ray.data import ActorPoolStrategy

    more = {}
    if concurrency > 1:
        import inspect

        more["max_tasks_in_flight_per_actor"] = 2 * concurrency
        if "max_concurrent_calls_per_actor" in inspect.signature(ActorPoolStrategy).parameters:  # Ray >= 2.5x
            more["max_concurrent_calls_per_actor"] = concurrency
    return ds.map_batches(
        cls,
        fn_constructor_kwargs=constructor_kwargs,
        compute=ActorPoolStrategy(min_size=1, max_size=actors, **more),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=actor_cpus,
        num_gpus=num_gpus or None,
    )


def collect(ds, n: int, fields: dict[str, tuple], what: str | None = None, unit: str = "patches") -> dict:
    """Gather a pipeline's numpy batches by their ``idx`` column into arrays of length ``n``
    (with ``what``, a progress line on stderr: ``what: done/n unit``).

    ``fields``: name -> (trailing shape or None to take it from the first batch, dtype, fill).
    Raises if a row comes back twice or never: no row is silently dropped or duplicated.
    """
    import numpy as np

    progress = Progress(what, n, unit) if what else None
    done = np.zeros(n, bool)
    out = {k: np.full((n, *shape), fill, dtype=dt) for k, (shape, dt, fill) in fields.items() if shape is not None}
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        idx = batch["idx"]
        if done[idx].any():
            raise RuntimeError("a row came back twice from the pipeline")
        done[idx] = True
        if progress:
            progress.update(len(idx))
        for k, (_, dt, fill) in fields.items():
            if k not in out:
                out[k] = np.full((n, *batch[k].shape[1:]), fill, dtype=dt)
            out[k][idx] = batch[k]
    if progress:
        progress.close()
    if not done.all():
        raise RuntimeError(f"{int((~done).sum())} rows never came back from the pipeline")
    return out


def _one_task(batch: dict, fn, kwargs: dict) -> dict:
    """``tasks``: the one row of a batch as keyword arguments to ``fn``; its result as JSON."""
    row = {k: v[0].item() if hasattr(v[0], "item") else v[0] for k, v in batch.items() if k != "_i"}
    return {"_i": batch["_i"], "result": [json.dumps(fn(**row, **kwargs))]}


def tasks(fn, items: list[dict], kwargs: dict, ray_address: str | None = None):
    """One Ray Data task per item (``fn(**item, **kwargs)``, a JSON-able result), each on one
    CPU; yields ``(item number, result)`` as the tasks finish (change's and accounts'
    partitions, export's blocks)."""
    import ray

    ensure_ray(ray_address)
    rows = [{**item, "_i": i} for i, item in enumerate(items)]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map_batches(_one_task, batch_size=1, batch_format="numpy", num_cpus=1,
                        fn_kwargs={"fn": fn, "kwargs": kwargs})
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        for i, r in zip(batch["_i"], batch["result"]):
            yield int(i), json.loads(str(r))


def dataset_from_table(table, rows_per_block: int):
    """A Ray Dataset of ``table`` in blocks of about ``rows_per_block`` rows (parallel reads)."""
    import math

    import ray

    n = table.num_rows
    per = math.ceil(n / max(1, math.ceil(n / rows_per_block)))
    return ray.data.from_arrow([table.slice(i, per) for i in range(0, n, per)])


def share_folder(folder: str):
    """Put a small local folder (a model, a backbone) into the Ray object store, so actors
    and workers on any node get it with ``local_folder``."""
    from pathlib import Path

    import ray

    root = Path(folder)
    return ray.put({p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()})


def local_folder(ref, kind: str) -> str:
    """A folder shared with ``share_folder``, unpacked once per node into the cache
    (``<cache>/<kind>/<digest>``); a plain string is returned as it is."""
    if isinstance(ref, str):
        return ref
    import hashlib

    import ray

    files = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + hashlib.sha256(files[rel]).digest())

    def unpack(tmp):
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)

    return str(cached(cache_dir() / kind / h.hexdigest()[:16], unpack))

"""Connecting to Ray, once for every job (a cluster's address, or a local start, quiet
unless -v); what the cluster is (its hosts, the autoscaler's node types), and the paths its
workers cannot reach; the user's error found inside what Ray raises."""

from __future__ import annotations

import importlib
import logging
import os
import threading

from raylib.errors import InputError
from raylib.io import storage

# set when every node mounts the same file system at the same paths (NFS, Lustre, a FUSE
# mount of the bucket): local paths are then shared, and a cluster of several hosts takes them
SHARED_FS_ENV = "LANDCOVER_SHARED_FS"


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


def autoscaler_node_types() -> list[str]:
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


def joins_cluster(address: str | None) -> bool:
    """Whether a run joins an existing cluster (``--ray-address``, or ``RAY_ADDRESS`` as
    ``ray job submit`` sets it) rather than starting a local Ray of its own."""
    given = address or os.environ.get("RAY_ADDRESS")
    return bool(given) and given != "local"


def cluster_hosts() -> list[str]:
    """The addresses of the cluster's live nodes (one per machine; Ray's own head counts)."""
    import ray

    return sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")})


def _local(uri: str) -> bool:
    return not storage.parse(uri).is_s3 and not uri.startswith(("http://", "https://", "/vsi"))


def check_shared_paths(address: str | None, paths: dict[str, str | list[str] | None]) -> None:
    """Before a run writes anything: on a cluster whose workers run on other machines (its
    nodes on several hosts, or an autoscaler that starts them), refuse a local path among
    ``paths`` (flag -> path or paths), which those workers cannot read or write, naming it.
    A run that starts its own Ray, or a cluster on one host, takes any path; so does one
    whose nodes all mount the same file system (``LANDCOVER_SHARED_FS=1``)."""
    local = {flag: [u for u in ([v] if isinstance(v, str) else v or []) if u and _local(u)] for flag, v in paths.items()}
    local = {flag: us for flag, us in local.items() if us}
    if not local or not joins_cluster(address) or os.environ.get(SHARED_FS_ENV, "") not in ("", "0"):
        return  # (no connection made: a run without local paths joins the cluster as before)
    ensure_ray(address)
    hosts = cluster_hosts()
    types = autoscaler_node_types()
    if len(hosts) < 2 and not types:
        return
    where = f"{len(hosts)} hosts ({', '.join(hosts[:4])}{', ...' if len(hosts) > 4 else ''})" if len(hosts) > 1 \
        else f"nodes the autoscaler starts ({', '.join(types)})"
    flag, uris = next(iter(local.items()))
    raise InputError(f"{flag} {uris[0]} is a path on this machine, but the Ray cluster's workers run on {where}: "
                     "they cannot read or write it.",
                     f"give {flag} an s3:// URI, or, when every node mounts the same file system at the same "
                     f"path, set {SHARED_FS_ENV}=1.")

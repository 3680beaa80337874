"""The Ray Data stages the jobs share (map, embed, change, accounts, export): the model actor
pool and its size, one task per item, tables as datasets, rows collected on the driver."""

from __future__ import annotations

import json
import os

from raylib.console import Progress
from raylib.pipelines.common.ray_session import ensure_ray


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

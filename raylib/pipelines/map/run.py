"""The map job: scenes -> tile grid -> Ray Data (windowed reads on CPU tasks -> model on an
actor pool) -> GeoParquet parts, streamed, + quick-looks.

Output layout at ``out``::

    part-00000.parquet ...   the map (GeoParquet 1.1), readable as one dataset
    _quicklook/<scene>.png   class map beside an RGB thumbnail, per scene
    _summary.json            counts per status and reason, error share, result, timing, settings
    _landcover.json          run marker with the job's fingerprint (written first)
    _SUCCESS                 written last, when the run passed: a map without it is incomplete

Every tile of the grid ends as exactly one row: a prediction (``status = ok``) or an error
row (``status = error``, ``reason`` code and message). A scene whose header cannot be read
has one row (no window, no geometry). Rows are written as parts while the run goes
(``parts``): a part under ``_tmp/`` is complete; the run moves them into place at the end.
A re-run of the same job (same settings, same scene versions) into the same ``out`` owes
only the parts that are absent, so a run killed at any point and re-run ends with the
rows of an uninterrupted run, none twice.

Incremental maps (``incremental: true``) keep each scene in parts of its own and a state
record ``_state.json`` (``formats.mapstate``), so later runs map only new or changed scenes; the
two modes are the output strategies of ``map.outputs``. ``map.bookkeeping`` holds the parts in
flight, ``map.predictor`` the model actor, ``map.quicklook`` the pictures.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from raylib.config import MapConfig
from raylib.console import Progress
from raylib.failpoints import failpoint
from raylib.formats import mapfile, parts
from raylib.formats.mapfile import MARKER, SUCCESS, SUMMARY
from raylib.io import storage
from raylib.models.default import default_model_dir
from raylib.models.model_dir import LandcoverModel
from raylib.pipelines.common.planning import (expand_scenes, job_fingerprint, plan_scenes, raise_if_nothing_mappable,
                                              resolve_grid)
from raylib.pipelines.common.stages import actor_stage, ensure_ray, pool_size, share_folder
from raylib.pipelines.map.bookkeeping import MapRun, StoreOutput, store_meta
from raylib.pipelines.map.outputs import output_for
from raylib.pipelines.map.predictor import Predictor
from raylib.pipelines.map.quicklook import write_quicklooks
from raylib.raster.reading import read_tiles

log = logging.getLogger(__name__)
# reasons that describe the data, not a failure of the run (not counted in the error share)
NOT_FAILURES = ("all_nodata", "mostly_fill")


def _model_uri(cfg: MapConfig) -> str:
    if cfg.model:
        return cfg.model

    return default_model_dir()


def run_map(cfg: MapConfig, argv: list[str] | None = None, predictor: type | None = None,
            store_only: bool = False) -> dict:
    """Map every scene in ``cfg.scenes`` into a GeoParquet dataset at ``cfg.out`` (with
    ``cfg.incremental``: only the scenes not yet mapped, or changed, since the last run;
    with ``cfg.embeddings``: and the embedding store under ``out/embeddings``).
    ``store_only`` writes the embedding store alone, at ``out`` (``landcover embed
    --scenes``). ``predictor`` replaces the model actor class (``Predictor``'s constructor
    and batch contract; the benchmark's simulated accelerator)."""
    t0 = time.time()
    output = output_for(cfg)
    # Cheap checks first (buckets reachable, prefixes hold scenes), before the default
    # model may take a minute to build.
    skipped: list[str] = []
    scenes = expand_scenes(cfg.scenes, skipped)
    storage.check_bucket(cfg.out)
    output.open()
    model_uri = _model_uri(cfg)
    manifest = LandcoverModel.read_manifest(model_uri)
    grid = resolve_grid(cfg, manifest)
    grid_dict = {"tile_size": grid.tile_size, "stride": grid.stride, "gsd": grid.gsd}
    store = None
    if cfg.embeddings or store_only:
        store = StoreOutput(store_meta(cfg, manifest, model_uri, grid_dict), only=store_only)
        output.check_store(store)
    uris, fingerprints = output.scenes(scenes, manifest.id, grid_dict)
    plans = plan_scenes(uris, cfg, manifest, grid, fingerprints)
    raise_if_nothing_mappable(plans)
    timings = {"planning": time.time() - t0}
    job = job_fingerprint(cfg, plans, manifest.id, grid_dict) + ("-store" if store_only else "")

    # The parts this job consists of, and which of them a killed earlier run already wrote.
    chunks, resumed = output.chunks(plans, job)
    names = {c.name for c in chunks}
    done = parts.existing(cfg.out) if resumed else {}
    done = {n: u for n, u in done.items() if n in names}
    parts.remove_tmp_debris(cfg.out, keep=set(done))
    storage.write_bytes(storage.join(cfg.out, MARKER), json.dumps(
        {"job": job, "kind": "map", "incremental": cfg.incremental, "model_id": manifest.id,
         "started": time.time()}).encode())
    failpoint("planned")

    extra = {"grid": grid_dict, "crs_note": "geometry in OGC:CRS84; scene_crs holds each scene's native CRS"}
    run = MapRun(cfg, plans, chunks, grid, manifest, extra, store)
    for name, uri in done.items():  # resumed parts: counted and drawn, not recomputed
        cols = ["scene", "grid_row", "grid_col", "status", "reason"] + ([] if store_only else ["label", "label_index"])
        run.account(mapfile.read_part(uri, cols))
    pending = [k for k, c in enumerate(chunks) if c.name not in done]
    to_read, unread = [], []
    for k in pending:  # buffers are opened when rows arrive: the driver holds only chunks in flight
        if any(not run.plans[s].failure for s, _, _ in run.scenes_in(chunks[k].lo, chunks[k].hi)):
            to_read.append(k)
        else:  # only failed scenes' rows: nothing to read
            unread.append(k)
    if not store:  # (a store part needs the embedding size, known once rows come back)
        for k in unread:
            run.open_chunk(k)
            run.write(k)
    units = run.read_units(to_read)
    t1 = time.time()
    if units:
        timings["first_row"] = _stream(cfg, run, units, model_uri, predictor or Predictor) - t1
    if store:
        for k in unread:
            run.open_chunk(k)
            run.write(k)
    timings["pipeline"] = time.time() - t1
    missing = [chunks[k].name for k in pending if chunks[k].name not in run.written]
    if missing:  # every row must have come back
        raise RuntimeError(f"{len(missing)} parts never got all their rows from the pipeline ({missing[:3]}); "
                           "nothing was marked complete")

    order = [c.name for c in chunks]
    parts.commit(cfg.out, order, after_each=lambda _: failpoint("part_moved"))
    storage.delete_prefix(storage.as_prefix(storage.join(cfg.out, parts.TMP)))
    t1 = time.time()
    quicklooks = write_quicklooks(cfg, run, manifest, output.quicklook_tag) if cfg.quicklook and not store_only else {}
    timings["quicklooks"] = time.time() - t1
    summary = _summary(cfg, run, plans, chunks, done, skipped, quicklooks, model_uri, manifest, grid_dict, store,
                       timings, time.time() - t0)
    summary.update(output.finish(plans, run, quicklooks, manifest.id, grid_dict, store))
    storage.write_bytes(storage.join(cfg.out, SUMMARY), json.dumps(summary, indent=2).encode())
    failpoint("summary_written")
    if summary["result"] == "ok":
        storage.write_bytes(storage.join(cfg.out, SUCCESS), b"")
    return summary


def _summary(cfg: MapConfig, run, plans, chunks, done: dict, skipped: list[str], quicklooks: dict, model_uri: str,
             manifest, grid_dict: dict, store, timings: dict, seconds: float) -> dict:
    """``_summary.json``: counts per status and reason, the verdict, timings, the settings."""
    n_tiles = sum(p.n_tiles for p in plans)
    failures = sum(n for r, n in run.reasons.items() if r not in NOT_FAILURES)
    share = failures / max(1, n_tiles)
    passed = share <= cfg.max_error_share
    return {
        "out": cfg.out, "model": model_uri, "model_id": manifest.id, "scenes": len(plans), "tiles": n_tiles,
        "counts": dict(sorted(run.counts.items())), "error_reasons": dict(sorted(run.reasons.items())),
        "scenes_failed": {p.uri: p.failure[0] for p in plans if p.failure},
        "skipped_objects": len(skipped), "skipped_examples": skipped[:10],
        "error_share": round(share, 6), "max_error_share": cfg.max_error_share,
        "result": "ok" if passed else "failed",
        "failure": None if passed else (
            f"{failures} of {n_tiles} tiles failed ({share:.1%}; all_nodata not counted), more than "
            f"max_error_share {cfg.max_error_share:.1%}; see 'error_reasons' and the error rows"),
        "parts": len(chunks), "parts_resumed": len(done), "parts_written": len(run.written),
        "tiles_computed": int(sum(c.size for c in chunks if c.name not in done)), "read_retries": run.read_retries,
        "scaling": _count([p.radiometry["scaling"] for p in plans if p.radiometry]),
        "radiometry_examples": {p.uri: p.radiometry for p in plans[:5] if p.radiometry},
        "quicklooks": list(quicklooks.values()), "grid": grid_dict, "seconds": round(seconds, 2),
        "embeddings": store.root(cfg.out) if store else None,
        "tiles_per_second": round(n_tiles / max(seconds, 1e-9), 2),
        "timings": {k: round(v, 2) for k, v in timings.items()}, "config": cfg.model_dump(),
    }


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _stream(cfg: MapConfig, run: MapRun, units: list[dict], model_uri: str, predictor: type) -> float:
    """The Ray Data pipeline over ``units``; each chunk's part is written as soon as its
    last row comes back, so the driver holds only the chunks in flight. Returns the time
    the first rows came back."""
    import pyarrow as pa

    ensure_ray(cfg.ray_address)
    table = pa.table({"spec": pa.array([u["spec"] for u in units]).dictionary_encode(),
                      **{k: pa.array([u[k] for u in units], pa.int64()) for k in ("base", "lo", "hi")}})
    import ray

    per = max(1, cfg.read_units_per_task)
    ds = ray.data.from_arrow([table.slice(i, per) for i in range(0, table.num_rows, per)])
    ds = ds.map_batches(read_tiles, fn_kwargs={"read_timeout": cfg.read_timeout, "read_retries": cfg.read_retries},
                        batch_size=per, batch_format="numpy", num_cpus=cfg.read_cpus)
    actors = pool_size(cfg.actors, cfg.num_gpus)
    local_model = not storage.parse(model_uri).is_s3
    model_ref = share_folder(model_uri) if local_model else model_uri
    ds = actor_stage(ds, predictor, {"model_ref": model_ref, "torch_threads": cfg.torch_threads, "actors": actors,
                                     "tta": cfg.tta, "batch_size": cfg.batch_size,
                                     "embeddings": run.store is not None},
                     actors=actors, batch_size=None, actor_cpus=cfg.actor_cpus, num_gpus=cfg.num_gpus)
    log.info("mapping %d read units", len(units))
    first = None
    deferred: list[int] = []
    progress = Progress("embed" if run.store is not None and run.store.only else "map", sum(u["hi"] - u["lo"] for u in units))
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        first = first or time.time()
        idx = batch["idx"].astype(np.int64)
        progress.update(len(idx))
        ks = np.searchsorted(run.chunk_lo, idx, side="right") - 1
        for k in np.unique(ks):
            m = ks == k
            buf = run.buffers.get(int(k))
            if buf is None:
                if run.chunks[int(k)].name in run.written:
                    raise RuntimeError(f"a tile of {run.chunks[int(k)].name} came back after its part was written")
                buf = run.open_chunk(int(k))
            if run.store and run.dim is None and batch["embedding"].shape[1]:
                run.dim = int(batch["embedding"].shape[1])
            buf.put(idx[m], probs=batch["probs"][m], fill=batch["fill_fraction"][m], status=batch["status"][m],
                    error=batch["error"][m], **{k: batch[k][m] for k in parts.STAT_COLUMNS if k in batch},
                    **({"embedding": batch["embedding"][m]} if run.store else {}))
            run.read_retries += int(batch["retries"][m].sum())
            if buf.complete:
                if run.store and run.dim is None:  # its store part waits for the embedding size
                    deferred.append(int(k))
                else:
                    run.write(int(k))
    for k in deferred:
        run.write(k)
    progress.close()
    return first or time.time()

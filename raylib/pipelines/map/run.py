"""The map job: scenes -> Ray Data (plan tasks -> read tasks -> model on an actor pool) ->
GeoParquet parts sized by bytes, streamed, + quick-looks.

Output layout at ``out``::

    part-00000.parquet ...   the map (GeoParquet 1.1), readable as one dataset
    _quicklook/<scene>.png   class map beside an RGB thumbnail, per scene
    _summary.json            counts per status and reason, error share, result, timings, settings
    _adaptation/             the scenes' centres (``map.adaptation``: the first pass of an adapting run)
    _landcover.json          run marker with the job's fingerprint (written first)
    _SUCCESS                 written last, when the run passed: a map without it is incomplete

Every tile of the grid ends as exactly one row: a prediction (``status = ok``) or an error
row (``status = error``, ``reason`` code and message). A scene whose header cannot be read
has one row (no window, no geometry).

The driver does not plan: it lists the scenes, puts the list in the object store and
starts the pipeline, whose plan tasks read the scenes' headers and scaling statistics and
emit read units lazily (``map.source``), so the first tiles reach the model while later
scenes are still being planned, and the driver's memory does not grow with the number of
scenes. Rows come back to the driver (``map.ingest``), which writes them into parts sized by
bytes with spatially sorted row groups (``formats.partwriter``); a complete part is under
``_tmp/`` and records which tiles it holds, and the run moves the parts into place at the
end. A re-run of the same job into the same ``out`` reads those records and maps only the
tiles no part holds, so a run killed at any point and re-run ends with the rows of an
uninterrupted run, none twice.

Incremental maps (``incremental: true``) keep each scene in parts of its own and a state
record (``formats.mapstate``), so later runs map only new or changed scenes; the two modes are
the output strategies of ``map.outputs``.
"""

from __future__ import annotations

import logging
import threading
import time

from raylib import console
from raylib.config import MapConfig
from raylib.console import Progress
from raylib.errors import InputError
from raylib.failpoints import failpoint
from raylib.formats import map_folder
from raylib.io import storage
from raylib.models.default import default_model_dir
from raylib.models.manifest import ModelManifest
from raylib.pipelines.common import centres as centres_of
from raylib.pipelines.common.planning import (OUTSIDE_AOI, display_by_name, expand_scenes, failure_error,
                                              job_fingerprint, plan_scene, resolve_grid, scene_channels)
from raylib.pipelines.common.run_tail import finish_run
from raylib.pipelines.common.sizing import (actor_concurrency, block_bytes, block_tiles, first_tiles, model_batch,
                                            read_slots)
from raylib.pipelines.common.folder_shipping import share_folder
from raylib.pipelines.common.gpu_probe import check_gpus, GpuBuildWatch
from raylib.pipelines.common.ray_session import check_shared_paths, ensure_ray, landcover_cause
from raylib.pipelines.common.stages import actor_stage, pool_size
from raylib.pipelines.map import adaptation, composite
from raylib.pipelines.map.driver_head import DriverHead
from raylib.pipelines.map.ingest import Ingest
from raylib.pipelines.map.outputs import output_for
from raylib.pipelines.map.quicklook import Quicklooks
from raylib.pipelines.map.source import all_done, plan_scenes, scene_spans
from raylib.pipelines.map.store import StoreOutput, store_meta
from raylib.raster.reading import PixelFn

log = logging.getLogger(__name__)
# reasons that describe the data, not a failure of the run (not counted in the error share)
NOT_FAILURES = ("all_nodata", "mostly_fill", "mostly_outside", "cloudy", OUTSIDE_AOI)  # data, not failures
SPREAD_SCENES = 64  # scenes the driver plans to spread over read tasks (more: the scenes fill the cores themselves)


def _model_uri(cfg: MapConfig) -> str:
    return cfg.model or default_model_dir()


class _RayStarter:
    """Starts Ray in a thread at once: its seconds of start-up overlap the driver's model
    lookup, output checks and the first scene's planning. The thread then stays parked for
    the life of the process: a local cluster's processes are started with a parent-death
    signal, which Linux sends when the *thread* that started them ends."""

    def __init__(self, address: str | None):
        self.error: BaseException | None = None
        self.ready = threading.Event()
        if _ray_ready():
            self.ready.set()
            return
        threading.Thread(target=self._start, args=(address,), daemon=True, name="ray-start").start()

    def _start(self, address):
        try:
            ensure_ray(address)
        except BaseException as exc:  # re-raised by wait()
            self.error = exc
        self.ready.set()
        threading.Event().wait()  # parked (see the class docstring)

    def wait(self) -> None:
        self.ready.wait()
        if self.error is not None:
            raise self.error


def _ray_ready() -> bool:
    import ray

    return ray.is_initialized()


def run_map(cfg: MapConfig, argv: list[str] | None = None, predictor: type | None = None,
            store_only: bool = False) -> dict:
    """Map every scene in ``cfg.scenes`` (or every item a search of ``cfg.stac`` selects)
    into a GeoParquet dataset at ``cfg.out`` (with
    ``cfg.incremental``: only the scenes not yet mapped, or changed, since the last run;
    with ``cfg.store``: and the embedding store under ``out/_embeddings``).
    ``store_only`` writes the embedding store alone, at ``out`` (``landcover embed
    --scenes``). ``predictor`` replaces the model actor class (``Predictor``'s constructor
    and batch contract; the benchmark's simulated accelerator)."""
    t0 = console.take_started() or time.time()
    t_run = time.time()
    # Cheap checks first (buckets reachable, prefixes hold scenes), before the default
    # model may take a minute to build.
    skipped: list[str] = []
    scenes = expand_scenes(cfg.scenes, skipped) if cfg.scenes else None
    # joining a cluster of several machines: paths its workers cannot reach are refused before anything is written
    check_shared_paths(cfg.ray_address, {"--out": cfg.out, "--scenes": scenes})
    if cfg.aoi:  # read once here: a bad AOI is one clear error, not an error row per scene
        from raylib.raster import aoi

        aoi.load(cfg.aoi)
    storage.check_bucket(cfg.out)
    model_uri = _model_uri(cfg)
    from raylib.models.landcover_model import LandcoverModel

    manifest = LandcoverModel.read_manifest(model_uri)
    adapting = not store_only and centres_of.resolve(cfg.adapt, model_uri, manifest)
    grid = resolve_grid(cfg, manifest)
    grid_dict = grid.as_dict()
    store = StoreOutput(store_meta(cfg, manifest, model_uri, grid_dict), only=store_only) \
        if (cfg.store or store_only) else None
    output = output_for(cfg, store)
    output.open()
    if store:
        output.check_store()
    if scenes is None:  # --stac: the items' JSON, written under out (so after its checks)
        from raylib.pipelines.map.stac_input import stac_scenes

        scenes = stac_scenes(cfg)
    uris, fingerprints = output.scenes(scenes, manifest.id, grid_dict)
    head = first = None
    pixels = pixel_fn(model_uri, manifest) if uris else None  # loaded once: the driver's child and the read tasks
    # an adapting run maps no tile of a scene before its centre is known, but a display product's (told by its
    # name) keeps the head as trained
    centre_first = adapting and not (cfg.adapt is None and display_by_name(uris[0], cfg, manifest)) if uris else False
    if uris and not _ray_ready() and not centre_first:  # (a warm session's pipeline starts at once: no child)
        # before Ray's start thread: the driver is one thread here, so the child can be forked
        head = _driver_head(cfg, uris[0], manifest, grid, model_uri, predictor, store is not None, pixels)
    ray_start = _RayStarter(cfg.ray_address) if uris else None
    if uris:  # the first scene planned here, while Ray starts: the settings' errors surface at once
        first = plan_scene(uris[0], cfg, manifest, grid)
        if first.failure and head:  # the pipeline gives its records
            head.stop()
            head = None
        if first.failure and len(uris) == 1 and not cfg.incremental:
            raise failure_error(first)
    job = job_fingerprint(cfg, uris, fingerprints, manifest.id, grid_dict) + ("-store" if store_only else "")
    output.prepare(job)
    done = output.done()
    timings = {"setup": time.time() - t_run}

    extra = {"grid": grid_dict, "crs_note": "geometry in OGC:CRS84; scene_crs holds each scene's native CRS"}
    ingest = Ingest(cfg, grid, manifest, output.writer_for, done={u: d["ranges"] for u, d in done.items()},
                    store=store is not None, store_only=store_only)
    output.start({"classes": manifest.classes, "model_id": manifest.id, **extra}, ingest.record)
    quicklooks = None
    if cfg.quicklook and not store_only:
        rgb = manifest.bands.get("rgb") or [0, 1, 2]  # where R, G, B are among the model's bands
        quicklooks = Quicklooks(cfg.out, manifest.classes, manifest.id, rgb, cfg.read_timeout, cfg.read_retries,
                                output.quicklook_tag, scene_channels(cfg, manifest), grid, cfg.fill_value)

    def scene_done(sc):
        output.scene_done(sc)
        if quicklooks and sc.look is not None:
            quicklooks.submit(sc.meta, sc.look)

    ingest.on_scene_done = scene_done
    ingest.earlier_rows = output.earlier_rows if quicklooks else None
    todo = [u for u in uris if not all_done(done.get(u))]
    if head and uris[0] in done:  # a resumed scene 0: the pipeline maps what is left of it
        head.stop()
        head = None
    gpu_build = None
    if todo:
        while not ray_start.ready.wait(0.05):  # the driver's first rows may be back before Ray is up
            for rows in _head_rows(head):
                ingest.add(rows)
        ray_start.wait()
        timings["ray_ready"] = time.time() - t0
        try:  # a GPU request no node can meet is refused now, not waited for
            check_gpus(cfg.num_gpus)
        except Exception:
            if head:
                head.stop()
            raise
        if cfg.num_gpus:  # (asked now, answered while the map runs)
            gpu_build = GpuBuildWatch(f"--num-gpus {cfg.num_gpus:g}")
    map_folder.mark(cfg.out, job, "map", incremental=cfg.incremental, model_id=manifest.id)
    centres = None
    adapted = {"method": "scene-centre", "scenes": 0, "sampled": 0, "reused": 0} if adapting else {"method": "none"}
    if todo and adapting:  # the first pass: each scene's centre, stored before any of its tiles is mapped
        t1 = time.time()
        centres, adapted = adaptation.scene_centres(
            cfg, uris, set(todo), fingerprints, manifest, grid,
            lambda ds: _model_stage(ds, cfg, model_uri, predictor, embeddings=True, every_shape=False),
            first.pixel_type if first is not None else "float32")
        timings["adaptation"] = time.time() - t1
        failpoint("adapted")
    failpoint("planned")  # (the name it had when the driver planned: the pipeline starts now)
    t1 = time.time()
    stats = []
    if todo:
        stats = _stream(cfg, ingest, uris, done, model_uri, manifest, grid, predictor, head, first, pixels, centres)
        timings["first_row_s"] = ingest.first_row - t0
    output.close()
    ingest.check_complete(uris, done)
    timings["pipeline"] = time.time() - t1
    scenes_seen = ingest.scenes_with(done)
    _raise_if_nothing_mappable(cfg, uris, scenes_seen)

    order = output.part_order()
    map_folder.commit(cfg.out, order, after_each=lambda _: failpoint("part_moved"))
    t1 = time.time()
    pictures = quicklooks.result() if quicklooks else {}
    timings["quicklooks_wait"] = time.time() - t1
    summary = _summary(cfg, ingest, output, scenes_seen, uris, skipped, pictures, model_uri, manifest, grid_dict,
                       store, timings, time.time() - t0)
    summary["tiles_on_driver"] = head.tiles if head and head.taken else 0
    summary["adaptation"] = adapted
    summary["spectral_prior"] = bool(cfg.spectral_prior and manifest.inference.get("spectral"))
    summary["ray_data_stats"] = stats
    if gpu_build:
        gpu_build.into(summary)
    if cfg.composite:
        t1 = time.time()
        summary["composite"] = composite.write(cfg.out, cfg.composite, manifest.classes, manifest.id, extra,
                                               cfg.unknown_below)
        summary["timings"]["composite"] = round(time.time() - t1, 2)
    summary.update(output.finish(ingest, scenes_seen, pictures, manifest.id, grid_dict))
    extra = {k: v for k, v in (("store", summary.get("embeddings")),
                               ("composite", (summary.get("composite") or {}).get("path"))) if v and not store_only}
    return finish_run(cfg.out, summary, "store" if store_only else "map", cfg.cog and not store_only, extra,
                      after_summary=lambda: failpoint("summary_written"))


def _raise_if_nothing_mappable(cfg: MapConfig, uris: list[str], scenes: dict) -> None:
    """When no scene at all can be mapped, that is one clear error, and the output folder
    is left as it was before (nothing written)."""
    if not scenes or any(s["failed"] is None for s in scenes.values()):
        return
    map_folder.start_over(cfg.out)
    failed = [(u, scenes[u]) for u in uris if u in scenes]
    if len(failed) == 1:
        raise InputError(failed[0][1]["message"] or failed[0][1]["failed"])
    if all(s["failed"] == OUTSIDE_AOI for _, s in failed):
        raise InputError(f"The AOI {cfg.aoi} meets none of the {len(failed)} scenes.",
                         "check the AOI's coordinates (GeoJSON is longitude, latitude) and the scenes.")
    shown = " | ".join(f"{u}: {s['failed']}" for u, s in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    raise InputError(f"None of the {len(failed)} scenes can be mapped: {shown}{more}.",
                     "check the scenes and the bands/fill_value settings.")


def _summary(cfg: MapConfig, ingest: Ingest, output, scenes: dict, uris: list[str], skipped: list[str],
             quicklooks: dict, model_uri: str, manifest: ModelManifest, grid_dict: dict, store, timings: dict,
             seconds: float) -> dict:
    """``_summary.json``: counts per status and reason, the verdict, timings, the settings."""
    counts, reasons = dict(ingest.counts), dict(ingest.reasons)
    for c in output.resumed.values():
        for k, v in c["counts"].items():
            counts[k] = counts.get(k, 0) + v
        for k, v in c["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    n_tiles = sum(s["tiles"] for s in scenes.values())
    failures = sum(n for r, n in reasons.items() if r not in NOT_FAILURES)
    share = failures / max(1, n_tiles)
    passed = share <= cfg.max_error_share
    shown = [quicklooks[u] for u in uris if u in quicklooks][:20]
    return {
        "out": cfg.out, "model": model_uri, "model_id": manifest.id, "scenes": len(uris), "tiles": n_tiles,
        "counts": dict(sorted(counts.items())), "error_reasons": dict(sorted(reasons.items())),
        "scenes_failed": {u: s["failed"] for u, s in scenes.items() if s["failed"]},
        "skipped_objects": len(skipped), "skipped_examples": skipped[:10],
        "error_share": round(share, 6), "max_error_share": cfg.max_error_share,
        "result": "ok" if passed else "failed",
        "failure": None if passed else (
            f"{failures} of {n_tiles} tiles failed ({share:.1%}; {', '.join(NOT_FAILURES)} not counted), "
            f"more than max_error_share {cfg.max_error_share:.1%}; see 'error_reasons' and the error rows"),
        "parts": len(output.resumed) + len(output.written), "parts_resumed": len(output.resumed),
        "parts_written": len(output.written), "tiles_computed": ingest.rows, "read_retries": ingest.read_retries,
        "scaling": dict(sorted(ingest.scaling.items())), "radiometry_examples": ingest.radiometry_examples,
        "radiometry_warnings": ingest.radiometry_warnings,
        "quicklooks": shown, "quicklooks_written": len(quicklooks), "grid": grid_dict, "seconds": round(seconds, 2),
        "embeddings": output.store_root() if store else None,
        "tiles_per_second": round(n_tiles / max(seconds, 1e-9), 2),
        "timings": {k: round(v, 2) for k, v in timings.items()}, "config": cfg.model_dump(),
    }


def pixel_fn(model_uri: str, manifest: ModelManifest) -> PixelFn | None:
    """The model's pixel classifier (``models.pixel_head``) as the read tasks run it, or None
    for a model without one."""
    spec = (manifest.head or {}).get("pixels")
    if not spec:
        return None
    from raylib.models.model_dir import local_model_folder
    from raylib.models.pixel_head import PixelHead

    head = PixelHead.load(local_model_folder(model_uri), spec)
    return PixelFn(head.tile_proba, head.width, head.n_bands, head.stride, head.window)


def _driver_head(cfg: MapConfig, uri: str, manifest: ModelManifest, grid, model_uri: str, predictor: type | None,
                 store: bool, pixels: PixelFn | None) -> DriverHead | None:
    """Scene 0's first tiles (``sizing.first_tiles``) mapped beside the driver while Ray starts
    (``map.driver_head``: a child process), unless asked not to."""
    if not cfg.driver_first_block:
        return None
    return DriverHead(uri, cfg, manifest, grid, len(manifest.bands["channels"]), predictor, model_uri, store, pixels)


def _head_rows(head: DriverHead | None) -> list[dict]:
    """The first rows mapped beside the driver, once, when they are back."""
    rows = head.take() if head else None
    return [] if rows is None else [rows]


def _stream(cfg: MapConfig, ingest: Ingest, uris: list[str], done: dict, model_uri: str, manifest: ModelManifest,
            grid, predictor: type | None, head: DriverHead | None = None, first=None,
            pixels: PixelFn | None = None, centres: dict | None = None) -> list[str]:
    """The Ray Data pipeline: scene numbers -> plan-and-read tasks (a few scenes each, the
    read tasks of ``SceneDatasource``) -> the model actors -> the driver (``ingest``), block
    by block. Returns Ray Data's account of the run, line by line (``Dataset.stats()``: each
    stage's tasks, wall and CPU seconds, rows; ``_summary.json`` ``ray_data_stats``), or
    nothing where Ray Data cannot give it."""
    import pyarrow as pa
    import ray

    if head is not None:  # its rows count only when back before the pipeline starts; else the pipeline maps them
        for rows in _head_rows(head):
            ingest.add(rows)
        head.stop()
        head = head if head.taken else None
    uris_ref = ray.put(pa.array(uris, pa.string()))
    done_ref = ray.put({u: d for u, d in done.items()}) if done else None
    n = len(uris)
    channels = len(manifest.bands["channels"])
    cpus = ray.cluster_resources().get("CPU", 1)
    actors = pool_size(cfg.actors, cfg.num_gpus)
    # one scene per task unless there are many (small scenes share a task); fewer scenes than read slots:
    # each scene's tiles spread over several read tasks, so that one scene is read on every core
    per = cfg.scenes_per_task or max(1, min(8, n // max(1, 16 * int(cpus))))
    known = {0: first} if first is not None else {}  # scene 0: planned by the driver
    head_tiles = head.tiles if head else first_tiles(cfg)  # scene 0's first block (its next: a read unit)
    spread = _spread(cfg, uris, done, manifest, grid, known, read_slots(cfg, cpus, actors),
                     head_tiles + cfg.read_batch_size) if per == 1 else None
    # the type tiles cross to the model in: one per job (the first scene's), as Ray Data joins blocks
    pixel_type = first.pixel_type if first is not None else "float32"
    from raylib.pipelines.map.scene_datasource import SceneDatasource

    args_ref = ray.put({"uris_ref": uris_ref, "done_ref": done_ref, "cfg": cfg, "manifest": manifest, "grid": grid,
                        "channels": channels, "pixel_fn": pixels, "known": known or None, "pixel_type": pixel_type})
    scenes = SceneDatasource(n, per, head_tiles, args_ref, on_driver=head is not None, ramp=cfg.read_batch_size,
                             spread=spread)
    ds = ray.data.read_datasource(scenes, override_num_blocks=max(1, len(scenes.blocks)), num_cpus=cfg.read_cpus)
    ds.context.target_max_block_size = block_bytes(cfg, channels, grid.tile_size, pixel_type)
    ds.context.raise_original_map_exception = True  # a user's error from an actor arrives as itself (landcover_cause)
    ds = _model_stage(ds, cfg, model_uri, predictor, ingest.store, centres)
    log.info("mapping %d scenes", n)
    # the driver's first rows (back before Ray was up) count, but not in the rate
    progress = Progress("embed" if ingest.store_only else "map", ingest.tiles_known, initial=ingest.rows)

    def add(batch):
        rows = ingest.rows
        ingest.add(batch)
        progress.grow(ingest.tiles_known)
        progress.update(ingest.rows - rows)

    try:
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            add(batch)
    except Exception as exc:  # a user's error raised in a worker (a batch too big for the GPU): its one line
        cause = landcover_cause(exc)
        if cause is None:
            raise
        raise cause from None
    ingest.finish()
    progress.close()
    try:
        return [ln for ln in ds.stats().splitlines() if ln.strip()]
    except Exception as exc:  # an account of the run, not the run: never its failure
        log.warning("Ray Data's statistics of the run: %s", exc)
        return []


def _model_stage(ds, cfg: MapConfig, model_uri: str, predictor: type | None, embeddings: bool,
                 centres: dict | None = None, every_shape: bool = True):
    """``ds`` through the model actors (``Predictor``, or the ``predictor`` that replaces it)."""
    import ray

    from raylib.pipelines.map.predictor import Predictor

    model_ref = share_folder(model_uri) if not storage.parse(model_uri).is_s3 else model_uri
    actors = pool_size(cfg.actors, cfg.num_gpus)
    batch = model_batch(cfg.batch_size, cfg.num_gpus)
    kwargs = {"model_ref": model_ref, "torch_threads": cfg.torch_threads, "actors": actors, "tta": cfg.tta,
              "batch_size": batch, "embeddings": embeddings, "precision": cfg.precision}
    if centres:
        kwargs["centres"] = ray.put(centres)
    if not cfg.spectral_prior:
        kwargs["spectral"] = False
    if not every_shape:  # (a first pass: the warm-up's largest shape alone)
        kwargs["every_shape"] = False
    return actor_stage(ds, predictor or Predictor, kwargs,
                       # GPU actors: Ray Data joins blocks up to a model batch (CPU ones take each block as it comes)
                       actors=actors, batch_size=max(block_tiles(cfg), batch) if cfg.num_gpus else None,
                       actor_cpus=cfg.actor_cpus, num_gpus=cfg.num_gpus, concurrency=actor_concurrency(cfg))


def _spread(cfg: MapConfig, uris: list[str], done: dict, manifest: ModelManifest, grid, known: dict, slots: int,
            skip0: int) -> dict | None:
    """Fewer scenes than read slots (and at most ``SPREAD_SCENES``): each scene's tiles in
    spans for several read tasks at once (``source.scene_spans``), so that the reads of one
    scene use every core. The scenes' plans are made here (in threads; scene 0's is
    ``known``) and passed to the read tasks in ``known``; a scene that cannot be mapped is
    not spread. ``skip0``: the tiles of scene 0 its first blocks hold."""
    n = len(uris)
    if n >= slots or n > SPREAD_SCENES:
        return None
    todo = [s for s in range(n) if s not in known and not all_done(done.get(uris[s]))]
    known.update(zip(todo, plan_scenes([uris[s] for s in todo], todo, cfg, manifest, grid)))
    parts = 2 * -(-slots // n)  # twice the slots: a task that starts late or reads slowly is caught up by the others
    return {s: scene_spans(skip0 if s == 0 else 0, plan.n_tiles, parts, cfg.read_batch_size)
            for s, plan in known.items() if not plan.failure and not all_done(done.get(uris[s]))}

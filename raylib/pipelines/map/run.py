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
record ``_state.json`` (``mapstate``), so later runs map only new or changed scenes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from raylib.config import MapConfig
from raylib.console import Progress
from raylib.errors import ConfigError
from raylib.eval import reports
from raylib.failpoints import failpoint
from raylib.formats import embstore, mapfile, parts
from raylib.io import resilience, storage
from raylib.models.model_dir import LandcoverModel, ModelManifest
from raylib.pipelines.common.planning import (ScenePlan, _raise_if_nothing_mappable, expand_scenes, job_fingerprint,
                                              plan_scenes, resolve_grid)
from raylib.pipelines.common.stages import (actor_stage, ensure_ray, local_folder, pool_size, set_torch_threads,
                                            share_folder)
from raylib.raster import tiling
from raylib.raster.reading import model_batches, read_tiles, rows_out

log = logging.getLogger(__name__)
MARKER, SUCCESS, SUMMARY = "_landcover.json", "_SUCCESS", "_summary.json"
EMBEDDINGS = "embeddings"  # the embedding store beside a map (landcover map --embeddings)
# reasons that describe the data, not a failure of the run (not counted in the error share)
NOT_FAILURES = ("all_nodata", "mostly_fill")


# --------------------------------------------------------------------------- planning


# --------------------------------------------------------------------------- Ray stages


class Predictor:
    """Actor: loads the model once, predicts class probabilities for batches of tiles."""

    def __init__(self, model_ref, torch_threads: int | None, actors: int = 1, device: str = "auto",
                 tta: bool | None = None, batch_size: int = 64, embeddings: bool = False):
        set_torch_threads(torch_threads, actors)
        uri = local_folder(model_ref, "ray-models")
        self.model = LandcoverModel.load(uri, device=device, tta=tta)
        self.k = len(self.model.classes)
        self.batch_size = batch_size
        self.embeddings = embeddings

    def __call__(self, batch: dict) -> dict:
        """One read block (up to ``read_units_per_task * read_batch_size`` tiles) in, its
        rows out; the model sees the block's readable tiles in batches of ``batch_size``."""
        n = len(batch["idx"])
        probs = np.full((n, self.k), np.nan, np.float32)
        ood = np.full(n, np.nan, np.float32)
        emb = None
        stat_cols = ("band_mean", "band_std", "ndvi", "ndwi") if self.model.needs_statistics else ()
        for sel, x in model_batches(batch, self.batch_size):
            stats = {k: batch[k][sel] for k in stat_cols} or None
            if self.embeddings:
                probs[sel], ood[sel], e = self.model.predict(x, with_embeddings=True, stats=stats)
                if emb is None:
                    emb = np.zeros((n, e.shape[1]), np.float16)
                emb[sel] = e
            else:
                probs[sel], ood[sel] = self.model.predict(x, stats=stats)
        out = {**rows_out(batch, probs), "ood": ood}
        if self.embeddings:
            out["embedding"] = emb if emb is not None else np.zeros((n, 0), np.float16)
        return out


# --------------------------------------------------------------------------- the job


def _model_uri(cfg: MapConfig) -> str:
    if cfg.model:
        return cfg.model
    from raylib.models.default import default_model_dir

    return default_model_dir()


class _Run:
    """Book-keeping of one run: the chunks it owes, their buffers, counts and label grids."""

    def __init__(self, cfg: MapConfig, plans: list[ScenePlan], chunks: list[parts.Chunk], grid: tiling.GridSpec,
                 manifest: ModelManifest, extra: dict, store: "StoreOutput | None" = None):
        self.cfg, self.plans, self.chunks, self.grid, self.manifest, self.extra = cfg, plans, chunks, grid, manifest, extra
        self.store = store
        self.dim: int | None = None  # embedding size, known from the first rows back (store runs)
        self.starts = np.array([p.start for p in plans], np.int64)
        self.chunk_lo = np.array([c.lo for c in chunks], np.int64)
        self.buffers: dict[int, parts.Buffer] = {}
        self.counts: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        self.scene_counts: dict[str, dict[str, int]] = {}
        self.scene_index = {p.uri: i for i, p in enumerate(plans)}
        self.labels = {i: np.full((len(p.layout.row_offs), len(p.layout.col_offs)), -1, np.int16)
                       for i, p in enumerate(plans) if p.layout is not None} if cfg.quicklook else {}
        self.written: set[str] = set()
        self.read_retries = 0

    def scenes_in(self, lo: int, hi: int):
        """(scene index, lo, hi) pieces of the global range ``lo..hi``."""
        s = int(np.searchsorted(self.starts, lo, side="right") - 1)
        while s < len(self.plans) and self.plans[s].start < hi:
            p = self.plans[s]
            a, b = max(lo, p.start), min(hi, p.start + p.n_tiles)
            if a < b:
                yield s, a, b
            s += 1

    def account(self, table) -> None:
        """Counts, reasons and quick-look labels of one part's rows."""
        st = table["status"].to_numpy(zero_copy_only=False)
        rs = table["reason"].to_numpy(zero_copy_only=False)
        for v, n in zip(*np.unique(st.astype(str), return_counts=True)):
            self.counts[v] = self.counts.get(v, 0) + int(n)
        for v, n in zip(*np.unique(rs[st != "ok"].astype(str), return_counts=True)):
            self.reasons[v] = self.reasons.get(v, 0) + int(n)
        sc = table["scene"].to_numpy(zero_copy_only=False)
        for uri in np.unique(sc):
            per = self.scene_counts.setdefault(uri, {})
            for v, n in zip(*np.unique(st[sc == uri].astype(str), return_counts=True)):
                per[v] = per.get(v, 0) + int(n)
        if self.labels:
            gr, gc = table["grid_row"].to_numpy(), table["grid_col"].to_numpy()
            li = table["label_index"].fill_null(-1).to_numpy().copy()
            li[np.asarray(table["label"].to_pylist(), dtype=object) == mapfile.UNKNOWN] = reports.UNKNOWN_INDEX
            for uri in np.unique(sc):
                i = self.scene_index.get(uri)
                m = (sc == uri) & (gr >= 0)
                if i in self.labels and m.any():
                    self.labels[i][gr[m], gc[m]] = li[m]

    def open_chunk(self, k: int) -> parts.Buffer:
        """A buffer for chunk ``k``, with the rows of its failed scenes filled in already."""
        buf = self.buffers[k] = parts.Buffer(self.chunks[k], len(self.manifest.classes),
                                             embedding_dim=self.dim if self.store else None)
        for s, a, b in self.scenes_in(buf.chunk.lo, buf.chunk.hi):
            p = self.plans[s]
            if p.failure:
                idx = np.arange(a, b)
                buf.put(idx, status=np.full(len(idx), "error", object),
                        error=np.full(len(idx), f"{p.failure[0]}: {p.failure[1]}", object))
        return buf

    def write(self, k: int) -> None:
        """Write chunk ``k``'s part under ``_tmp/`` (complete or absent) and account for it."""
        import pyarrow as pa

        buf = self.buffers.pop(k)
        c = buf.chunk
        rows = pa.concat_tables([self.plans[s].manifest_rows(self.grid, a, b) for s, a, b in self.scenes_in(c.lo, c.hi)])
        table = mapfile.build_table(rows, buf.probs, buf.status, buf.error, buf.fill, self.manifest.classes,
                                    self.manifest.id, stats=buf.stats(), unknown_below=self.cfg.unknown_below)
        if self.store:  # the store part first: a map part on disk means its store part is there too
            emb = buf.embedding
            if self.dim and emb.shape[1] != self.dim:  # a chunk without one readable tile
                emb = np.zeros((len(emb), self.dim), np.float16)
            st = embstore.build_table(rows, emb, buf.status, buf.error, buf.fill, buf.stats())
            embstore.write_part(st, self.store.part_uri(self.cfg.out, c.name), self.store.meta)
        if not (self.store and self.store.only):
            mapfile.write_part(table, storage.join(self.cfg.out, parts.TMP, c.name), self.manifest.classes,
                               self.manifest.id, self.extra)
        self.account(table)
        self.written.add(c.name)
        failpoint("part_written")

    def read_units(self, pending: list[int]) -> list[dict]:
        """Read units (≤ read_batch_size tiles of one scene, in grid order) of the tiles the
        pending chunks still need from the pipeline."""
        units = []
        specs: dict[int, str] = {}
        step = self.cfg.read_batch_size
        for k in pending:
            c = self.chunks[k]
            for s, a, b in self.scenes_in(c.lo, c.hi):
                p = self.plans[s]
                if p.failure:
                    continue
                if s not in specs:
                    specs[s] = p.read_spec(self.grid.tile_size, self.cfg.max_fill_fraction)
                for u in range(a, b, step):
                    units.append({"spec": specs[s], "base": p.start, "lo": u - p.start,
                                  "hi": min(b, u + step) - p.start})
        return units


@dataclass
class StoreOutput:
    """Where a run writes its embedding store: ``<out>/embeddings/`` beside a map, or ``out``
    itself (``landcover embed --scenes``: the store is the output, its parts resume like a
    map's), and the store's metadata."""

    meta: dict
    only: bool = False

    def root(self, out: str) -> str:
        return out if self.only else storage.join(out, EMBEDDINGS)

    def part_uri(self, out: str, name: str) -> str:
        return storage.join(out, parts.TMP, name) if self.only else storage.join(out, EMBEDDINGS, name)


def store_meta(cfg: MapConfig, manifest: ModelManifest, model_uri: str, grid: dict) -> dict:
    """The store's identity: backbone, weights hash, preprocessing (and its hash)."""
    from raylib.models.model_dir import _local_model_folder

    bb = manifest.backbone
    folder = _local_model_folder(model_uri)
    bb_folder = str(folder / bb["path"]) if bb.get("path") else (
        str(folder / manifest.backbone.get("path", "model")) if manifest.kind == "finetuned" else None)
    ref = bb.get("source") or bb.get("ref") or manifest.id
    pre = {"grid": grid, "input_size": bb.get("input_size"), "model_bands": manifest.bands,
           **{k: getattr(cfg, k) for k in ("bands", "scaling", "sensor", "fill_value", "scale", "sun_elevation",
                                           "spectral_bands", "max_fill_fraction")}}
    return {"backbone": ref, "input_size": bb.get("input_size"), "model_id": manifest.id, "model_kind": manifest.kind,
            "model_uri": model_uri,
            "weights_hash": embstore.weights_hash(bb_folder, ref), "preprocessing": pre,
            "preprocessing_hash": embstore.preprocessing_hash(pre), "embedding_dtype": "float16",
            "note": "one row per tile, keyed by the map's tile_id; error tiles have no embedding"}


def _prepare_output(cfg: MapConfig, job: str) -> bool:
    """Make ``out`` ready for this job; True when it resumes an unfinished run of it."""
    storage.check_bucket(cfg.out)
    marker = storage.join(cfg.out, MARKER)
    if storage.exists(storage.join(cfg.out, SUCCESS)):
        if not cfg.overwrite:
            raise ConfigError(f"{cfg.out} already holds a finished map.", "pass --overwrite, or choose another --out.")
    elif storage.exists(marker) and not cfg.overwrite:
        try:
            same = json.loads(storage.read_bytes(marker)).get("job") == job
        except ValueError:
            same = False
        if same:
            return True
        log.warning("%s holds an unfinished run with other settings or scene versions; starting over", cfg.out)
    storage.clear_own_folder(cfg.out, MARKER, "a landcover map")
    return False


def run_map(cfg: MapConfig, argv: list[str] | None = None, predictor: type | None = None,
            store_only: bool = False) -> dict:
    """Map every scene in ``cfg.scenes`` into a GeoParquet dataset at ``cfg.out`` (with
    ``cfg.incremental``: only the scenes not yet mapped, or changed, since the last run;
    with ``cfg.embeddings``: and the embedding store under ``out/embeddings``).
    ``store_only`` writes the embedding store alone, at ``out`` (``landcover embed
    --scenes``). ``predictor`` replaces the model actor class (``Predictor``'s constructor
    and batch contract; the benchmark's simulated accelerator)."""
    from raylib.formats import mapstate

    t0 = time.time()
    # Cheap checks first (buckets reachable, prefixes hold scenes), before the default
    # model may take a minute to build.
    skipped: list[str] = []
    scenes = expand_scenes(cfg.scenes, skipped)
    storage.check_bucket(cfg.out)
    state = inc = None
    if cfg.incremental:
        if cfg.overwrite:  # start the incremental map over
            storage.clear_own_folder(cfg.out, MARKER, "a landcover map")
        storage.check_own_folder(cfg.out, MARKER, "a landcover map")
        if storage.exists(storage.join(cfg.out, SUCCESS)) and not storage.exists(storage.join(cfg.out, mapstate.STATE)):
            raise ConfigError(f"{cfg.out} holds a map made without --incremental.",
                              "choose another --out for incremental runs, or pass --overwrite without --incremental.")
        state = mapstate.MapState.load(cfg.out)
    model_uri = _model_uri(cfg)
    manifest = LandcoverModel.read_manifest(model_uri)
    grid = resolve_grid(cfg, manifest)
    grid_dict = {"tile_size": grid.tile_size, "stride": grid.stride, "gsd": grid.gsd}
    store = None
    if cfg.embeddings or store_only:
        store = StoreOutput(store_meta(cfg, manifest, model_uri, grid_dict), only=store_only)
        if cfg.incremental and embstore.part_files(store.root(cfg.out)):
            embstore.check_same(embstore.read_meta(store.root(cfg.out)), store.meta, store.root(cfg.out))
    if cfg.incremental:
        inc = mapstate.plan_increment(state, scenes, manifest.id, grid_dict, cfg.remap, cfg.out)
        plans = plan_scenes(inc.pending, cfg, manifest, grid, inc.fingerprints)
    else:
        plans = plan_scenes(scenes, cfg, manifest, grid)
    _raise_if_nothing_mappable(plans)
    timings = {"planning": time.time() - t0}
    job = job_fingerprint(cfg, plans, manifest.id, grid_dict) + ("-store" if store_only else "")

    # The parts this job consists of, and which of them a killed earlier run already wrote.
    if cfg.incremental:
        chunks = []
        for p in plans:
            tag = parts.digest([p.fingerprint, job])[:8]
            mine = parts.scene_chunks(f"part-{mapstate.scene_key(p.uri)}-{tag}", p.start, p.n_tiles,
                                      cfg.rows_per_part)
            p.parts = [c.name for c in mine]
            chunks += mine
        names = {c.name for c in chunks}
        mapstate.remove_debris(state, cfg.out, keep=names)
        resumed = True
    else:
        chunks = parts.global_chunks(sum(p.n_tiles for p in plans), cfg.rows_per_part)
        names = {c.name for c in chunks}
        resumed = _prepare_output(cfg, job)
    done = parts.existing(cfg.out) if resumed else {}
    done = {n: u for n, u in done.items() if n in names}
    parts.remove_tmp_debris(cfg.out, keep=set(done))
    storage.write_bytes(storage.join(cfg.out, MARKER), json.dumps(
        {"job": job, "kind": "map", "incremental": cfg.incremental, "model_id": manifest.id,
         "started": time.time()}).encode())
    failpoint("planned")

    extra = {"grid": grid_dict, "crs_note": "geometry in OGC:CRS84; scene_crs holds each scene's native CRS"}
    run = _Run(cfg, plans, chunks, grid, manifest, extra, store)
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
    quicklooks = _quicklooks(cfg, run, manifest) if cfg.quicklook and not store_only else {}
    timings["quicklooks"] = time.time() - t1

    n_tiles = sum(p.n_tiles for p in plans)
    failures = sum(n for r, n in run.reasons.items() if r not in NOT_FAILURES)
    share = failures / max(1, n_tiles)
    passed = share <= cfg.max_error_share
    seconds = time.time() - t0
    summary = {
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
    if cfg.incremental:
        replaced = []
        for i, p in enumerate(plans):
            replaced += mapstate.record(
                state, p.uri, fingerprint=p.fingerprint, parts=p.parts, tiles=p.n_tiles,
                quicklook=quicklooks.get(i), counts=run.scene_counts.get(p.uri), failed=p.failure[0] if p.failure else None)
        state.model_id, state.grid = manifest.id, grid_dict
        state.save(cfg.out)  # the record first, then the replaced parts go
        for name in replaced:
            storage.delete_prefix(storage.join(cfg.out, name))
            if store:
                storage.delete_prefix(storage.join(store.root(cfg.out), name))
        summary.update(unchanged=len(inc.unchanged), reasons=inc.reasons,
                       map_scenes=len(state.scenes), map_tiles=sum(v["tiles"] for v in state.scenes.values()))
    storage.write_bytes(storage.join(cfg.out, SUMMARY), json.dumps(summary, indent=2).encode())
    failpoint("summary_written")
    if passed:
        storage.write_bytes(storage.join(cfg.out, SUCCESS), b"")
    return summary


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _stream(cfg: MapConfig, run: _Run, units: list[dict], model_uri: str, predictor: type) -> float:
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


def _quicklooks(cfg: MapConfig, run: _Run, manifest: ModelManifest) -> dict[int, str]:
    """One PNG per mapped scene: the class of every tile beside an RGB thumbnail."""
    import rasterio

    from raylib.formats import mapstate

    out = {}
    rgb = manifest.bands.get("rgb") or [0, 1, 2]  # where R, G, B are among the model's bands
    for i, p in enumerate(run.plans):
        if p.failure or i not in run.labels:
            continue
        thumb = None
        try:
            def read_thumb():
                with rasterio.open(storage.parse(p.uri).gdal_path) as ds:
                    return tiling.decimated_read(ds, p.bands, max_side=512, fill=p.scaler.fill_value)

            wd = resilience.Watchdog(storage.rasterio_env)
            try:
                sample = resilience.retrying(lambda: wd.call(read_thumb, cfg.read_timeout,
                                                             f"reading a thumbnail of {p.uri}"),
                                             retries=cfg.read_retries)
            finally:
                wd.close()
            fill = p.scaler.fill_value
            valid = ~np.all(sample == fill, axis=0) if fill is not None else np.ones(sample.shape[1:], bool)
            if sample.shape[0] >= 3:
                thumb = reports.stretch(sample[rgb], valid)
        except Exception as exc:  # a quick-look is a picture: its loss is logged, the map stands
            log.warning("no thumbnail for %s: %s", p.uri, resilience.classify(exc)[1])
        png = reports.quicklook_png(f"{p.uri}  |  model {manifest.id}", run.labels[i], manifest.classes, thumb,
                                    (p.info.height, p.info.width), p.layout.tile)
        stem = os.path.splitext(storage.basename(p.uri))[0]
        tag = mapstate.scene_key(p.uri) if cfg.incremental else f"{i:03d}"
        uri = storage.join(cfg.out, "_quicklook", f"{tag}-{stem}.png")
        storage.write_bytes(uri, png)
        out[i] = uri
    return out

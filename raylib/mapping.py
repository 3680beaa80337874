"""The map job: scenes -> tile manifest -> Ray Data (windowed reads on CPU tasks ->
model on an actor pool) -> GeoParquet parts + quick-looks.

Output layout at ``out``::

    part-00000.parquet ...   the map (GeoParquet 1.1), readable as one dataset
    _quicklook/<scene>.png   class map beside an RGB thumbnail, per scene
    _summary.json            counts per status, timing, settings
    _landcover.json          run marker (written first; lets --overwrite know the folder is ours)
    _SUCCESS                 written last: a map without it is incomplete

Parts are written under ``_tmp/`` while the run goes and moved into place only when every
tile is done, so a failed run never leaves something that reads as a complete map.

Incremental maps (``incremental: true``) keep each scene in parts of its own
(``part-<scene key>-<run>-NNNNN.parquet``) and a state record ``_state.json``
(``mapstate``), so later runs map only new or changed scenes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from . import bands as bandlib
from . import outputs, reports, storage, tiling
from .actors import (actor_stage, collect, dataset_from_table, ensure_ray, local_folder, pool_size, set_torch_threads,
                     share_folder)
from .config import MapConfig
from .errors import ConfigError, InputError, LandcoverError
from .models import LandcoverModel, ModelManifest

log = logging.getLogger(__name__)
MARKER, SUCCESS, SUMMARY = "_landcover.json", "_SUCCESS", "_summary.json"


# --------------------------------------------------------------------------- planning


@dataclass
class ScenePlan:
    info: tiling.SceneInfo
    bands: list[int]
    native_tile: tuple[int, int]
    scaler: bandlib.Scaler
    thumb: np.ndarray  # (3, h, w) decimated read of the selected bands, for the quick-look
    thumb_valid: np.ndarray

    def worker_spec(self, tile_size: int) -> dict:
        """What a read task needs (small, serialisable; no pixels)."""
        return {
            "gdal_path": storage.parse(self.info.uri).gdal_path,
            "bands": self.bands,
            "native_tile": self.native_tile,
            "tile_size": tile_size,
            "gain": self.scaler.gain,
            "offset": self.scaler.offset,
            "fill_value": self.scaler.fill_value,
            "target_mean": self.scaler.target_mean,
        }


def expand_scenes(uris: list[str]) -> list[str]:
    """Scene URIs, with folders/prefixes expanded to every .tif/.tiff under them."""
    out: list[str] = []
    for uri in uris:
        if storage.is_prefix(uri):
            storage.check_bucket(uri)
            found = storage.list_files(uri, storage.RASTER_SUFFIXES)
            if not found:
                raise InputError(f"No .tif/.tiff scenes under {uri}.", "check the prefix; scenes must end in .tif or .tiff.")
            out.extend(found)
        else:
            storage.check_bucket(uri)
            out.append(storage.parse(uri).uri)
    seen: set[str] = set()
    return [u for u in out if not (u in seen or seen.add(u))]


def plan_scene(info: tiling.SceneInfo, cfg: MapConfig, manifest: ModelManifest, grid: tiling.GridSpec) -> ScenePlan:
    import rasterio

    uri = info.uri
    needed = len(manifest.bands["channels"])
    with storage.rasterio_env(), rasterio.open(storage.parse(uri).gdal_path) as ds:
        chosen = bandlib.resolve_bands(cfg.bands, info.count, uri, needed, ds.colorinterp)
        sample = tiling.decimated_read(ds, chosen)
    fill = cfg.fill_value if cfg.fill_value is not None else info.nodata
    scaler = bandlib.make_scaler(cfg.scaling, sample, info.dtype, fill, manifest.bands["mean"],
                                 manifest.bands["std"],
                                 cfg.scale if cfg.scale is not None else manifest.bands.get("scale"), uri)
    valid = ~np.all(sample == fill, axis=0) if fill is not None else np.ones(sample.shape[1:], bool)
    rgb = manifest.bands.get("rgb") or [0, 1, 2]  # where R, G, B are among the model's bands
    thumb = sample[rgb] if len(chosen) >= 3 else sample
    return ScenePlan(info, chosen, tiling.native_tile_size(info, grid), scaler, thumb, valid)


def resolve_grid(cfg: MapConfig, manifest: ModelManifest) -> tiling.GridSpec:
    tile = cfg.tile_size or manifest.tile_size
    stride = cfg.stride or tile
    if cfg.gsd == "native":
        gsd = None
    elif cfg.gsd == "model":
        gsd = manifest.gsd
    else:
        gsd = float(cfg.gsd)
    return tiling.GridSpec(tile_size=int(tile), stride=int(stride), gsd=gsd)


def prepare_output(out: str, overwrite: bool) -> None:
    """Refuse to clobber a finished map or a folder that is not ours; clear stale partial runs."""
    storage.check_bucket(out)
    if storage.exists(storage.join(out, SUCCESS)):
        if not overwrite:
            raise ConfigError(f"{out} already holds a finished map.", "pass --overwrite, or choose another --out.")
    storage.clear_own_folder(out, MARKER, "a landcover map")


# --------------------------------------------------------------------------- Ray stages


def read_tiles(batch: dict, specs: list[dict]) -> dict:
    """CPU stage: windowed reads of one batch of tiles -> scaled float32 pixels."""
    import rasterio

    n = len(batch["scene_idx"])
    first = specs[int(batch["scene_idx"][0])] if n else specs[0]
    c, t = len(first["bands"]), first["tile_size"]
    pixels = np.zeros((n, c, t, t), np.float32)
    fill = np.ones(n, np.float32)
    status = np.full(n, "ok", dtype=object)
    error = np.full(n, "", dtype=object)
    order = np.argsort(batch["scene_idx"], kind="stable")
    with storage.rasterio_env():
        i = 0
        while i < n:
            s = int(batch["scene_idx"][order[i]])
            j = i
            while j < n and int(batch["scene_idx"][order[j]]) == s:
                j += 1
            spec = specs[s]
            scaler = bandlib.Scaler(spec["gain"], spec["offset"], spec["fill_value"], spec["target_mean"])
            try:
                ds = rasterio.open(spec["gdal_path"])
            except Exception as exc:
                for k in order[i:j]:
                    status[k], error[k] = "error", f"read_error: {type(exc).__name__}: {exc}"
                i = j
                continue
            with ds:
                for k in order[i:j]:
                    try:
                        raw, inside = tiling.read_window(
                            ds, int(batch["row_off"][k]), int(batch["col_off"][k]), int(batch["height"][k]),
                            int(batch["width"][k]), tuple(spec["native_tile"]), t, spec["bands"])
                        pixels[k], fill[k] = scaler.apply(raw, inside)
                        if fill[k] >= 1.0:
                            status[k], error[k] = "error", "all_nodata: the tile holds only fill/nodata pixels"
                    except Exception as exc:  # one bad block must not lose the other tiles
                        status[k], error[k] = "error", f"read_error: {type(exc).__name__}: {exc}"
            i = j
    return {"idx": batch["idx"], "pixels": pixels, "fill_fraction": fill, "status": status, "error": error}


class Predictor:
    """Actor: loads the model once, predicts class probabilities for batches of tiles."""

    def __init__(self, model_ref, torch_threads: int | None, actors: int = 1, device: str = "auto",
                 tta: bool | None = None):
        set_torch_threads(torch_threads, actors)
        uri = local_folder(model_ref, "ray-models")
        self.model = LandcoverModel.load(uri, device=device, tta=tta)
        self.k = len(self.model.classes)

    def __call__(self, batch: dict) -> dict:
        n = len(batch["idx"])
        probs = np.full((n, self.k), np.nan, np.float32)
        ok = np.asarray(batch["status"]) == "ok"
        if ok.any():
            probs[ok] = self.model.predict_proba(batch["pixels"][ok])
        return {"idx": batch["idx"], "probs": probs, "fill_fraction": batch["fill_fraction"],
                "status": batch["status"], "error": batch["error"]}


def _raise_all(problems: list[LandcoverError], n_scenes: int) -> None:
    """One error naming every bad input."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputError(f"{len(problems)} of {n_scenes} scenes cannot be mapped: "
                         + " | ".join(str(p) for p in problems))


# --------------------------------------------------------------------------- the job


def _model_uri(cfg: MapConfig) -> str:
    if cfg.model:
        return cfg.model
    from .training import default_model_dir

    return default_model_dir()


def _open_all(scenes: list[str]) -> list[tiling.SceneInfo]:
    problems: list[LandcoverError] = []
    infos = []
    for uri in scenes:
        try:
            infos.append(tiling.open_scene(uri))
        except LandcoverError as exc:
            problems.append(exc)
    _raise_all(problems, len(scenes))
    return infos


def run_map(cfg: MapConfig, argv: list[str] | None = None) -> dict:
    """Map every scene in ``cfg.scenes`` into a GeoParquet dataset at ``cfg.out`` (with
    ``cfg.incremental``: only the scenes not yet mapped, or changed, since the last run)."""
    import pyarrow as pa

    from . import mapstate

    t0 = time.time()
    # Cheap checks first (scenes exist and are rasters, buckets reachable), before the
    # default model may take a minute to build.
    scenes = expand_scenes(cfg.scenes)
    storage.check_bucket(cfg.out)
    state = plan = None
    if cfg.incremental:
        if cfg.overwrite:  # start the incremental map over
            storage.clear_own_folder(cfg.out, MARKER, "a landcover map")
        storage.check_own_folder(cfg.out, MARKER, "a landcover map")
        if storage.exists(storage.join(cfg.out, SUCCESS)) and not storage.exists(storage.join(cfg.out, mapstate.STATE)):
            raise ConfigError(f"{cfg.out} holds a map made without --incremental.",
                              "choose another --out for incremental runs, or pass --overwrite without --incremental.")
        state = mapstate.MapState.load(cfg.out)
    infos = [] if cfg.incremental else _open_all(scenes)  # incremental: only what will be mapped, below
    model_uri = _model_uri(cfg)
    manifest = LandcoverModel.read_manifest(model_uri)
    grid = resolve_grid(cfg, manifest)
    grid_dict = {"tile_size": grid.tile_size, "stride": grid.stride, "gsd": grid.gsd}
    if cfg.incremental:
        plan = mapstate.plan_increment(state, scenes, manifest.id, grid_dict, cfg.remap, cfg.out)
        infos = _open_all(plan.pending)

    # Validate every input against the model before anything is written.
    problems: list[LandcoverError] = []
    plans = []
    for info in infos:
        try:
            plans.append(plan_scene(info, cfg, manifest, grid))
        except LandcoverError as exc:
            problems.append(exc)
    _raise_all(problems, len(infos))
    if cfg.incremental:
        storage.write_bytes(storage.join(cfg.out, MARKER), json.dumps(
            {"job": "map", "incremental": True, "model_id": manifest.id, "started": time.time()}).encode())
        mapstate.remove_debris(state, cfg.out)
    else:
        prepare_output(cfg.out, cfg.overwrite)
        storage.write_bytes(storage.join(cfg.out, MARKER), json.dumps(
            {"job": "map", "model_id": manifest.id, "scenes": scenes, "started": time.time()}).encode())

    tables = [tiling.make_manifest(p.info, grid) for p in plans]
    n_tiles = sum(t.num_rows for t in tables)
    if n_tiles:
        probs_all, fill_all, status_all, error_all = _predict(cfg, plans, tables, grid, model_uri, manifest)
    else:
        k = len(manifest.classes)
        probs_all, fill_all = np.zeros((0, k), np.float32), np.zeros(0, np.float32)
        status_all, error_all = np.zeros(0, object), np.zeros(0, object)

    classes = manifest.classes
    extra = {"grid": grid_dict, "crs_note": "geometry in OGC:CRS84; scene_crs holds each scene's native CRS"}
    # Parts are written under _tmp/ first, then moved into place. Incremental maps keep
    # each scene in parts of its own, so a changed scene's rows can be replaced.
    offsets = np.cumsum([0] + [t.num_rows for t in tables])
    if cfg.incremental:
        groups = [(f"part-{mapstate.scene_key(p.info.uri)}-{int(t0 * 1000):x}", [i]) for i, p in enumerate(plans)]
    else:
        groups = [("part", list(range(len(plans))))]
    written: dict[int, list[str]] = {}
    moves = []
    for prefix, members in groups:  # every group has at least one scene (a map run has scenes)
        rows = pa.concat_tables([tables[i] for i in members])
        lo, hi = int(offsets[members[0]]), int(offsets[members[-1] + 1])
        for k, start in enumerate(range(lo, hi, cfg.rows_per_part)):
            stop = min(hi, start + cfg.rows_per_part)
            table = outputs.build_table(rows.slice(start - lo, stop - start), probs_all[start:stop],
                                        status_all[start:stop], error_all[start:stop], fill_all[start:stop],
                                        classes, manifest.id)
            name = f"{prefix}-{k:05d}.parquet"
            tmp_uri = storage.join(cfg.out, "_tmp", name)
            outputs.write_part(table, tmp_uri, classes, manifest.id, extra)
            moves.append(tmp_uri)
            for i in members:
                written.setdefault(i, []).append(name)
    for tmp_uri in moves:
        storage.move(tmp_uri, storage.join(cfg.out, storage.basename(tmp_uri)))

    quicklooks = {}
    if cfg.quicklook:
        label_idx = np.where(status_all == "ok", np.nan_to_num(probs_all, nan=-1).argmax(1), -1)
        for i, (plan_i, table) in enumerate(zip(plans, tables)):
            rows, cols = tiling.grid_shape(plan_i.info, grid)
            lab = np.full((rows, cols), -1, np.int32)
            lab[table["grid_row"].to_numpy(), table["grid_col"].to_numpy()] = label_idx[offsets[i]:offsets[i + 1]]
            thumb = reports.stretch(plan_i.thumb, plan_i.thumb_valid) if plan_i.thumb.shape[0] == 3 else None
            png = reports.quicklook_png(f"{plan_i.info.uri}  |  model {manifest.id}", lab, classes, thumb,
                                        (plan_i.info.height, plan_i.info.width), plan_i.native_tile)
            stem = os.path.splitext(storage.basename(plan_i.info.uri))[0]
            tag = mapstate.scene_key(plan_i.info.uri) if cfg.incremental else f"{i:03d}"
            uri = storage.join(cfg.out, "_quicklook", f"{tag}-{stem}.png")
            storage.write_bytes(uri, png)
            quicklooks[i] = uri

    counts = {s: int((status_all == s).sum()) for s in sorted(set(status_all.tolist()))}
    seconds = time.time() - t0
    summary = {
        "out": cfg.out, "model": model_uri, "model_id": manifest.id, "scenes": len(plans), "tiles": n_tiles,
        "counts": counts, "parts": len(moves), "quicklooks": list(quicklooks.values()),
        "grid": grid_dict, "seconds": round(seconds, 2), "tiles_per_second": round(n_tiles / max(seconds, 1e-9), 2),
        "config": cfg.model_dump(),
    }
    if cfg.incremental:
        replaced = []
        for i, plan_i in enumerate(plans):
            st = status_all[offsets[i]:offsets[i + 1]]
            replaced += mapstate.record(
                state, plan_i.info.uri, fingerprint=plan.fingerprints[plan_i.info.uri], parts=written.get(i, []),
                tiles=int(offsets[i + 1] - offsets[i]), quicklook=quicklooks.get(i),
                counts={s: int((st == s).sum()) for s in sorted(set(st.tolist()))})
        state.model_id, state.grid = manifest.id, grid_dict
        state.save(cfg.out)  # the record first, then the replaced parts go
        for name in replaced:
            storage.delete_prefix(storage.join(cfg.out, name))
        summary.update(unchanged=len(plan.unchanged), reasons=plan.reasons,
                       map_scenes=len(state.scenes), map_tiles=sum(v["tiles"] for v in state.scenes.values()))
    storage.write_bytes(storage.join(cfg.out, SUMMARY), json.dumps(summary, indent=2).encode())
    storage.write_bytes(storage.join(cfg.out, SUCCESS), b"")
    return summary


def _predict(cfg: MapConfig, plans: list[ScenePlan], tables: list, grid: tiling.GridSpec, model_uri: str,
             manifest: ModelManifest):
    """The Ray Data pipeline over every tile of ``plans``: (probs, fill_fraction, status, error)."""
    import pyarrow as pa

    tile_manifest = pa.concat_tables(tables)
    n_tiles = tile_manifest.num_rows
    scene_idx = np.concatenate([np.full(t.num_rows, i, np.int32) for i, t in enumerate(tables)])
    work = pa.table({
        "idx": pa.array(np.arange(n_tiles, dtype=np.int64)),
        "scene_idx": pa.array(scene_idx),
        "row_off": tile_manifest["row_off"], "col_off": tile_manifest["col_off"],
        "width": tile_manifest["width"], "height": tile_manifest["height"],
    })
    log.info("mapping %d scenes, %d tiles (grid %s)", len(plans), n_tiles, grid.key())
    ensure_ray(cfg.ray_address)
    ds = dataset_from_table(work, cfg.read_batch_size * 4)
    specs = [p.worker_spec(grid.tile_size) for p in plans]
    ds = ds.map_batches(read_tiles, fn_kwargs={"specs": specs}, batch_size=cfg.read_batch_size,
                        batch_format="numpy", num_cpus=cfg.read_cpus)
    actors = pool_size(cfg.actors, cfg.num_gpus)
    local_model = not storage.parse(model_uri).is_s3
    model_ref = share_folder(model_uri) if local_model else model_uri
    ds = actor_stage(ds, Predictor, {"model_ref": model_ref, "torch_threads": cfg.torch_threads, "actors": actors,
                                     "tta": cfg.tta},
                     actors=actors, batch_size=cfg.batch_size, actor_cpus=cfg.actor_cpus, num_gpus=cfg.num_gpus)
    res = collect(ds, n_tiles, {
        "probs": ((len(manifest.classes),), np.float32, np.nan),
        "fill_fraction": ((), np.float32, 1.0),
        "status": ((), object, "error"),
        "error": ((), object, ""),
    })
    return res["probs"], res["fill_fraction"], res["status"], res["error"]

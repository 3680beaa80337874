"""The adaptation's first pass (``models.adaptation``): each scene's centre, from a sample
of its tiles spread over the whole scene, embedded on the map's own model actors before
the scene is mapped.

The sample is ``adapt_sample`` tiles in runs of ``RUN`` consecutive tiles (one row read
each) evenly spaced over the scene's grid: every part of the scene, never one batch. The
centres are stored with the map, ``<out>/_adaptation/centres-*.arrow`` (scene, its
version, tiles sampled, centre), before any tile is mapped, so a resumed run (and an
incremental one, for the scenes it already knows) uses the same centres, and ``remap`` of
the map's store too. A scene with fewer than ``models.adaptation.MIN_TILES`` readable
sampled tiles keeps the head as trained, and so does a display product (``DISPLAY``) unless
``adapt`` is asked for explicitly; the summary names them.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from raylib.config import MapConfig
from raylib.console import Progress
from raylib.io import storage
from raylib.models import adaptation
from raylib.models.manifest import ModelManifest
from raylib.pipelines.common.centres import FOLDER, load, save
from raylib.pipelines.common.planning import display_by_name
from raylib.raster import tiling

log = logging.getLogger(__name__)
RUN = 32  # consecutive tiles per sampled run (a row's read)
# a display product (NAIP: 8-bit values as they are, like the EuroSAT JPEGs the head learnt from) keeps the head as
# trained unless --adapt asks: re-centred, a farmland NAIP scene's crops became roads and towns (BENCHMARKS.md)
DISPLAY = "adapt_skipped: a display product, read as the model's training images were: the head as trained"


def sample_ranges(n_tiles: int, sample: int, run: int = RUN) -> list[tuple[int, int]]:
    """Tile ranges ``[lo, hi)`` holding about ``sample`` tiles of a scene of ``n_tiles``: all of
    them for a small scene, else runs of ``run`` tiles evenly spaced from the first to the last."""
    if n_tiles <= sample:
        return [(0, n_tiles)] if n_tiles else []
    k = max(1, sample // run)
    starts = np.linspace(0, n_tiles - run, k).round().astype(int)
    out: list[tuple[int, int]] = []
    for s in starts.tolist():
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], min(n_tiles, s + run))
        else:
            out.append((s, min(n_tiles, s + run)))
    return out


def scenes_done(seen: dict[int, int], scene_idx: np.ndarray, sampled: np.ndarray) -> int:
    """The scenes a batch of sampled rows completes (their rows may come in several batches):
    ``seen`` counts each scene's rows so far, ``sampled`` is each row's scene's row count."""
    here, first, counts = np.unique(scene_idx, return_index=True, return_counts=True)
    done = 0
    for s, n, of in zip(here.tolist(), counts.tolist(), sampled[first].tolist()):
        before = seen.get(s, 0)
        seen[s] = before + n
        done += before < of <= seen[s]
    return done


def read_samples(batch: dict, uris_ref, cfg: MapConfig, manifest: ModelManifest, grid: tiling.GridSpec,
                 pixel_type: str) -> dict:
    """Ray Data task: scene numbers -> their sampled tiles (``read_tiles``' columns, with
    ``scene_idx``, the scene's ``fingerprint`` and ``sampled``, the scene's rows here: the
    driver counts a scene done when it has them all); a scene that cannot be mapped gives no
    rows (the map says why)."""
    from raylib.pipelines.common.object_store import shared
    from raylib.pipelines.map.source import plan_or_failure
    from raylib.raster.reading import empty_rows, read_tiles

    uris = shared(uris_ref)
    parts = []
    for s in (int(v) for v in batch["id"]):
        plan = plan_or_failure(uris[s].as_py(), cfg, manifest, grid)
        if plan.failure:
            continue
        if cfg.adapt is None and (plan.radiometry or {}).get("display"):  # one row that says so, no sample
            out = empty_rows(1, len(manifest.bands["channels"]), grid.tile_size, None, pixel_type)
            out["status"][0], out["error"][0] = "error", DISPLAY
            out["scene_idx"], out["fingerprint"] = np.full(1, s, np.int64), np.full(1, plan.fingerprint or "", object)
            out["sampled"] = np.ones(1, np.int64)
            parts.append(out)
            continue
        spec = plan.read_spec(grid.tile_size, cfg.max_fill_fraction, cfg.max_tile_cloud, pixel_type)
        ranges = sample_ranges(plan.n_tiles, cfg.adapt_sample)
        rows = sum(hi - lo for lo, hi in ranges)
        for lo, hi in ranges:
            out = read_tiles({"spec": [spec], "base": [0], "lo": [lo], "hi": [hi]}, cfg.read_timeout,
                             cfg.read_retries)
            out["scene_idx"] = np.full(len(out["idx"]), s, np.int64)
            out["fingerprint"] = np.full(len(out["idx"]), plan.fingerprint or "", object)  # the version sampled
            out["sampled"] = np.full(len(out["idx"]), rows, np.int64)
            parts.append(out)
    if not parts:
        out = empty_rows(0, len(manifest.bands["channels"]), grid.tile_size, None, pixel_type)
        out["scene_idx"], out["fingerprint"] = np.zeros(0, np.int64), np.zeros(0, object)
        out["sampled"] = np.zeros(0, np.int64)
        return out
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _display(cfg: MapConfig, uris: list[str], fingerprints: dict | None, manifest: ModelManifest) -> dict:
    """The records of display products (``DISPLAY``) told by their names, stored as the first
    pass stores its scenes', without reading them."""
    new = {u: {"fingerprint": (fingerprints or {}).get(u) or storage.fingerprint(u), "tiles": 0, "centre": None,
               "model_id": manifest.id, "display": True} for u in uris}
    save(cfg.out, new)
    return new


def scene_centres(cfg: MapConfig, uris: list[str], todo: set[str], fingerprints: dict | None,
                  manifest: ModelManifest, grid: tiling.GridSpec, stage, pixel_type: str) -> tuple[dict, dict]:
    """(scene number -> centre, the summary's ``adaptation``): the stored centres of the
    scenes in ``todo`` (made with the same model; an incremental run's: of the same scene
    version), and for the others a first pass (Ray Data: sample-read tasks -> ``stage(ds)``,
    the model actors with embeddings), stored before it returns."""
    import pyarrow as pa
    import ray

    stored = load(cfg.out)

    def usable(u):
        s = stored.get(u)
        return s is not None and s["model_id"] == manifest.id and not (cfg.adapt and s.get("display")) and (
            not fingerprints or s["fingerprint"] == fingerprints.get(u))

    need = [i for i, u in enumerate(uris) if u in todo and not usable(u)]
    sums, versions, display = adaptation.CentreSums(), {}, set()
    t0 = time.time()
    named = []
    if cfg.adapt is None:  # display products their names tell: no first pass (their head stays as trained)
        named = [i for i in need if display_by_name(uris[i], cfg, manifest)]
        if named:
            stored.update(_display(cfg, [uris[i] for i in named], fingerprints, manifest))
            need = [i for i in need if i not in set(named)]
    if need:
        uris_ref = ray.put(pa.array(uris, pa.string()))
        ds = ray.data.from_items([{"id": i} for i in need], override_num_blocks=len(need))
        ds = ds.map_batches(read_samples, batch_size=1, batch_format="numpy", num_cpus=cfg.read_cpus,
                            fn_kwargs={"uris_ref": uris_ref, "cfg": cfg, "manifest": manifest, "grid": grid,
                                       "pixel_type": pixel_type})
        progress = Progress("adapt", len(need), unit="scenes")  # (a scene is done when all its sampled rows are in)
        seen: dict[int, int] = {}
        for b in stage(ds).iter_batches(batch_format="numpy", batch_size=None):
            idx = np.asarray(b["scene_idx"])
            if len(idx):
                versions.update(zip(idx.tolist(), np.asarray(b["fingerprint"]).tolist()))
                display.update(idx[np.asarray(b["error"]) == DISPLAY].tolist())
                progress.update(scenes_done(seen, idx, np.asarray(b["sampled"])))
            ok = np.asarray(b["status"]) == "ok"
            scenes = idx[ok]
            emb = np.asarray(b["embedding"])[ok]
            for s in np.unique(scenes):
                sums.add(int(s), emb[scenes == s])
        progress.grow(progress.done)  # (a scene that cannot be mapped sends no rows: the map's error row says why)
        progress.close()
        found = sums.centres()
        new = {}
        for i in need:
            c, n = found.get(i, (None, 0))
            if i not in versions:  # a scene that cannot be mapped: its rows are the map's error rows
                continue
            fp = (fingerprints or {}).get(uris[i]) or versions[i] or None
            new[uris[i]] = {"fingerprint": fp, "tiles": n, "centre": c, "model_id": manifest.id,
                            "display": i in display}
        save(cfg.out, new)
        stored.update(new)
    centres = {i: stored[u]["centre"] for i, u in enumerate(uris) if u in todo and stored.get(u) is not None
               and stored[u]["centre"] is not None}
    shown = [u for u in uris if u in todo and (stored.get(u) or {}).get("display")]
    few = [u for u in uris if u in todo and stored.get(u) is not None and stored[u]["centre"] is None
           and not stored[u].get("display")]
    tiles = [stored[u]["tiles"] for u in uris if u in todo and stored.get(u) is not None]
    info = {"method": adaptation.METHOD, "scenes": len(centres), "sampled": len(need),
            "reused": len([u for u in uris if u in todo]) - len(need) - len(named), "told_by_name": len(named),
            "tiles_per_scene": int(np.median(tiles)) if tiles else 0, "sample": cfg.adapt_sample,
            "seconds": round(time.time() - t0, 2), "stored": storage.join(cfg.out, FOLDER)}
    if shown:
        info["display_products"] = {"scenes": len(shown), "examples": shown[:5],
                                    "note": "display products (NAIP-like 8-bit imagery) keep the head as trained "
                                            "unless --adapt asks"}
    if few:
        info["too_few_tiles"] = {"scenes": len(few), "examples": few[:5],
                                 "note": f"fewer than {adaptation.MIN_TILES} readable sampled tiles: mapped with the "
                                         "head as trained"}
        log.warning("adaptation: %d scene(s) with too few readable tiles keep the head as trained (e.g. %s)",
                    len(few), few[0])
    if need:
        log.info("adaptation: %s", json.dumps({k: v for k, v in info.items() if not isinstance(v, dict)}))
    return centres, info

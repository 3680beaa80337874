"""The map job's first stages, on Ray workers: planning and reading.

The driver hands Ray Data the scene list only (an Arrow array in the object store) and
blocks of scene numbers (``first_blocks``), each the read task of a Ray Data datasource
(``map.scene_datasource``). Each read task (``plan_and_read``) plans its few scenes
(header, bands, radiometric scaling: ``planning.plan_scene``), cuts their *read units*
(tiles ``lo..hi`` of one scene in grid order, minus the tiles a killed run of the same job
already wrote), packs them into reads of up to ``read_batch_size * read_units_per_task``
tiles (``plan_units``), and reads them one after the other (``read_units``:
``reading.read_tiles`` plus the tiles' tile-table columns: tile id, window, footprint),
yielding the tiles as it goes. So planning overlaps reading and the model, and the driver
holds no plan: each unit's first row carries its scene's record (``meta``: URI, version,
tile count, radiometry, grid) to the driver with the rows.

A scene that cannot be mapped is one row per unit (``span`` > 0: it stands for tiles
``idx .. idx + span`` of the scene, or its one row when the header is unreadable) that the
driver expands into error rows: no pixels travel for it. The rows' tile-table columns are
written and read back by one module, ``map.row_codec``.

Imports stay light (no torch, scikit-learn, transformers): read workers never load them.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from raylib.config import MapConfig
from raylib.errors import ConfigError
from raylib.models.manifest import ModelManifest
from raylib.pipelines.common.planning import ScenePlan, plan_scene
from raylib.pipelines.common.object_store import shared
from raylib.pipelines.map import row_codec
from raylib.raster import tiling
from raylib.raster.reading import PixelFn, read_tiles


def unit_ranges(n: int, step: int, done: list | None = None) -> list[tuple[int, int]]:
    """Tile ranges ``[lo, hi)`` of at most ``step`` tiles covering ``0..n`` minus the ranges
    ``done``."""
    todo = np.ones(n, bool)
    for lo, hi in done or ():
        todo[lo:hi] = False
    out = []
    k = 0
    while k < n:
        if not todo[k]:
            k += 1
            continue
        hi = k
        while hi < n and todo[hi] and hi - k < step:
            hi += 1
        out.append((k, hi))
        k = hi
    return out


def all_done(d: dict | None) -> bool:
    """An earlier run of the job wrote every tile of the scene (``partwriter.done_scenes``)."""
    return bool(d) and sum(hi - lo for lo, hi in d["ranges"]) >= d["tiles"]


def plan_or_failure(uri: str, cfg: MapConfig, manifest: ModelManifest, grid: tiling.GridSpec) -> ScenePlan:
    """``plan_scene``; a configuration error that only this scene meets (the driver planned
    the first scene, so the settings themselves are sound) is the scene's failure."""
    try:
        return plan_scene(uri, cfg, manifest, grid)
    except ConfigError as exc:
        return ScenePlan(uri, failure=("config", str(exc)))


def plan_scenes(uris: list[str], numbers: list[int], cfg: MapConfig, manifest: ModelManifest,
                grid: tiling.GridSpec, known: dict | None = None) -> list[ScenePlan]:
    """The plans of scenes ``uris`` (scene numbers ``numbers``), ``plan_threads`` at a time;
    those in ``known`` (by number) are not made again."""
    known = known or {}
    with ThreadPoolExecutor(max_workers=max(1, min(cfg.plan_threads, len(uris) or 1))) as pool:
        return list(pool.map(lambda us: known.get(us[1]) or plan_or_failure(us[0], cfg, manifest, grid),
                             zip(uris, numbers)))


def scene_meta(plan: ScenePlan) -> dict:
    """The scene's record, carried to the driver on the first row of each of its units."""
    info = plan.info
    return {"uri": plan.uri, "fingerprint": plan.fingerprint, "tiles": plan.n_tiles,
            "failure": list(plan.failure) if plan.failure else None,
            "info": dict(info.__dict__) if info else None, "radiometry": plan.radiometry,
            "grid_shape": [len(plan.layout.row_offs), len(plan.layout.col_offs)] if plan.layout else None,
            "tile": list(plan.layout.tile) if plan.layout else None, "bands": plan.bands,
            "fill": plan.scaler.fill_value if plan.scaler else None, "retries": plan.retries,
            "item": plan.item or {"datetime": None, "item_id": None, "collection": None}}


def first_blocks(n: int, per: int, head: int, on_driver: bool = False, ramp: int = 0,
                 spread: dict[int, list[tuple[int, int]]] | None = None) -> list[dict]:
    """The first stage's input: scene numbers in blocks of ``per`` (``{"id", "lo", "hi"}``
    arrays: each scene's tiles ``lo..hi``, ``hi`` -1 to its end), each block one read task
    of ``SceneDatasource``. The job's first block is the first ``head`` tiles of scene 0
    alone (``head`` > 0); then its next ``ramp`` tiles alone; then scene 0 comes again
    without them. Ray Data cuts a task's yields into blocks by bytes and holds them until a
    block fills, so only a read task of its own reaches the model at once: the first rows
    come back after ``head`` tiles, and the model's first full block after one read unit
    (``ramp``), not after a whole block of reads. ``on_driver``: the driver maps the ``head``
    tiles itself (``map.driver_head``), so no block has them. ``spread``: scenes read by
    several tasks at once (``scene_spans``: few scenes on many cores), each span a block
    of its own (the last one runs to the scene's end)."""
    lo = np.zeros(n, np.int64)
    hi = np.full(n, -1, np.int64)
    blocks = []
    if n and (head or ramp):
        if head and not on_driver:
            blocks.append(_block([0], [0], [head]))
        if ramp:
            blocks.append(_block([0], [head], [head + ramp]))
        lo[0] = head + ramp
    spread = spread or {}
    ids = np.array([s for s in range(n) if s not in spread], np.int64)
    for s in sorted(spread):
        cuts = spread[s]
        blocks += [_block([s], [max(a, int(lo[s]))], [b if k < len(cuts) - 1 else -1])
                   for k, (a, b) in enumerate(cuts) if b > lo[s] or k == len(cuts) - 1]
    return blocks + [{"id": ids[i:i + per], "lo": lo[ids[i:i + per]], "hi": hi[ids[i:i + per]]}
                     for i in range(0, len(ids), per)]


def scene_spans(lo: int, n_tiles: int, parts: int, unit: int) -> list[tuple[int, int]]:
    """Tiles ``lo..n_tiles`` of a scene in at most ``parts`` even spans of at least ``unit``
    tiles (a read unit) each, for as many read tasks."""
    k = max(1, min(parts, (n_tiles - lo) // max(1, unit)))
    cuts = [lo + (n_tiles - lo) * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _block(ids: list[int], lo: list[int], hi: list[int]) -> dict:
    return {"id": np.asarray(ids, np.int64), "lo": np.asarray(lo, np.int64), "hi": np.asarray(hi, np.int64)}


def plan_units(batch: dict, uris_ref, done_ref, cfg: MapConfig, manifest: ModelManifest,
               grid: tiling.GridSpec, known: dict | None = None, pixel_type: str = "float32") -> dict:
    """Scene numbers -> read tasks, one row each: the units of consecutive scenes packed up
    to ``read_batch_size * read_units_per_task`` tiles (small scenes share a read task).
    ``lo``/``hi`` (``first_blocks``): only the scene's tiles ``lo..hi`` (``hi`` -1: to its
    end); a scene that cannot be mapped has its records in its block that runs to its end.
    ``known``: plans the driver already made, by scene number (scene 0's), not made again.
    ``pixel_type``: the type the job's tiles cross to the model in (``bands.transfer_type``)."""
    uris = shared(uris_ref)
    done = shared(done_ref) or {}
    scenes = [int(s) for s in batch["id"]]
    zeros = np.zeros(len(scenes), np.int64)
    spans = dict(zip(scenes, zip((int(v) for v in batch.get("lo", zeros)), (int(v) for v in batch.get("hi", zeros - 1)))))
    todo = [s for s in scenes if not all_done(done.get(uris[s].as_py()))]
    plans = plan_scenes([uris[s].as_py() for s in todo], todo, cfg, manifest, grid, known)
    step = cfg.read_batch_size * cfg.read_units_per_task
    tasks: list[list[tuple]] = []
    size = step  # tiles in the last task
    for s, plan in zip(todo, plans):
        meta = json.dumps({**scene_meta(plan), "index": s})
        spec = "" if plan.failure else plan.read_spec(grid.tile_size, cfg.max_fill_fraction, cfg.max_tile_cloud,
                                                      pixel_type)
        ranges = list((done.get(plan.uri) or {}).get("ranges") or [])
        n_tiles, (lo, hi) = plan.n_tiles, spans[s]
        if not spec:  # a scene that cannot be mapped: its records come with its last block
            if hi >= 0:
                continue
            lo = 0
        if hi >= 0:
            n_tiles = min(hi, n_tiles)
        if lo > 0:
            ranges.append([0, lo])
        for lo, hi in unit_ranges(n_tiles, step, ranges):
            n = hi - lo if spec else 1  # a failure record is one row, whatever it stands for
            if size + n > step:
                tasks.append([])
                size = 0
            tasks[-1].append((s, lo, hi, spec, meta))
            size += n
    cols = ("scene_idx", "lo", "hi", "spec", "meta")
    out = {k: np.empty(len(tasks), object) for k in cols}
    for i, units in enumerate(tasks):
        for k, col in zip(cols, zip(*units)):
            out[k][i] = np.asarray(col, np.int64 if k in ("scene_idx", "lo", "hi") else object)
    return out


def plan_and_read(batch: dict, uris_ref, done_ref, cfg: MapConfig, manifest: ModelManifest, grid: tiling.GridSpec,
                  channels: int, pixel_fn=None, known: dict | None = None, pixel_type: str = "float32"):
    """The pipeline's first stage, one Ray task per few scenes: plan them, then read their
    units, yielding each read task's tiles as they are read (Ray Data cuts the yields into
    blocks of up to ``block_bytes``), so the model gets the first tiles while the rest of
    the scenes are still being read and planned."""
    tasks = plan_units(batch, uris_ref=uris_ref, done_ref=done_ref, cfg=cfg, manifest=manifest, grid=grid,
                       known=known, pixel_type=pixel_type)
    for i in range(len(tasks["lo"])):
        yield read_units({k: v[i:i + 1] for k, v in tasks.items()}, grid=grid, channels=channels,
                         read_timeout=cfg.read_timeout, read_retries=cfg.read_retries, pixel_fn=pixel_fn,
                         pixel_type=pixel_type)


def read_units(batch: dict, grid: tiling.GridSpec, channels: int, read_timeout: float, read_retries: int,
               pixel_fn: PixelFn | None = None, pixel_type: str = "float32") -> dict:
    """Read task: read units -> tiles (scaled pixels, statistics, tile-table columns
    ``row_codec.encode_tiles``, and with ``pixel_fn`` its ``pixel_out``), or one record per unit of
    a scene that cannot be mapped (``row_codec.encode_failure``)."""
    parts = []
    flat = {k: np.concatenate([np.asarray(v) for v in batch[k]]) for k in ("scene_idx", "lo", "hi", "spec", "meta")}
    for s, lo, hi, spec, meta in zip(flat["scene_idx"], flat["lo"], flat["hi"], flat["spec"], flat["meta"]):
        m = json.loads(meta)
        if spec:
            out = read_tiles({"spec": [spec], "base": [0], "lo": [lo], "hi": [hi]}, read_timeout, read_retries,
                             pixel_fn)
            out.update(row_codec.encode_tiles(m, grid, int(lo), int(hi)))
        else:
            out = row_codec.encode_failure(m, grid, channels, int(lo), int(hi), pixel_fn, pixel_type)
        n = len(out["idx"])
        out["scene_idx"] = np.full(n, s, np.int64)
        out["meta"] = np.full(n, "", object)
        out["meta"][0] = meta
        parts.append(out)
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

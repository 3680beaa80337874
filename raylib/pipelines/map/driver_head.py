"""The job's first tiles, mapped by the driver while Ray starts (``DriverHead``).

Ray's own start (4.6-6 s on a 2-core machine), Ray Data's start and the model actor's
process and ``import torch`` (3-4 s more) come one after the other before the pipeline's
first rows, 14-16 s after the command starts. The driver has planned scene 0 by then (its
settings' errors surface at once), so it also reads scene 0's first ``batch_size`` tiles
and puts them through the same model class in a thread while Ray starts: the first rows
come back in seconds, and a model that cannot load fails before the cluster is up. The
pipeline leaves those tiles out (``source.first_blocks``), so every tile is still mapped
once, by the same code (``source.read_units`` and the actor class), with the same result.
``driver_first_block: false`` keeps the model off the driver (a big model on a small head
node)."""

from __future__ import annotations

import json
import threading

import numpy as np

from raylib.config import MapConfig
from raylib.pipelines.common.planning import ScenePlan
from raylib.pipelines.map.source import read_units, scene_meta
from raylib.raster import tiling


class DriverHead:
    """Scene 0's first ``tiles`` tiles read and predicted in a thread; ``take()`` hands the
    rows over once, in the caller's thread."""

    def __init__(self, plan: ScenePlan, tiles: int, cfg: MapConfig, grid: tiling.GridSpec, channels: int,
                 predictor: type, model_ref: str, store: bool, pixel_fn=None):
        self.tiles = tiles
        self.rows: dict | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.taken = False
        args = (plan, cfg, grid, channels, predictor, model_ref, store, pixel_fn)
        threading.Thread(target=self._run, args=args, daemon=True, name="driver-head").start()

    def _run(self, plan, cfg, grid, channels, predictor, model_ref, store, pixel_fn) -> None:
        try:
            unit = {"scene_idx": [np.zeros(1, np.int64)], "lo": [np.zeros(1, np.int64)],
                    "hi": [np.array([self.tiles], np.int64)],
                    "spec": [np.array([plan.read_spec(grid.tile_size, cfg.max_fill_fraction)], object)],
                    "meta": [np.array([json.dumps({**scene_meta(plan), "index": 0})], object)]}
            block = read_units(unit, grid=grid, channels=channels, read_timeout=cfg.read_timeout,
                               read_retries=cfg.read_retries, pixel_fn=pixel_fn)
            model = predictor(model_ref=model_ref, torch_threads=cfg.torch_threads, actors=1, tta=cfg.tta,
                              batch_size=cfg.batch_size, embeddings=store)
            self.rows = model(block)
        except BaseException as exc:  # re-raised by take()
            self.error = exc
        finally:
            self.done.set()

    def take(self, wait: bool = False) -> dict | None:
        """The rows, once they are ready; None before, and after they were taken. ``wait``:
        block until they are, and raise the thread's error (the pipeline left these tiles
        out, so they cannot be lost quietly)."""
        if self.taken or not (self.done.wait() if wait else self.done.is_set()):
            return None
        if self.error is not None:
            if wait:
                raise self.error
            return None
        self.taken = True
        rows, self.rows = self.rows, None
        return rows

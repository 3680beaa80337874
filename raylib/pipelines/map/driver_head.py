"""The job's first tiles, mapped beside the driver while Ray starts (``DriverHead``).

Ray's own start (4.6-6 s on a 2-core machine), Ray Data's start and the model actor's
process and ``import torch`` (3-4 s more) come one after the other before the pipeline's
first rows, 14-16 s after the command starts. The driver has planned scene 0 by then (its
settings' errors surface at once); meanwhile a child process of the driver plans scene 0
too, reads its first tiles (``sizing.first_tiles``) and puts them through the same model class (its
torch import overlapping the planning and the read) while Ray starts: the first rows come
back in seconds. The rows are used only when they are back before the pipeline
starts; the pipeline then leaves those tiles out (``source.first_blocks``), so every tile
is mapped once, by the same code (``source.read_units`` and the actor class), with the
same result. Otherwise the child is stopped and the pipeline maps the tiles.

A child process, not a thread: a read that hangs or a native crash (GDAL under a stalled
object store) stays out of the driver, which holds the whole job, and the driver never
loads the model (its memory stays that of the job). It is forked before Ray's start
thread, while the driver runs no other thread (``start_method``). ``driver_first_block: false`` starts
no child (a big model on a small head node)."""

from __future__ import annotations

import json
import logging

import numpy as np

from raylib.config import MapConfig
from raylib.pipelines.common.sizing import first_tiles
from raylib.pipelines.map.source import read_units, scene_meta
from raylib.raster import tiling

log = logging.getLogger(__name__)


def _map_head(conn, uri: str, cfg: MapConfig, manifest, grid: tiling.GridSpec, channels: int, predictor: type,
              model_ref: str, store: bool, pixel_fn) -> None:
    """The child: plan scene 0 and read its first ``first_tiles`` tiles while the model class
    imports (torch) in a thread, predict them, send ``("ok", (tiles, rows))`` or
    ``("error", text)``."""
    import threading

    from raylib.pipelines.common.planning import plan_scene

    try:
        threading.Thread(target=lambda: __import__("raylib.pipelines.map.predictor"), daemon=True).start()
        plan = plan_scene(uri, cfg, manifest, grid)
        if plan.failure:
            raise RuntimeError(f"scene {uri}: {plan.failure[1]}")
        tiles = min(first_tiles(cfg), plan.n_tiles)
        unit = {"scene_idx": [np.zeros(1, np.int64)], "lo": [np.zeros(1, np.int64)],
                "hi": [np.array([tiles], np.int64)],
                "spec": [np.array([plan.read_spec(grid.tile_size, cfg.max_fill_fraction, cfg.max_tile_cloud,
                                                  plan.pixel_type)], object)],
                "meta": [np.array([json.dumps({**scene_meta(plan), "index": 0})], object)]}
        block = read_units(unit, grid=grid, channels=channels, read_timeout=cfg.read_timeout,
                           read_retries=cfg.read_retries, pixel_fn=pixel_fn)
        if predictor is None:
            from raylib.pipelines.map.predictor import Predictor as predictor
        model = predictor(model_ref=model_ref, torch_threads=cfg.torch_threads, actors=1, tta=cfg.tta,
                          batch_size=tiles, embeddings=store, precision=cfg.precision)
        conn.send(("ok", (tiles, model(block))))
    except BaseException as exc:  # the driver logs it and the pipeline maps the tiles
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# threads that hold no lock a forked child could need: the CLI's copier of fd 2 (``console``)
FORK_SAFE_THREADS = ("native-log-filter",)


def start_method() -> str:
    """``fork`` while the driver runs no thread but its main one (and ``FORK_SAFE_THREADS``):
    before Ray's start thread, so the child shares the driver's imports and starts in
    milliseconds, and no lock or connection of another thread is caught mid-way; else
    ``spawn`` (a fresh interpreter, ~1.5 s more)."""
    import sys
    import threading

    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and t.name not in FORK_SAFE_THREADS]
    return "fork" if sys.platform == "linux" and not others else "spawn"


class DriverHead:
    """Scene 0's first ``first_tiles`` tiles planned, read and predicted by a child process
    (``predictor``: the model actor class, None for ``Predictor``); ``take()`` hands the
    rows over once, when they are back (``tiles``: how many); ``stop()`` ends the child."""

    def __init__(self, uri: str, cfg: MapConfig, manifest, grid: tiling.GridSpec, channels: int,
                 predictor: type | None, model_ref: str, store: bool, pixel_fn=None):
        import multiprocessing

        self.tiles = 0
        self.taken = self.stopped = False
        self.error: str | None = None
        ctx = multiprocessing.get_context(start_method())
        self.conn, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_map_head, name="landcover-first-block", daemon=True,
                                args=(child, uri, cfg, manifest, grid, channels, predictor, model_ref, store, pixel_fn))
        try:
            self.proc.start()
        except Exception as exc:  # e.g. a predictor class that cannot be pickled
            self.error = f"{type(exc).__name__}: {exc}"
        child.close()

    def take(self) -> dict | None:
        """The rows, once, if the child has sent them; None otherwise (also after an error,
        kept in ``error``)."""
        if self.taken or self.error is not None or self.stopped:
            return None
        try:
            if not self.conn.poll():
                return None
            status, value = self.conn.recv()
        except (EOFError, OSError) as exc:  # the child died without a word
            status, value = "error", f"the child process ended ({type(exc).__name__})"
        self.stop()
        if status != "ok":
            self.error = value
            log.warning("the first tiles could not be mapped beside the driver (%s); the pipeline maps them", value)
            return None
        self.taken = True
        self.tiles, rows = value
        return rows

    def stop(self) -> None:
        self.stopped = True
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()

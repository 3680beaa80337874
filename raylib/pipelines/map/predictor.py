"""The map job's model actor: loads the model once, predicts class probabilities (and, for
the store, embeddings) for blocks of read tiles."""

from __future__ import annotations

import threading

import numpy as np

from raylib.errors import InputError
from raylib.models.adaptation import predict_scenes
from raylib.models.device import batch_shapes, memory_guard, placed
from raylib.models.landcover_model import HEAD_STATISTICS, LandcoverModel
from raylib.pipelines.common.object_store import shared
from raylib.pipelines.common.folder_shipping import local_folder
from raylib.pipelines.common.stages import set_torch_threads
from raylib.raster.read_block import EMBEDDING, OOD, PIXEL_OUT
from raylib.raster.reading import model_batches, rows_out


class Predictor:
    """Actor: loads the model once, predicts class probabilities for batches of tiles.

    Tiles arrive in their scene's integer type with their scaling and are scaled, resized
    and normalised on the model's device (``models.device``). An actor may take several
    blocks at once (``actor_concurrency``): Ray fetches and returns blocks in other threads
    while one runs the network (``lock``: the device, its pinned buffer), and a head
    model's head (numpy, on the host) runs beside the next batch's network. On a GPU blank
    batches of every padded shape (``models.device.batch_shapes``) go through the network
    at the start, so a batch that does not fit fails on the first block, naming the flag
    (an error raised in an actor's constructor reaches the driver as text only), and no
    batch waits for cuDNN to plan its shape mid-run. ``every_shape=False`` (an adapting
    run's first pass, which meets one or two shapes) plans the largest alone: the memory
    check, without planning shapes the pass never meets."""

    def __init__(self, model_ref, torch_threads: int | None, actors: int = 1, device: str = "auto",
                 tta: bool | None = None, batch_size: int = 64, embeddings: bool = False, precision: str = "fp32",
                 centres=None, spectral: bool = True, every_shape: bool = True):
        set_torch_threads(torch_threads, actors)
        uri = local_folder(model_ref, "ray-models")
        device, precision = placed(device, precision)  # a CPU runs fp32 (the driver's first tiles)
        self.model = LandcoverModel.load(uri, device=device, tta=tta, precision=precision)
        self.k = len(self.model.classes)
        self.batch_size = batch_size
        self.embeddings = embeddings
        self.centres = shared(centres)
        self.spectral = spectral
        self.lock = threading.Lock()
        self.unfit = None  # the warm-up's error, raised by the first call (a task's error reaches the driver whole)
        if device.startswith("cuda"):
            try:
                self.warm_up(every_shape)
            except InputError as exc:
                self.unfit = exc

    def warm_up(self, every_shape: bool = True) -> None:
        """The network on a blank batch of each shape a batch can take on the device
        (``models.device.batch_shapes``; the largest alone unless ``every_shape``), the
        largest first: a batch that does not fit the device fails now, naming the flag, and
        cuDNN plans every shape before real tiles."""
        man = self.model.manifest
        c, t = len(man.bands["channels"]), int(man.tile_size)
        g, o = np.ones(c, np.float32), np.zeros(c, np.float32)
        with memory_guard(self.batch_size):
            for rows in batch_shapes(self.batch_size)[:None if every_shape else 1]:
                x = np.zeros((rows, c, t, t), np.uint8)
                if self.model.net is None:
                    self.model.embed16(x, g, o)
                else:
                    self.model.net.predict_proba(x, tta=self.model.tta, gain=g, offset=o)

    def __call__(self, batch: dict) -> dict:
        """One read block in, its rows out; the model sees the block's readable tiles in
        batches of ``batch_size``."""
        if self.unfit is not None:
            raise self.unfit
        n = len(batch["idx"])
        probs = np.full((n, self.k), np.nan, np.float32)
        ood = np.full(n, np.nan, np.float32)
        emb = None
        stat_cols = HEAD_STATISTICS if self.model.needs_statistics else ()
        for sel, x, gain, offset in model_batches(batch, self.batch_size):
            stats = {k: batch[k][sel] for k in stat_cols} or None
            if self.model.net is None:  # a head model: the network under the lock, the head beside it
                with self.lock, memory_guard(self.batch_size):
                    e = self.model.embed16(x, gain, offset)
                scenes = batch["scene_idx"][sel] if self.centres else None
                out = (*predict_scenes(self.model, e, stats, scenes, self.centres, self.spectral), e)
            else:
                with self.lock, memory_guard(self.batch_size):
                    out = self.model.predict(x, with_embeddings=self.embeddings, stats=stats, gain=gain,
                                             offset=offset)
            probs[sel], ood[sel] = out[0], out[1]
            if self.embeddings:
                if emb is None:
                    emb = np.zeros((n, out[2].shape[1]), np.float16)
                emb[sel] = out[2]
        if PIXEL_OUT in batch:  # the read tasks ran the model's pixel classifier
            probs = self.model.with_pixels(probs, batch.pop(PIXEL_OUT))
        out = {**rows_out(batch, probs), OOD: ood}
        if self.embeddings:
            out[EMBEDDING] = emb if emb is not None else np.zeros((n, 0), np.float16)
        return out

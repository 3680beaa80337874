"""How the map and embed jobs size their work, in one place: tiles per model batch, per
Ray Data block and in the first block, blocks an actor takes at once, read tasks at once.
Measured figures behind the defaults: BENCHMARKS.md."""

from __future__ import annotations

import numpy as np

from raylib.config import MapConfig

GPU_BATCH, CPU_BATCH = 1024, 64  # tiles per model batch by default: a GPU is fed big batches


def model_batch(batch_size: int | None, num_gpus: float | None) -> int:
    """Tiles per model batch: as asked, else ``GPU_BATCH`` for GPU actors (a small batch
    leaves a GPU idle between launches), ``CPU_BATCH`` on CPU."""
    return int(batch_size or (GPU_BATCH if num_gpus else CPU_BATCH))


def first_tiles(cfg: MapConfig) -> int:
    """Tiles of the job's first block (the first rows): the batch size asked on CPU, else a
    CPU batch (``CPU_BATCH``: on a GPU job they are mapped beside the driver, or
    wait for the first big read)."""
    return cfg.batch_size if cfg.batch_size and not cfg.num_gpus else CPU_BATCH


def block_tiles(cfg: MapConfig) -> int:
    """Tiles per Ray Data block into the model (``cfg.block_tiles``, else by device); GPU
    actors take them as one batch of Ray Data's (it joins smaller blocks up to it).

    The model actor pays a fixed cost per block (fetching it, the batch conversions, the
    task's round trip), so GPU actors take a read task's tiles as one block. On CPU the
    model is the bottleneck anyway, and a big block holds the actor for seconds, during
    which the rows it has already returned wait to be fetched from it, so CPU actors take
    one read unit. The first rows never wait for a big block (``first_blocks``). Measured
    figures: BENCHMARKS.md."""
    if cfg.block_tiles:
        return cfg.block_tiles
    return cfg.read_batch_size * (cfg.read_units_per_task if cfg.num_gpus else 1)


def actor_concurrency(cfg: MapConfig) -> int:
    """Blocks a model actor takes at once (``cfg.actor_concurrency``, else by device).

    Each block costs the actor a fixed time besides the model (fetching it, the batch
    conversions, returning its rows). With one call at a time that time leaves the device
    idle; with several, Ray fetches and returns blocks in other threads while the model
    runs (one at a time). On CPU the model is the bottleneck and one call at a time keeps
    the first rows early. Measured figures: BENCHMARKS.md."""
    if cfg.actor_concurrency:
        return cfg.actor_concurrency
    return 8 if cfg.num_gpus else 1


def block_bytes(cfg: MapConfig, channels: int, tile_size: int, pixel_type: str = "float32") -> int:
    """Ray Data's block size target for this job: ``block_tiles`` of pixels in the job's
    transfer type, plus a margin, so that a read of exactly that many tiles stays one
    block; a bigger read is sliced into blocks of about that many."""
    return int(1.1 * block_tiles(cfg) * channels * tile_size * tile_size * np.dtype(pixel_type).itemsize)


def read_slots(cfg: MapConfig, cpus: float, actors: int) -> int:
    """Read tasks the cluster runs at once: its CPUs less the model actors', by ``read_cpus``."""
    return max(1, int(max(cpus - actors * cfg.actor_cpus, cfg.read_cpus) / cfg.read_cpus))

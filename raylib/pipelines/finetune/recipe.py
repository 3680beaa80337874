"""The fine-tuning recipe's pure parts: which bands the network takes (and where red, green
and blue sit among them), class weights, the one-cycle learning rate, and the settings a
resumed run must share with the run it resumes. No torch, no Ray."""

from __future__ import annotations

import math

import numpy as np

from raylib.config import FinetuneConfig
from raylib.errors import ConfigError
from raylib.raster import patches
from raylib.raster.bands import PRESETS

RGB_NAMES = ["red", "green", "blue"]


def one_cycle(t: float, peak: float, div: float = 25.0, final_div: float = 1e4, warmup: float = 0.3) -> float:
    """One-cycle learning rate at progress ``t`` in [0, 1]: cosine warm-up from ``peak/div``
    to ``peak`` over the first ``warmup`` share, then cosine annealing to ``peak/final_div``.
    A pure function of progress, so a resumed run continues the same schedule."""
    t = min(max(t, 0.0), 1.0)
    if t < warmup:
        lo, hi, u = peak / div, peak, t / warmup
    else:
        lo, hi, u = peak, peak / final_div, (t - warmup) / (1 - warmup)
    return hi + (lo - hi) * (1 + math.cos(math.pi * u)) / 2


def fingerprint(cfg: FinetuneConfig) -> dict:
    """The settings a resumed run must share with the run it resumes."""
    skip = {"out", "overwrite", "ray_address", "workers", "gpu", "cpus_per_worker", "torch_threads", "read_cpus",
            "keep_checkpoints", "max_failures", "storage_path", "name", "tta", "tile_size", "gsd"}
    return {k: v for k, v in cfg.model_dump().items() if k not in skip}


def _band_list(value, what: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in PRESETS:
            raise ConfigError(f"Unknown band preset {value!r} for {what}.",
                              f"use one of {sorted(PRESETS)}, 'all' (bands only) or a list like [4, 3, 2].")
        return list(PRESETS[value])
    return [int(b) for b in value]


def band_plan(cfg: FinetuneConfig, ls: patches.LabelledSet) -> dict:
    """Which file bands the model takes, where R, G, B are among them, and the scale."""
    bands = cfg.bands if cfg.bands is not None else ls.bands
    if bands == "all":
        indices = list(range(1, patches.band_count(ls.sources[0]) + 1))
    else:
        indices = _band_list(bands, "bands") or [1, 2, 3]
    if len(set(indices)) != len(indices):
        raise ConfigError(f"bands {indices} repeats a band.", "list each band once.")
    rgb = _band_list(cfg.rgb_bands, "rgb_bands")
    if rgb is None:
        if len(indices) != 3:
            raise ConfigError(
                f"{len(indices)} bands {indices} are selected but rgb_bands does not say which of them hold red, "
                "green and blue.",
                "set rgb_bands to the 1-based file bands of R, G, B (e.g. rgb_bands: sentinel2-eurosat, i.e. 4,3,2), "
                "so the backbone's pretrained RGB kernels land on them.")
        rgb = indices  # three bands are given in R, G, B order
    missing = [b for b in rgb if b not in indices]
    if len(rgb) != 3 or missing:
        raise ConfigError(f"rgb_bands {rgb} must name 3 of the selected bands {indices}.",
                          "list the red, green and blue bands, each among bands.")
    positions = [indices.index(b) for b in rgb]
    channels = [f"band{b}" for b in indices]
    for name, pos in zip(RGB_NAMES, positions):
        channels[pos] = name
    return {"indices": indices, "rgb": positions, "channels": channels,
            "scale": cfg.scale if cfg.scale is not None else ls.scale}


def class_weights(counts: np.ndarray, how: str, beta: float = 0.999) -> np.ndarray:
    """Loss weights per class, mean 1: inverse frequency, the effective number of samples
    ((1 - beta) / (1 - beta^n), Cui et al. 2019), or all ones."""
    counts = np.maximum(np.asarray(counts, np.float64), 1)
    if how == "inverse":
        w = 1.0 / counts
    elif how == "effective":
        w = (1 - beta) / (1 - np.power(beta, counts))
    else:
        w = np.ones_like(counts)
    return (w * len(w) / w.sum()).astype(np.float32)

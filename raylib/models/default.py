"""The built-in default model (offline MobileNetV2 + logistic regression on EuroSAT RGB),
built on first use into the local cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from raylib import console
from raylib.config import TrainHeadConfig
from raylib.errors import InputError
from raylib.io.cache import cache_dir, cached
from raylib.models.model_dir import DEFAULT_MODEL_NAME, MANIFEST

log = logging.getLogger(__name__)
DEFAULT_MODEL_VERSION = "v3"  # v2: resolution augmentation, EuroSAT reflectance stretch, temperature, OOD;
# v3: the spectral head (EuroSAT MS NDVI/NDWI) and scene-centre adaptation advised
BUILD_SECONDS = 110  # 300 patches per class, measured: 106 s on an idle 2-core machine (BENCHMARKS.md)


def _duration(seconds: float) -> str:
    return f"{max(5, round(seconds / 5) * 5):.0f} s" if seconds < 90 else f"{seconds / 60:.0f} minutes"


def find_eurosat() -> str:
    """Where EuroSAT RGB lives: ``LANDCOVER_EUROSAT_DIR``, or ``../shared/data/eurosat-rgb``."""
    env = os.environ.get("LANDCOVER_EUROSAT_DIR")
    if env:
        return env
    here = Path(__file__).resolve().parents[2]  # the repository (raylib/models/default.py)
    for cand in (Path.cwd() / "../shared/data/eurosat-rgb", here / "../shared/data/eurosat-rgb"):
        if cand.is_dir():
            return str(cand.resolve())
    raise InputError(
        "The built-in default model is trained on EuroSAT RGB on first use, and it was not found.",
        "download EuroSAT RGB (https://github.com/phelber/EuroSAT) and set LANDCOVER_EUROSAT_DIR to its folder, "
        "or pass --model.",
    )


def default_model_dir(per_class: int = 300) -> str:
    """The built-in default model directory, built on first use and cached."""
    out = cache_dir() / "models" / f"{DEFAULT_MODEL_NAME}-{DEFAULT_MODEL_VERSION}"

    def build(tmp: Path) -> None:
        from raylib.models.head_training import train_head_on_folder  # (scikit-learn, torch: first use only)

        data = find_eurosat()
        took = BUILD_SECONDS * per_class / 300
        console.say(f"building the built-in model, once (about {_duration(took)} on 2 cores): MobileNetV2 and a "
                    f"logistic-regression head on {per_class} EuroSAT patches per class from {data}, cached in {out}")
        cfg = TrainHeadConfig(data=data, out=str(tmp), per_class=per_class, name=DEFAULT_MODEL_NAME,
                              degrade=[1.5, 4.0], reflectance="eurosat-rgb", spectral="eurosat-ms", adapt=True)
        train_head_on_folder(cfg, argv=["(built-in default model)"])

    return str(cached(out, build, lambda d: (d / MANIFEST).exists()))

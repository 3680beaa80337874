"""The built-in default model (offline MobileNetV2 + logistic regression on EuroSAT RGB),
built on first use into the local cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from raylib.config import TrainHeadConfig
from raylib.errors import InputError
from raylib.io.cache import cache_dir, cached
from raylib.models.model_dir import DEFAULT_MODEL_NAME, MANIFEST

log = logging.getLogger(__name__)
DEFAULT_MODEL_VERSION = "v3"  # v2: resolution augmentation, EuroSAT reflectance stretch, temperature, OOD;
# v3: the spectral head (EuroSAT MS NDVI/NDWI) and scene-centre adaptation advised


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
        log.warning("building the default model (first use): MobileNetV2 + logistic regression on %d EuroSAT "
                    "patches per class from %s -> %s", per_class, data, out)
        cfg = TrainHeadConfig(data=data, out=str(tmp), per_class=per_class, name=DEFAULT_MODEL_NAME,
                              degrade=[1.5, 4.0], reflectance="eurosat-rgb", spectral="eurosat-ms", adapt=True)
        train_head_on_folder(cfg, argv=["(built-in default model)"])

    return str(cached(out, build, lambda d: (d / MANIFEST).exists()))

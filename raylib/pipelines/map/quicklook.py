"""The map's quick-looks: a class map per scene beside an RGB thumbnail."""

from __future__ import annotations

import logging
import os

import numpy as np

from raylib.config import MapConfig
from raylib.eval import reports
from raylib.io import resilience, storage
from raylib.models.model_dir import ModelManifest
from raylib.raster import tiling

log = logging.getLogger(__name__)


def write_quicklooks(cfg: MapConfig, run, manifest: ModelManifest, tag) -> dict[int, str]:
    """One PNG per mapped scene: the class of every tile beside an RGB thumbnail; ``tag(i,
    uri)`` names it (the output strategy's)."""
    import rasterio

    out = {}
    rgb = manifest.bands.get("rgb") or [0, 1, 2]  # where R, G, B are among the model's bands
    for i, p in enumerate(run.plans):
        if p.failure or i not in run.labels:
            continue
        thumb = None
        try:
            def read_thumb():
                with rasterio.open(storage.parse(p.uri).gdal_path) as ds:
                    return tiling.decimated_read(ds, p.bands, max_side=512, fill=p.scaler.fill_value)

            wd = resilience.Watchdog(storage.rasterio_env)
            try:
                sample = resilience.retrying(lambda: wd.call(read_thumb, cfg.read_timeout,
                                                             f"reading a thumbnail of {p.uri}"),
                                             retries=cfg.read_retries)
            finally:
                wd.close()
            fill = p.scaler.fill_value
            valid = ~np.all(sample == fill, axis=0) if fill is not None else np.ones(sample.shape[1:], bool)
            if sample.shape[0] >= 3:
                thumb = reports.stretch(sample[rgb], valid)
        except Exception as exc:  # a quick-look is a picture: its loss is logged, the map stands
            log.warning("no thumbnail for %s: %s", p.uri, resilience.classify(exc)[1])
        png = reports.quicklook_png(f"{p.uri}  |  model {manifest.id}", run.labels[i], manifest.classes, thumb,
                                    (p.info.height, p.info.width), p.layout.tile)
        stem = os.path.splitext(storage.basename(p.uri))[0]
        uri = storage.join(cfg.out, "_quicklook", f"{tag(i, p.uri)}-{stem}.png")
        storage.write_bytes(uri, png)
        out[i] = uri
    return out

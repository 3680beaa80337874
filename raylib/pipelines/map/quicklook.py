"""The map's quick-looks: a class map per scene beside an RGB thumbnail, drawn as soon as
the scene's last tile is back (the driver keeps no label grid of a finished scene)."""

from __future__ import annotations

import logging

import numpy as np

from raylib.eval import reports
from raylib.formats import mapfile
from raylib.io import resilience, storage
from raylib.pipelines.common.tile_grid import TileGrid
from raylib.raster import radiometry, scene_source, windows

log = logging.getLogger(__name__)


def write_quicklook(out: str, tag: str, meta: dict, look: TileGrid, classes: list[str], model_id: str,
                    rgb: list[int], read_timeout: float, read_retries: int, channels: tuple[str, ...] = (),
                    grid=None, fill: float | None = None) -> str:
    """One PNG: the class of every tile of the scene (``look``, its grid: paler where the
    map is less sure, hatched where a tile is unlike the training tiles) beside an RGB
    thumbnail of the scene (``meta``: ``source.scene_meta``; ``channels``, ``grid``, ``fill``:
    what ``scene_source.gdal_path`` needs for a STAC item or a ground grid). Returns its URI."""
    import rasterio

    uri, fill = meta["uri"], meta["fill"]
    thumb = None
    try:
        def read_thumb():
            with rasterio.open(scene_source.gdal_path(uri, channels, grid, fill)) as ds:
                return windows.decimated_read(ds, meta["bands"], max_side=512, fill=fill)

        wd = resilience.Watchdog(storage.rasterio_env)
        try:
            sample = resilience.retrying(lambda: wd.call(read_thumb, read_timeout, f"reading a thumbnail of {uri}"),
                                         retries=read_retries)
        finally:
            wd.close()
        valid = ~np.all(sample == fill, axis=0) if fill is not None else np.ones(sample.shape[1:], bool)
        if sample.shape[0] >= 3:
            sensor = (meta.get("radiometry") or {}).get("sensor")
            thumb = reports.stretch(sample[rgb], valid, common=sensor in radiometry.DISPLAY_SENSORS)
    except Exception as exc:  # a quick-look is a picture: its loss is logged, the map stands
        log.warning("no thumbnail for %s: %s", uri, resilience.classify(exc)[1])
    info = meta["info"]
    png = reports.quicklook_png(f"{uri}  |  model {model_id}", look.labels, classes, thumb,
                                (info["height"], info["width"]), tuple(meta["tile"]), look.confidence, look.ood)
    dest = mapfile.quicklook_uri(out, tag, uri)
    storage.write_bytes(dest, png)
    return dest


class Quicklooks:
    """Quick-looks drawn while the run goes, by a few threads of the driver (a thumbnail
    read and a PNG each; the label grid is handed over, so the driver keeps none of a
    finished scene); ``result()`` waits for them."""

    THREADS = 2

    def __init__(self, out: str, classes: list[str], model_id: str, rgb: list[int], read_timeout: float,
                 read_retries: int, tag, channels: tuple[str, ...] = (), grid=None, fill: float | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.args = (classes, model_id, rgb, read_timeout, read_retries, channels, grid, fill)
        self.out, self.tag = out, tag  # tag(meta) -> the PNG's name prefix (the output strategy's)
        self.pool = ThreadPoolExecutor(max_workers=self.THREADS, thread_name_prefix="quicklook")
        self.pending: dict = {}  # future -> scene uri
        self.written: dict[str, str] = {}  # scene uri -> PNG uri

    def submit(self, meta: dict, look: TileGrid) -> None:
        while len(self.pending) >= 4 * self.THREADS:  # bounded: a slow store does not pile up grids
            self._harvest(block=True)
        fut = self.pool.submit(write_quicklook, self.out, self.tag(meta), meta, look, *self.args)
        self.pending[fut] = meta["uri"]
        self._harvest(block=False)

    def _harvest(self, block: bool) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(self.pending), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in done:
            uri = self.pending.pop(fut)
            try:
                self.written[uri] = fut.result()
            except Exception as exc:  # a picture: logged, the map stands
                log.warning("no quick-look for %s: %s", uri, exc)

    def result(self) -> dict[str, str]:
        while self.pending:
            self._harvest(block=True)
        self.pool.shutdown()
        return self.written

"""The tiles of an embedding store read again from their scenes, exactly as the map read
them: each tile's scene re-planned with the store's recorded map settings (bands, scaling,
sensor, grid) and read through the map's own read stage (``reading.read_tiles``: the same
windows, resampling, mirror fill and scaling). ``export-tiles`` writes them as an image
folder; ``train-head --pixels`` reads their spectral bands' pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raylib.config import MapConfig, SceneRead
from raylib.errors import InputError
from raylib.formats import embstore
from raylib.io import storage
from raylib.models.default import default_model_dir
from raylib.models.landcover_model import LandcoverModel
from raylib.pipelines.common.planning import plan_scene, resolve_grid
from raylib.raster.reading import read_tiles, scaled_pixels

COLUMNS = [*embstore.TILE_COLUMNS, "status"]


def _map_config(meta: dict, scene: str):

    grid = meta["preprocessing"]["grid"]
    model = meta.get("model_uri")
    if model and not storage.parse(model).is_s3 and not Path(model).exists():
        if meta.get("backbone") != "default":
            raise InputError(f"The store was made with model {model}, which is not at hand.",
                             "copy that model directory back to its path (the read settings are in it).")
        model = default_model_dir()  # the built-in model, built again on this machine
    return MapConfig(scenes=[scene], out=".", model=model, tile_size=grid["tile_size"], stride=grid["stride"],
                     gsd=grid["gsd"] if grid["gsd"] is not None else "native",
                     grid="ground" if grid.get("ground") else "scene",
                     **SceneRead.recorded(meta["preprocessing"]).model_dump(exclude_none=True))


def read_store_tiles(meta: dict, table, rows: np.ndarray,
                     pixel_fn=None) -> tuple[np.ndarray, list[dict], np.ndarray | None]:
    """Pixels (N, C, T, T) float32 of the store rows ``rows`` (of a store with metadata
    ``meta``), as the map's model saw them, per tile its georeferencing (crs, transform),
    and with ``pixel_fn`` the read stage's ``pixel_out`` (N, width) (else None). A scene
    that moved or changed is an error naming it."""
    col = {c: table.column(c).to_pylist() for c in COLUMNS}
    pixels, geo = None, [None] * len(rows)
    pixel_out = None if pixel_fn is None else np.full((len(rows), pixel_fn.width), np.nan, np.float32)
    by_scene: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_scene.setdefault(col["scene"][int(r)], []).append(i)
    for scene, members in by_scene.items():
        cfg = _map_config(meta, scene)
        manifest = LandcoverModel.read_manifest(cfg.model)
        grid = resolve_grid(cfg, manifest)
        plan = plan_scene(scene, cfg, manifest, grid)
        if plan.failure:
            raise InputError(f"Scene {scene} of the store cannot be read now ({plan.failure[1]}).",
                             "put the scene back where the store found it.")
        n_cols = len(plan.layout.col_offs)
        local = [int(col["grid_row"][int(rows[i])]) * n_cols + int(col["grid_col"][int(rows[i])]) for i in members]
        wins = plan.layout.windows()
        for i, k in zip(members, local):
            r = int(rows[i])
            if k >= len(wins) or (wins["row_off"][k], wins["col_off"][k]) != (col["row_off"][r], col["col_off"][r]):
                raise InputError(f"Tile {col['tile_id'][r]} is not where the store put it in {scene}: the scene or "
                                 "the store's settings changed.", "build the store again from the scenes as they are.")
        spec = plan.read_spec(grid.tile_size, cfg.max_fill_fraction, cfg.max_tile_cloud)
        out = read_tiles({"spec": [spec] * len(local), "base": [0] * len(local), "lo": local,
                          "hi": [k + 1 for k in local]}, cfg.read_timeout, cfg.read_retries, pixel_fn)
        bad = [col["tile_id"][int(rows[members[j]])] for j in np.flatnonzero(out["status"] != "ok")]
        if bad:
            raise InputError(f"{len(bad)} labelled tile(s) of {scene} could not be read now (e.g. {bad[0]}: "
                             f"{out['error'][np.flatnonzero(out['status'] != 'ok')[0]]}).",
                             "check the scene, or leave those tiles out of the labels.")
        if pixels is None:
            pixels = np.zeros((len(rows), *out["pixels"].shape[1:]), np.float32)
        pixels[members] = scaled_pixels(out)
        if pixel_out is not None:
            pixel_out[members] = out["pixel_out"]
        a, b, c, d, e, f = plan.info.transform[:6]
        th, tw = plan.layout.tile
        for i in members:
            r = int(rows[i])
            x0, y0 = a * col["col_off"][r] + b * col["row_off"][r] + c, d * col["col_off"][r] + e * col["row_off"][r] + f
            sx, sy = tw / grid.tile_size, th / grid.tile_size  # native pixels per output pixel
            geo[i] = {"crs": plan.info.crs, "transform": (a * sx, b * sy, x0, d * sx, e * sy, y0)}
    return pixels, geo, pixel_out

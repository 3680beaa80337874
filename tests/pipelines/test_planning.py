"""pipelines.common.planning on rasters made in memory (rasterio MemoryFile) and written as
the scene files the planner fingerprints: grids, bands, scaling, and the scenes that cannot
be mapped (their failure, not an exception)."""

import numpy as np
import pytest
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from raylib.config import MapConfig
from raylib.errors import ConfigError
from raylib.models.model_dir import ModelManifest
from raylib.pipelines.common import planning
from raylib.raster import tiling
from raylib.raster.reading import ReadSpec

MAN = ModelManifest(id="m@0", kind="head", backbone={}, head={}, classes=["a", "b"], tile_size=16, gsd=10.0,
                    bands={"channels": ["red", "green", "blue"], "mean": [0.3] * 3, "std": [0.1] * 3},
                    metrics={}, created_by="")


def _raster(path, count=4, dtype="uint16", crs="EPSG:32618", res=10.0, nodata=0) -> str:
    with MemoryFile() as mf:
        ds = mf.open(driver="GTiff", width=64, height=48, count=count, dtype=dtype, crs=crs, nodata=nodata,
                     transform=from_origin(500000, 4400000, res, res))
        rng = np.random.default_rng(0)
        ds.write(rng.integers(100, 3000, (count, 48, 64)).astype(dtype))
        ds.close()
        path.write_bytes(mf.read())
    return str(path)


def _cfg(**kw):
    return MapConfig(scenes=["unused"], out="/tmp/unused", **kw)


def test_a_scene_is_planned_on_the_model_grid(tmp_path):
    uri = _raster(tmp_path / "a.tif")
    cfg = _cfg(bands=[3, 2, 1], scaling="match")
    grid = planning.resolve_grid(cfg, MAN)
    assert (grid.tile_size, grid.stride, grid.gsd) == (16, 16, 10.0)
    plan = planning.plan_scene(uri, cfg, MAN, grid)
    assert plan.failure is None and plan.bands == [3, 2, 1]
    assert plan.layout.tile == (16, 16) and plan.n_tiles == 4 * 3
    assert plan.radiometry["scaling"] == "match" and plan.scaler.fill_value == 0
    spec = ReadSpec.from_json(plan.read_spec(16))  # what a read task gets, typed again
    assert spec.bands == [3, 2, 1] and spec.tile_size == 16 and spec.layout == plan.layout
    assert spec.uri == uri and spec.fill_value == 0 and ReadSpec.from_json(spec.to_json()) == spec


def test_coarser_gsd_reads_larger_windows(tmp_path):
    uri = _raster(tmp_path / "a.tif", res=30.0)
    cfg = _cfg(bands=[1, 2, 3])
    plan = planning.plan_scene(uri, cfg, MAN, planning.resolve_grid(cfg, MAN))
    native = planning.plan_scene(uri, _cfg(bands=[1, 2, 3], gsd="native"), MAN,
                                 planning.resolve_grid(_cfg(gsd="native"), MAN))
    assert plan.failure is None and native.failure is None
    assert plan.layout.tile == (5, 5)  # 16 px at 10 m = 160 m = 5.33 px at 30 m
    assert native.layout.tile == (16, 16)


def test_scenes_that_cannot_be_mapped_get_their_reason(tmp_path):
    few = _raster(tmp_path / "few.tif", count=2)
    no_crs = _raster(tmp_path / "nocrs.tif", crs=None)
    cplx = _raster(tmp_path / "cplx.tif", dtype="complex64")
    cfg = _cfg()
    grid = planning.resolve_grid(cfg, MAN)
    plans = [planning.plan_scene(u, cfg, MAN, grid) for u in (few, no_crs, cplx)]
    reasons = [p.failure[0] if p.failure else None for p in plans]
    assert reasons == ["band_mismatch", "unsupported", "unsupported"], [p.failure for p in plans]
    assert plans[0].layout is not None and plans[0].n_tiles == 12  # the header was read: its tiles become error rows
    assert [p.n_tiles for p in plans[1:]] == [1, 12]  # no CRS: no grid, one row; complex64: its header was read
    assert "complex64" in plans[2].failure[1]


def test_bad_band_setting_is_a_config_error(tmp_path):
    """An unknown preset is refused at the edge, naming the presets; a band the scene lacks
    when its header is read."""
    from raylib import config

    with pytest.raises(ConfigError, match="'no-such-preset' is no band preset: .* or one of rgb, bgr, naip"):
        config.validate(MapConfig, {"scenes": ["unused"], "out": "/tmp/unused", "bands": "no-such-preset"})
    uri = _raster(tmp_path / "a.tif")  # (4 bands)
    plan = planning.plan_scene(uri, _cfg(bands=[3, 2, 9]), MAN, tiling.GridSpec(16, 16, 10.0))
    assert plan.failure[0] == "band_mismatch" and "has 4 band(s) but bands [3, 2, 9]" in plan.failure[1]


def test_a_sentinel2_l2a_stac_item_without_raster_bands_is_read_as_reflectance(tmp_path):
    """The item's own properties name the sensor (its id is no product id, its bands carry no
    scale): auto scaling takes reflectance, and the plan says which rule recognised it."""
    import json

    from ..stac_catalog import absolute, item

    doc = absolute([item(tmp_path, item_id="S2A_21JXN_20200518_0_L2A", collection="sentinel-2-l2a")], tmp_path)[0]
    doc["properties"].update(platform="sentinel-2a", constellation="sentinel-2", instruments=["msi"])
    uri = tmp_path / "S2A_21JXN_20200518_0_L2A.json"
    uri.write_text(json.dumps(doc))
    man = ModelManifest(**{**MAN.__dict__, "bands": {**MAN.bands, "reflectance": {
        "gain": [3.5, 3.6, 3.6], "offset": [0.01, 0.005, 0.004]}}})
    cfg = _cfg()  # (the channels: the model's, red, green, blue)
    plan = planning.plan_scene(str(uri), cfg, man, planning.resolve_grid(cfg, man))
    assert plan.failure is None, plan.failure
    assert plan.radiometry["scaling"] == "reflectance"
    assert plan.radiometry["sensor_rule"].startswith("STAC item: Sentinel-2 L2A (platform=sentinel-2a")
    landsat = absolute([item(tmp_path / "l", item_id="L8_item_0", collection="landsat-test")], tmp_path / "l")[0]
    (tmp_path / "l8.json").write_text(json.dumps(landsat))  # platform landsat-8, no level: per-scene match
    plan = planning.plan_scene(str(tmp_path / "l8.json"), cfg, man, planning.resolve_grid(cfg, man))
    assert plan.radiometry["scaling"] == "match" and "unknown processing level" in plan.radiometry["sensor_rule"]
    assert "the last resort" in plan.radiometry["warning"]  # said out loud, in the plan and the map's summary


def test_match_is_the_last_resort_and_says_so(tmp_path):
    """A scene no rule recognises is matched, with a warning in its plan; a scene too small to
    stand for the model's training set is not matched; --scaling match is obeyed as asked."""
    import rasterio
    from rasterio.windows import Window

    from ..conftest import LANDSAT

    cfg = _cfg(bands=[3, 2, 1])  # no band preset: nothing tells the sensor
    big = tmp_path / "scene.tif"
    big.symlink_to(LANDSAT)
    plan = planning.plan_scene(str(big), cfg, MAN, planning.resolve_grid(cfg, MAN))
    assert plan.radiometry["scaling"] == "match" and "the last resort" in plan.radiometry["warning"]
    small = tmp_path / "small.tif"  # 40,000 pixels of the scene: fewer than 16 tiles of 64 px
    with rasterio.open(LANDSAT) as src:
        win = Window(800, 800, 200, 200)
        profile = {**src.profile, "width": 200, "height": 200, "transform": src.window_transform(win), "tiled": False}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(small, "w", **profile) as dst:
            dst.write(src.read(window=win))
    plan = planning.plan_scene(str(small), cfg, MAN, planning.resolve_grid(cfg, MAN))
    assert plan.radiometry["scaling"] == "dtype" and "only 40,000 valid pixels" in plan.radiometry["warning"]
    asked = _cfg(bands=[3, 2, 1], scaling="match")
    plan = planning.plan_scene(str(small), asked, MAN, planning.resolve_grid(asked, MAN))
    assert plan.radiometry["scaling"] == "match" and "warning" in plan.radiometry

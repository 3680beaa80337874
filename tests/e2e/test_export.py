"""landcover export of a real map: the shipped NAIP scene mapped on Ray with the test model,
exported as COGs and read back: every tile's class and confidence, the quick-look's palette."""

import numpy as np
import rasterio

from raylib.cli import main
from raylib.config import MapConfig
from raylib.eval import reports
from raylib.raster.footprints import footprints
from raylib.formats import cog
from raylib.formats.mapfile import read_map, read_metadata
from raylib.pipelines.map.run import run_map

from ..conftest import NAIP


def test_a_real_map_exported_reads_back_tile_by_tile(ray_session, test_model, tmp_path):
    out = str(tmp_path / "map")
    s = run_map(MapConfig(scenes=[str(NAIP)], out=out, model=test_model["uri"], bands="naip", cog=True))
    assert s["cog"]["collection"].endswith("_cog/collection.json") and len(s["cog"]["rasters"]) == 2
    assert s["stac"]["map"]["items"] >= 1 and s["stac"]["map"]["rows"] == s["tiles"]  # the run's parts in STAC
    assert main(["export", "--map", out, "--out", str(tmp_path / "x"), "--resolution", "5"]) == 0
    table = read_map(out)
    classes = read_metadata(out)["classes"]
    fp = footprints(table)
    ok = np.asarray(table.column("status").to_pylist(), object)[fp.rows] == "ok"
    want = table.column("label_index").fill_null(-1).to_numpy(zero_copy_only=False)[fp.rows] + 1
    conf = np.round(np.asarray(table.column("confidence").to_pylist(), float)[fp.rows][ok] * 100)
    xs, ys = (fp.box[:, 0] + fp.box[:, 2]) / 2, (fp.box[:, 1] + fp.box[:, 3]) / 2
    crs = fp.crs[0]
    with rasterio.open(tmp_path / "x" / f"classes-epsg{crs.split(':')[1]}.tif") as ds:
        got = np.array([v[0] for v in ds.sample(zip(xs, ys))])
        cmap = ds.colormap(1)
        data = ds.read(1)
        assert ds.overviews(1)
    with rasterio.open(tmp_path / "x" / f"classes-epsg{crs.split(':')[1]}.tif", overview_level=0) as ov:
        assert set(np.unique(ov.read(1))) <= set(np.unique(data))
    assert ok.sum() >= 40 and (got[ok] == want[ok]).all() and (got[~ok] == 0).all()
    with rasterio.open(tmp_path / "x" / f"confidence-epsg{crs.split(':')[1]}.tif") as ds:
        assert (np.array([v[0] for v in ds.sample(zip(xs[ok], ys[ok]))]) == conf).all()
    assert [cmap[i + 1][:3] for i in range(len(classes))] == [tuple(c) for c in reports.palette(classes)]
    for name in ("classes", "confidence"):
        assert not cog.validate(str(tmp_path / "x" / f"{name}-epsg{crs.split(':')[1]}.tif"))
    with rasterio.open(f"{out}/_cog/classes-epsg{crs.split(':')[1]}.tif") as ds:  # map --cog: one pixel a tile
        assert np.array([v[0] for v in ds.sample(zip(xs, ys))]).tolist() == got.tolist()


def test_a_raster_larger_than_the_budget_is_blocks_under_a_vrt(ray_session, tmp_path):
    """--max-pixels below a zone's raster: blocks of rows written by Ray Data tasks, each a
    valid COG with its STAC Item, mosaicked by a VRT that reads as the one-block raster."""
    import json

    from ..pipelines.test_change import GRID, scene, write_map
    from raylib.formats import stac_items
    from raylib.raster import tiling

    info = scene()
    big = type(info)(info.uri, 64 * 6, 48 * 6, 3, "uint16", info.crs, info.transform, info.res, 0, True)
    n = tiling.tile_table(big, GRID).num_rows  # 24 x 18 tiles
    m = write_map(tmp_path / "m", [(i * 5 + i // 24) % 3 for i in range(n)], "2023-06-01", info=big)
    assert main(["export", "--map", m, "--out", str(tmp_path / "one"), "--resolution", "20"]) == 0
    assert main(["export", "--map", m, "--out", str(tmp_path / "blocks"), "--resolution", "20",
                 "--max-pixels", "8000"]) == 0
    r = json.loads((tmp_path / "blocks" / "export.json").read_text())
    assert r["blocks"] == 4 and r["zones"][0]["blocks"] == 4  # 192 x 144 px, 41 rows a block
    parts = sorted((tmp_path / "blocks").glob("classes-epsg32618-b*.tif"))
    assert len(parts) == 4 and all(not cog.validate(str(p)) for p in parts)
    for kind in ("classes", "confidence"):
        with rasterio.open(tmp_path / "one" / f"{kind}-epsg32618.tif") as a, \
                rasterio.open(tmp_path / "blocks" / f"{kind}-epsg32618.vrt") as b:
            assert a.transform == b.transform and a.crs == b.crs and (a.read() == b.read()).all()
            if kind == "classes":
                assert a.colormap(1)[1] == b.colormap(1)[1] and b.nodata == 0
    items = sorted((tmp_path / "blocks" / "items").glob("*.json"))
    assert len(items) == 8 and all(stac_items.validate(json.loads(p.read_text())) == [] for p in items)

"""``landcover map --stac``: a static catalog of band COGs on the S3 server, mapped as the
same pixels as a GeoTIFF the user lists; an item without a band is its error row; bad
searches are one clear line."""

import json
import os

import numpy as np
import pytest

from raylib.cli import main
from raylib.config import MapConfig
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.pipelines.map.run import run_map

from .. import stac_catalog as sc


@pytest.fixture(scope="module")
def s3_catalog(tmp_path_factory, s3_server, bucket):
    """On S3: item 'a' (red, green, blue COGs; named like the Landsat scene) and item 'b'
    without a blue asset; and the window of 'a' as one GeoTIFF."""
    root = tmp_path_factory.mktemp("stac-map")
    cat = root / "cat"
    a = sc.item(cat / "landsat-test" / sc.ITEM_ID)
    b = sc.item(cat / "landsat-test" / "b", item_id="b", datetime="2020-06-19T13:30:00Z",
                bands={"red": 3, "green": 2})
    sc.static_catalog(cat, {"landsat-test": [a, b]})
    for p in cat.rglob("*"):
        if p.is_file():
            s3_server["client"].upload_file(str(p), bucket, f"stac-map/{p.relative_to(cat)}")
    return {"catalog": f"s3://{bucket}/stac-map/catalog.json", "scene": sc.write_scene(root / "scene")}


def _sorted(table):
    return table.sort_by([("grid_row", "ascending"), ("grid_col", "ascending")])


def test_a_stac_item_maps_like_the_same_pixels_as_a_geotiff(ray_session, s3_catalog, test_model, tmp_path):
    base = dict(model=test_model["uri"], fill_value=0)
    s1 = run_map(MapConfig(scenes=[str(s3_catalog["scene"])], bands="landsat8-b234", out=str(tmp_path / "tif"), **base))
    out = f"s3://maps/stac-{tmp_path.name}"
    s2 = run_map(MapConfig(stac=s3_catalog["catalog"], datetime="2020-05", out=out, **base))
    assert s2["scenes"] == 1 and s2["counts"] == s1["counts"] and s2["tiles"] == s1["tiles"] == 169
    tif, item = _sorted(read_map(str(tmp_path / "tif"))), _sorted(read_map(out))
    assert item["label"].equals(tif["label"])
    np.testing.assert_allclose(np.array(item["probs"].to_pylist()), np.array(tif["probs"].to_pylist()), atol=1e-6)
    # the same sensor and reflectance scaling (the item id is the scene's product id)
    (r1,), (r2,) = s1["radiometry_examples"].values(), s2["radiometry_examples"].values()
    assert (r2["sensor"], r2["scaling"], r2["sun_elevation"]) == (r1["sensor"], r1["scaling"], r1["sun_elevation"])
    # the item is kept with the map, its hrefs absolute; the quick-look reads the VRT
    kept = f"{out}/_inputs/stac/landsat-test/{sc.ITEM_ID}.json"
    assert item["scene"].to_pylist()[0] == kept
    assert json.loads(storage.read_bytes(kept))["assets"]["red"]["href"].startswith("s3://data/stac-map/")
    assert s2["quicklooks_written"] == 1
    # --overwrite clears the map and keeps the items
    s3 = run_map(MapConfig(stac=s3_catalog["catalog"], datetime="2020-05", out=out, overwrite=True, **base))
    assert s3["counts"] == s2["counts"] and storage.exists(kept)


def test_an_item_without_a_band_is_an_error_row(ray_session, s3_catalog, test_model, tmp_path):
    s = run_map(MapConfig(stac=s3_catalog["catalog"], model=test_model["uri"], fill_value=0, out=str(tmp_path / "m"),
                          max_error_share=1.0))
    assert s["scenes"] == 2 and s["error_reasons"].get("band_mismatch") == 1
    (uri, why), = s["scenes_failed"].items()
    assert uri.endswith("/landsat-test/b.json") and why == "band_mismatch"
    rows = read_map(str(tmp_path / "m")).to_pydict()
    bad = [e for e, u in zip(rows["error"], rows["scene"]) if u == uri]
    assert len(bad) == 1 and "no asset or band 'blue'" in bad[0]
    assert sum(st == "ok" for st in rows["status"]) == s["counts"]["ok"] > 0


@pytest.mark.parametrize("case", ["no_items", "bad_datetime", "bad_bbox", "bands_with_stac", "no_api"])
def test_bad_searches_are_one_clear_line(case, ray_session, s3_catalog, test_model, tmp_path, capsys):
    out = str(tmp_path / "out")
    args, needle = {
        "no_items": (["--bbox", "-10,-10,-9,-9"], "No STAC items in"),
        "bad_datetime": (["--datetime", "2020-13-01"], "datetime '2020-13-01'"),
        "bad_bbox": (["--bbox", "10,0,5,1"], "bbox"),
        "bands_with_stac": (["--bands", "1,2,3"], "stac_bands"),
        "no_api": (["--stac", "http://127.0.0.1:9/stac"], "cannot be reached"),
    }[case]
    base = ["map", "--model", test_model["uri"], "--out", out]
    if "--stac" not in args:
        base += ["--stac", s3_catalog["catalog"]]
    rc = main(base + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and "Fix:" in err and err.count("\n") == 1
    assert not os.path.exists(out)


def test_a_ground_grid_shares_tile_ids_across_dates_and_sources(ray_session, s3_catalog, test_model, tmp_path):
    from ..conftest import NAIP

    naip = [str(NAIP).replace("20150926", d) for d in ("20100629", "20150926", "20200831")]
    s = run_map(MapConfig(scenes=naip, grid="ground", model=test_model["uri"], out=str(tmp_path / "naip")))
    assert s["tiles"] == 3 * 56 and s["grid"]["ground"] is True
    t = read_map(str(tmp_path / "naip")).to_pydict()
    per_id: dict = {}
    for tid, scene, geom in zip(t["tile_id"], t["scene"], t["geometry"]):
        per_id.setdefault(tid, []).append((scene, geom))
    assert len(per_id) == 56 and all(len(v) == 3 and len({g for _, g in v}) == 1 for v in per_id.values())
    # a STAC item and a GeoTIFF of the same pixels, on the ground grid: the same tiles, ids and predictions
    base = dict(model=test_model["uri"], fill_value=0, grid="ground")
    run_map(MapConfig(scenes=[str(s3_catalog["scene"])], bands="landsat8-b234", out=str(tmp_path / "tif"), **base))
    run_map(MapConfig(stac=s3_catalog["catalog"], datetime="2020-05", out=str(tmp_path / "item"), **base))
    tif, item = (read_map(str(tmp_path / k)).sort_by("tile_id") for k in ("tif", "item"))
    assert item["tile_id"].equals(tif["tile_id"]) and item.num_rows == 13 * 13  # 7,680 m across: 13 tiles of 640 m
    assert item["label"].equals(tif["label"]) and item["status"].equals(tif["status"])
    ok = np.array(item["status"].to_pylist()) == "ok"
    assert 0 < ok.sum() < 13 * 13  # the grid's margin beyond the window is nodata
    probs = [np.array([p for p, k in zip(t["probs"].to_pylist(), ok) if k], float) for t in (item, tif)]
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-6)

"""``landcover map --stac``: a static catalog of band COGs on the S3 server, mapped as the
same pixels as a GeoTIFF the user lists; an item without a band is its error row; bad
searches are one clear line."""

import json
import os
import re

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
    base = dict(model=test_model["uri"], fill_value=0, grid="scene")  # (a STAC map's default is the ground grid)
    s1 = run_map(MapConfig(scenes=[str(s3_catalog["scene"])], bands="landsat8-b234", out=str(tmp_path / "tif"), **base))
    out = f"s3://maps/stac-{tmp_path.name}"
    s2 = run_map(MapConfig(stac=s3_catalog["catalog"], datetime="2020-05", out=out, **base))
    assert s2["scenes"] == 1 and s2["counts"] == s1["counts"] and s2["tiles"] == s1["tiles"] == 169
    tif, item = _sorted(read_map(str(tmp_path / "tif"))), _sorted(read_map(out))
    assert item["label"].equals(tif["label"]) and item["status"].equals(tif["status"])
    np.testing.assert_allclose(np.array(item["probs"].drop_null().to_pylist()),
                               np.array(tif["probs"].drop_null().to_pylist()), atol=1e-6)
    # the same sensor and reflectance scaling (the item id is the scene's product id)
    (r1,), (r2,) = s1["radiometry_examples"].values(), s2["radiometry_examples"].values()
    assert (r2["sensor"], r2["scaling"], r2["sun_elevation"]) == (r1["sensor"], r1["scaling"], r1["sun_elevation"])
    # the item is kept with the map, its hrefs absolute; the quick-look reads the VRT
    kept = f"{out}/_inputs/stac/landsat-test/{sc.ITEM_ID}.json"
    assert item["scene"].to_pylist()[0] == kept
    assert json.loads(storage.read_bytes(kept))["assets"]["red"]["href"].startswith("s3://data/stac-map/")
    assert s2["quicklooks_written"] == 1
    # --overwrite clears the map and keeps the items; on the session's logical GPU, the same map
    s3 = run_map(MapConfig(stac=s3_catalog["catalog"], datetime="2020-05", out=out, overwrite=True, num_gpus=1, **base))
    assert s3["counts"] == s2["counts"] and storage.exists(kept)
    assert _sorted(read_map(out))["label"].equals(tif["label"])


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


@pytest.mark.parametrize("case", ["no_items", "bad_datetime", "bad_bbox", "bands_with_stac", "no_api", "aoi_outside",
                                  "aoi_and_bbox", "aoi_of_points"])
def test_bad_searches_are_one_clear_line(case, ray_session, s3_catalog, test_model, tmp_path, capsys):
    out = str(tmp_path / "out")
    far = _box_geojson(tmp_path / "far.geojson", 10.0, 10.0, 10.1, 10.1)
    points = tmp_path / "points.geojson"
    points.write_text(json.dumps({"type": "Point", "coordinates": [-54.5, -25.3]}))
    args, needle = {
        "aoi_outside": (["--aoi", far], "No STAC items in"),
        "aoi_and_bbox": (["--aoi", far, "--bbox", "-10,-10,-9,-9"], "give aoi (polygons) or bbox"),
        "aoi_of_points": (["--aoi", str(points)], "holds no polygon (it holds Point)"),
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


def test_a_quality_asset_gives_cloud_shares_and_cloudy_rows(ray_session, test_model, tmp_path):
    """An item with a Sentinel-2 SCL asset, mapped at its native 30 m (64-pixel tiles on the
    mask's blocks): each tile's cloud, shadow and snow shares are exact; tiles over
    max_tile_cloud are 'cloudy' rows (not failures), a value SCL does not define is a
    'cloud_mask' row; the item's datetime, id and collection are on every row."""
    cat = tmp_path / "cat"
    mask = sc.scl_mask()
    mask[200, 10] = 200  # no SCL class: tile (3, 0)
    it = sc.item(cat / "s2" / "c", item_id="c", collection="s2", datetime="2021-07-04T10:20:30Z",
                 quality=("scl", mask, {}))
    # an scl asset whose classes name no cloud: the item's error row
    odd = sc.item(cat / "s2" / "d", item_id="d", collection="s2", quality=("scl", mask, {"classification:classes": [
        {"value": 4, "name": "vegetation"}, {"value": 9, "name": "bright"}]}))
    sc.static_catalog(cat, {"s2": [it, odd]})
    out = str(tmp_path / "m")
    s = run_map(MapConfig(stac=str(cat / "catalog.json"), model=test_model["uri"], fill_value=0, gsd="native",
                          grid="scene", stac_bands=["red", "green", "blue"], out=out, max_error_share=1.0))
    assert s["tiles"] == 17 and s["error_reasons"] == {"cloudy": 3, "cloud_mask": 2}
    assert s["error_share"] == round(2 / 17, 6)  # cloudy is data, not a failure
    t = read_map(out).to_pydict()
    (bad,) = [e for e, i in zip(t["error"], t["item_id"]) if i == "d"]
    assert bad.startswith("cloud_mask: STAC item d: cloud asset 'scl' has classes vegetation, bright, none of them")
    t = {k: [v for v, i in zip(col, t["item_id"]) if i == "c"] for k, col in t.items()}
    at = {(r, c): i for i, (r, c) in enumerate(zip(t["grid_row"], t["grid_col"]))}

    def row(r, c):
        i = at[(r, c)]
        return t["reason"][i], t["cloud_fraction"][i], t["shadow_fraction"][i], t["snow_fraction"][i]

    assert row(0, 0) == ("cloudy", 1.0, 0.0, 0.0) and row(1, 0) == ("cloudy", 1.0, 0.0, 0.0)
    assert row(0, 1) == ("cloudy", 0.0, 0.5, 0.0)
    assert row(2, 0) == (None, 10 / 64, 0.0, 0.0) and row(3, 3) == (None, 0.0, 0.0, 0.5)
    assert row(3, 0)[0] == "cloud_mask" and "value 200 of quality asset scl" in t["error"][at[(3, 0)]]
    assert all(row(r, c) == (None, 0.0, 0.0, 0.0) for r in range(4) for c in range(4)
               if (r, c) not in ((0, 0), (1, 0), (0, 1), (2, 0), (3, 3), (3, 0)))
    assert "more than max_tile_cloud 0.3" in t["error"][at[(0, 1)]]
    assert set(t["item_id"]) == {"c"} and set(t["collection"]) == {"s2"}
    assert {d.isoformat() for d in t["datetime"]} == {"2021-07-04T10:20:30+00:00"}


def _box_geojson(path, w, s, e, n):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                    "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}]}))
    return str(path)


def test_an_aoi_across_scene_edges_and_two_utm_zones(ray_session, test_model, tmp_path):
    """Items 'w' (UTM 21) and 'e' (the same pixels placed in UTM 22, east of 54 W) and one
    far away; an AOI from the middle of 'w' to the middle of 'e', across both scenes' edges
    and the zone line: the far item is not searched; each scene keeps exactly its ground
    tiles that meet the AOI (as a map of the whole items, filtered by the AOI, says), on its
    own zone's grid."""
    import shapely

    cat = tmp_path / "cat"
    w = sc.item(cat / "l8" / "w", item_id="w", collection="l8")
    north = sc.window_profile()[1]["transform"].f
    e = sc.item(cat / "l8" / "e", item_id="e", collection="l8", crs="EPSG:32622", origin=(200000.0, north))
    far = sc.item(cat / "l8" / "far", item_id="far", collection="l8", crs="EPSG:32622", origin=(400000.0, north))
    sc.static_catalog(cat, {"l8": [w, e, far]})
    (w0, s0, e0, n0), (w1, _, e1, _) = w["bbox"], e["bbox"]
    assert e0 < -54.0 < w1  # the zone line runs between the items
    mid = (s0 + n0) / 2
    aoi = _box_geojson(tmp_path / "aoi.geojson", (w0 + e0) / 2, mid - 0.02, (w1 + e1) / 2, mid + 0.03)
    base = dict(stac=str(cat / "catalog.json"), model=test_model["uri"], fill_value=0)
    s = run_map(MapConfig(aoi=aoi, out=str(tmp_path / "aoi"), **base))
    whole = run_map(MapConfig(out=str(tmp_path / "whole"), **base))
    assert s["scenes"] == 2 and whole["scenes"] == 3 and s["grid"]["ground"] is True
    got, full = read_map(str(tmp_path / "aoi")).to_pydict(), read_map(str(tmp_path / "whole")).to_pydict()
    area = shapely.from_geojson(json.dumps(json.load(open(aoi))["features"][0]["geometry"]))
    want = {(i, t) for i, t, g in zip(full["item_id"], full["tile_id"], full["geometry"])
            if i != "far" and shapely.from_wkb(g).intersects(area)}
    assert {(i, t) for i, t in zip(got["item_id"], got["tile_id"])} == want
    by_item = {i: {c for c, j in zip(got["scene_crs"], got["item_id"]) if j == i} for i in ("w", "e")}
    assert by_item == {"w": {"EPSG:32621"}, "e": {"EPSG:32622"}}
    n_w = sum(i == "w" for i in got["item_id"])
    assert 0 < n_w < sum(i == "w" for i in full["item_id"]) and s["tiles"] == len(want)
    # the same predictions as the whole map for those tiles
    probs = {(i, t): p for i, t, p in zip(full["item_id"], full["tile_id"], full["probs"])}
    full_at = {(i, t): k for k, (i, t) in enumerate(zip(full["item_id"], full["tile_id"]))}
    ok = [k for k, st in enumerate(got["status"]) if st == "ok"]
    assert len(ok) > 0 and [got["label"][k] for k in ok] == [
        full["label"][full_at[(got["item_id"][k], got["tile_id"][k])]] for k in ok]
    np.testing.assert_allclose([got["probs"][k] for k in ok],
                               [probs[(got["item_id"][k], got["tile_id"][k])] for k in ok], atol=1e-5)


def test_an_aoi_with_listed_scenes(ray_session, s3_catalog, test_model, tmp_path, capsys):
    """--scenes with an AOI: the Landsat window keeps the tiles that meet it (its scene
    grid and ids), the NAIP scene far from it is one 'outside_aoi' row (not a failure);
    an AOI that meets no scene is one clear line."""
    import shapely

    from ..conftest import NAIP

    scene = str(s3_catalog["scene"])
    whole = run_map(MapConfig(scenes=[scene], bands="landsat8-b234", fill_value=0, model=test_model["uri"],
                              out=str(tmp_path / "whole")))
    t = read_map(str(tmp_path / "whole")).to_pydict()
    b = shapely.total_bounds(shapely.from_wkb(t["geometry"]))
    aoi = _box_geojson(tmp_path / "aoi.geojson", b[0] - 1, (b[1] + b[3]) / 2, (b[0] + b[2]) / 2, b[3] + 1)
    s = run_map(MapConfig(scenes=[scene, str(NAIP)], aoi=aoi, bands="landsat8-b234", fill_value=0,
                          model=test_model["uri"], out=str(tmp_path / "aoi")))
    area = shapely.from_geojson(json.dumps(json.load(open(aoi))["features"][0]["geometry"]))
    want = {i for i, g in zip(t["tile_id"], t["geometry"]) if shapely.from_wkb(g).intersects(area)}
    got = read_map(str(tmp_path / "aoi")).to_pydict()
    assert {i for i, sc_ in zip(got["tile_id"], got["scene"]) if sc_ == scene} == want
    assert 0 < len(want) < whole["tiles"] and s["tiles"] == len(want) + 1
    assert s["error_reasons"].get("outside_aoi") == 1 and s["result"] == "ok" and s["error_share"] == 0
    (why,) = [e for e, sc_ in zip(got["error"], got["scene"]) if sc_ == str(NAIP)]
    assert why.startswith("outside_aoi: Scene") and "does not meet the AOI" in why
    capsys.readouterr()  # (the maps' progress lines)
    rc = main(["map", "--scenes", str(NAIP), "--aoi", aoi, "--model", test_model["uri"], "--out",
               str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not meet the AOI" in err and err.count("\n") == 1


def test_composites_of_a_naip_time_series_with_clouds(ray_session, test_model, tmp_path):
    """The NAIP scene's three dates as STAC items with SCL masks whose clouds lie in other
    places each date: every ground tile is seen three times; the best composite takes each
    tile's clearest clear observation, the mean composite averages the clear ones; a tile
    cloudy on every date is a no_clear_observation row."""
    import pyarrow.parquet as pq

    from raylib.models.landcover_model import LandcoverModel
    from raylib.pipelines.map import composite

    h, w = 723, 934
    masks = {d: np.full((h, w), 4, np.uint8) for d in sc.NAIP_DATES}
    masks["20100629"][:, :400] = 9  # the west cloudy in 2010
    masks["20150926"][:, 500:] = 9  # the east in 2015
    masks["20150926"][:200, :260] = 8  # ... and the north-west corner
    masks["20200831"][:300, :] = 3  # the north under cloud shadow in 2020
    cat = tmp_path / "cat"
    items = [sc.naip_item(cat / "naip-test", d, masks[d]) for d in sc.NAIP_DATES]
    sc.static_catalog(cat, {"naip-test": items})
    out = str(tmp_path / "m")
    s = run_map(MapConfig(stac=str(cat / "catalog.json"), model=test_model["uri"], composite="best", out=out,
                          stac_bands=["red", "green", "blue"]))
    obs = read_map(out).to_pydict()
    comp = pq.read_table(f"{out}/_composite").to_pydict()
    assert s["tiles"] == 3 * 56 and s["composite"]["tiles"] == len(comp["tile_id"]) == 56
    per: dict = {}
    for i, t in enumerate(obs["tile_id"]):
        per.setdefault(t, []).append(i)
    assert set(per) == set(comp["tile_id"]) and all(len(v) == 3 for v in per.values())
    clear = {t: [i for i in v if obs["status"][i] == "ok"] for t, v in per.items()}
    n_obs = dict(zip(comp["tile_id"], comp["n_obs"]))
    assert n_obs == {t: len(v) for t, v in clear.items()} and set(comp["n_seen"]) == {3}
    assert {0, 1, 2} <= set(n_obs.values())  # the clouds took some tiles' dates, and all of one's
    for j, t in enumerate(comp["tile_id"]):
        if not clear[t]:
            assert comp["reason"][j] == "no_clear_observation" and comp["label"][j] is None
            # (the ground grid's rows above and below the scene: mostly outside it on every date)
            assert re.search(r"none of the tile's 3 observation\(s\) is clear \((cloudy|mostly_outside): ",
                             comp["error"][j]), comp["error"][j]
            continue

        def obscured(i):
            return (obs["cloud_fraction"][i] or 0) + (obs["shadow_fraction"][i] or 0)

        least = min(obscured(i) for i in clear[t])
        picks = [i for i in clear[t] if obscured(i) == least]
        assert any(obs["probs"][i] == comp["probs"][j] and obs["item_id"][i] == comp["item_id"][j] for i in picks)
        assert comp["status"][j] == "ok" and comp["label"][j] == obs["label"][picks[0]] or len(picks) > 1
    assert s["composite"]["no_clear_observation"] == sum(not v for v in clear.values()) > 0
    assert storage.exists(s["composite"]["quicklook"])
    # the mean composite of the same observations
    table = read_map(out, columns=composite.READ)
    mean = composite.build(table, "mean", LandcoverModel.read_manifest(test_model["uri"]).classes).to_pydict()
    for j, t in enumerate(mean["tile_id"]):
        if clear[t]:
            want = np.mean([obs["probs"][i] for i in clear[t]], axis=0)
            np.testing.assert_allclose(mean["probs"][j], want, rtol=1e-6)
            assert mean["item_id"][j] is None and mean["n_obs"][j] == len(clear[t])


def test_a_killed_stac_run_rerun_with_other_stac_bands_starts_afresh(ray_session, s3_catalog, test_model, tmp_path):
    """--stac-bands choose the assets read: a rerun with others is another job (its parts are
    not resumed: its map is a fresh map's with those bands), and with the same ones it resumes."""
    base = dict(stac=s3_catalog["catalog"], datetime="2020-05", model=test_model["uri"], fill_value=0, grid="scene",
                quicklook=False)
    out = str(tmp_path / "map")

    def killed():  # a run that wrote its parts and died before its end
        for name in ("_SUCCESS", "_summary.json"):
            (tmp_path / "map" / name).unlink()

    s1 = run_map(MapConfig(stac_bands=["red", "green", "blue"], out=out, **base))
    rgb = _sorted(read_map(out))
    killed()
    same = run_map(MapConfig(stac_bands=["red", "green", "blue"], out=out, **base))
    assert same["parts_resumed"] == s1["parts"] >= 1 and same["tiles_computed"] == 0
    killed()
    other = run_map(MapConfig(stac_bands=["blue", "green", "red"], out=out, **base))
    assert other["parts_resumed"] == 0 and other["tiles_computed"] == other["tiles"] == s1["tiles"]
    run_map(MapConfig(stac_bands=["blue", "green", "red"], out=str(tmp_path / "fresh"), **base))
    got, want = _sorted(read_map(out)), _sorted(read_map(str(tmp_path / "fresh")))
    assert got["label"].equals(want["label"]) and not got["label"].equals(rgb["label"])

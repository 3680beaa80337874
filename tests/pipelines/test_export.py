"""landcover export on maps written in the map contract (no Ray): class, confidence and
probability COGs read back tile by tile, their palette, overviews, zones, and bad inputs."""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio

from raylib.cli import main
from raylib.eval import reports
from raylib.formats import cog, mapfile
from raylib.raster import tiling

from .test_change import AFTER, BEFORE, CLASSES, GRID, scene, write_map


def _centres(table: pa.Table, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """The tiles' centres in ``crs`` (from their lon/lat footprints)."""
    from raylib.raster.footprints import footprints

    fp = footprints(table)
    return (fp.box[:, 0] + fp.box[:, 2]) / 2, (fp.box[:, 1] + fp.box[:, 3]) / 2


def _read_at(path, xs, ys, band=1):
    with rasterio.open(path) as ds:
        return np.array([v[band - 1] for v in ds.sample(zip(xs, ys))])


def test_classes_and_confidence_read_back_tile_by_tile(tmp_path, capsys):
    labels = list(AFTER)
    labels[3] = None  # an error row: no data
    m = write_map(tmp_path / "m", labels, "2023-06-01", sure=0.8)
    assert main(["export", "--map", m, "--out", str(tmp_path / "x"), "--probabilities"]) == 0
    assert "exported 11 mapped tiles of 12 as COGs (EPSG:32618: 4x3 pixels of 160 m)" in capsys.readouterr().out
    r = json.loads((tmp_path / "x" / "export.json").read_text())
    classes = tmp_path / "x" / "classes-epsg32618.tif"
    table = tiling.tile_table(scene(), GRID)
    xs, ys = _centres(table, "EPSG:32618")
    want = [0 if v is None else v + 1 for v in labels]
    assert _read_at(classes, xs, ys).tolist() == want
    conf = _read_at(tmp_path / "x" / "confidence-epsg32618.tif", xs, ys)
    assert conf.tolist() == [255 if v is None else 80 for v in labels]
    p_crop = _read_at(tmp_path / "x" / "probabilities-epsg32618.tif", xs, ys, band=2)
    assert p_crop.tolist() == [255 if v is None else (80 if v == 1 else 10) for v in labels]
    with rasterio.open(classes) as ds:
        assert ds.crs.to_epsg() == 32618 and ds.nodata == 0 and ds.dtypes[0] == "uint8"
        assert ds.res == (160.0, 160.0) and (ds.width, ds.height) == (4, 3)
        cmap = ds.colormap(1)
    assert [cmap[i + 1][:3] for i in range(3)] == [tuple(c) for c in reports.palette(CLASSES)]  # the quick-look's
    assert cmap[4][:3] == reports.UNKNOWN and cmap[0][3] == 0
    assert [c["name"] for c in r["classes"]] == CLASSES + ["unknown"] and r["classes"][3]["value"] == 4
    assert all(not cog.validate(f["uri"]) for f in r["files"].values())


def test_a_finer_resolution_paints_each_tiles_pixels_and_overviews_keep_class_values(tmp_path):
    info = scene()
    big = type(info)(info.uri, 64 * 12, 48 * 12, 3, "uint16", info.crs, info.transform, info.res, 0, True)
    n = tiling.tile_table(big, GRID).num_rows  # 48 x 36 tiles
    labels = [(i * 7 + i // 48) % 3 for i in range(n)]
    m = write_map(tmp_path / "m", labels, "2023-06-01", info=big)
    assert main(["export", "--map", m, "--out", str(tmp_path / "x"), "--resolution", "10"]) == 0
    path = tmp_path / "x" / "classes-epsg32618.tif"
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height) == (768, 576) and ds.overviews(1) == [2]
        data = ds.read(1)
        assert (data[:16, :16] == labels[0] + 1).all() and (data[:16, 16:32] == labels[1] + 1).all()
    with rasterio.open(path, overview_level=0) as ov:
        assert set(np.unique(ov.read(1))) <= set(np.unique(data))  # MODE: no invented class
    assert not cog.validate(str(path))
    with rasterio.open(tmp_path / "x" / "confidence-epsg32618.tif", overview_level=0) as ov:
        assert set(np.unique(ov.read(1))) == {90}


def test_a_map_across_two_zones_gives_a_raster_per_zone(tmp_path):
    m = tmp_path / "m"
    write_map(m, AFTER, "2023-06-01")
    other = tmp_path / "other"
    west = scene(crs="EPSG:32617")
    write_map(other, [2] * 12, "2023-06-01", info=west)
    (other / "part-00000.parquet").rename(m / "part-00001.parquet")
    assert main(["export", "--map", str(m), "--out", str(tmp_path / "x")]) == 0
    r = json.loads((tmp_path / "x" / "export.json").read_text())
    assert [z["crs"] for z in r["zones"]] == ["EPSG:32617", "EPSG:32618"]
    with rasterio.open(tmp_path / "x" / "classes-epsg32617.tif") as ds:
        assert ds.crs.to_epsg() == 32617 and set(np.unique(ds.read(1))) == {3}
    with rasterio.open(tmp_path / "x" / "classes-epsg32618.tif") as ds:
        assert ds.crs.to_epsg() == 32618 and sorted(np.unique(ds.read(1))) == [1, 2, 3]


def test_unknown_tiles_have_their_own_value(tmp_path):
    rows = tiling.tile_table(scene(), GRID)
    n = rows.num_rows
    probs = np.full((n, 3), 1 / 3, np.float32)
    probs[0] = [0.9, 0.05, 0.05]
    table = mapfile.build_table(rows, probs, np.full(n, "ok", object), np.full(n, "", object),
                                np.zeros(n, np.float32), CLASSES, "m@1", unknown_below=0.5)
    (tmp_path / "m").mkdir()
    mapfile.write_part(table, str(tmp_path / "m" / "part-00000.parquet"), CLASSES, "m@1", {"grid": GRID.as_dict()})
    (tmp_path / "m" / "_SUCCESS").write_text("")
    assert main(["export", "--map", str(tmp_path / "m"), "--out", str(tmp_path / "x")]) == 0
    xs, ys = _centres(rows, "EPSG:32618")
    assert _read_at(tmp_path / "x" / "classes-epsg32618.tif", xs, ys).tolist() == [1] + [4] * (n - 1)


@pytest.mark.parametrize("case, says", [
    ("unfinished", "incomplete (no _SUCCESS)"),
    ("coarse", "coarser than the tile grid's step in EPSG:32618 (160)"),
    ("again", "already holds an export"),
])
def test_bad_exports_are_refused_in_one_line(case, says, tmp_path, capsys):
    m = write_map(tmp_path / "m", AFTER, "2023-06-01", done=case != "unfinished")
    out = tmp_path / "x"
    args = ["export", "--map", m, "--out", str(out)]
    if case == "again":
        assert main(args) == 0
        capsys.readouterr()
    assert main(args + (["--resolution", "320"] if case == "coarse" else [])) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


def test_the_export_is_a_valid_stac_collection_a_client_reads(tmp_path):
    import shutil
    import subprocess

    import pystac
    from pystac.extensions.classification import ClassificationExtension

    from raylib.formats import stac_items

    m = write_map(tmp_path / "m", AFTER, "2023-06-01")
    source = tmp_path / "m" / "_inputs" / "stac" / "landsat-c2-l2" / "LC08_X.json"  # as map --stac keeps them
    source.parent.mkdir(parents=True)
    source.write_text("{}")
    assert main(["export", "--map", m, "--out", str(tmp_path / "x"), "--probabilities"]) == 0
    coll = pystac.Collection.from_file(str(tmp_path / "x" / "collection.json"))
    items = {i.id: i for i in coll.get_items()}
    assert sorted(items) == ["m-classes-epsg32618", "m-confidence-epsg32618", "m-probabilities-epsg32618"]
    item = items["m-classes-epsg32618"]
    asset = item.assets["data"]
    assert asset.get_absolute_href() == str(tmp_path / "x" / "classes-epsg32618.tif")
    classes = ClassificationExtension.ext(asset).classes
    assert [c.title for c in classes[:4]] == CLASSES + ["unknown"]
    assert [c.color_hint for c in classes[:3]] == ["%02X%02X%02X" % tuple(c) for c in reports.palette(CLASSES)]
    assert [c.count for c in classes[:3]] == [3, 6, 3] and classes[-1].nodata is True
    assert item.properties["proj:code"] == "EPSG:32618" and item.properties["proj:shape"] == [3, 4]
    assert item.properties["datetime"].startswith("2023-06-01")
    data = (tmp_path / "x" / "classes-epsg32618.tif").read_bytes()
    import hashlib

    assert asset.extra_fields["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
    assert asset.extra_fields["file:size"] == len(data)
    assert [link.target for link in item.links if link.rel == "derived_from"] == [str(source)]
    from raylib.pipelines.common.map_stac import describe  # a run's parts: the same link and classes

    assert describe(m, "map", "m")["items"] == 1
    part = json.loads(next((tmp_path / "m" / "_stac" / "items").glob("*.json")).read_text())
    assert [x["href"] for x in part["links"] if x["rel"] == "derived_from"] == [str(source)]
    assert part["assets"]["data"]["classification:classes"][0]["description"] == "land cover: forest"
    assert stac_items.validate(part) == []
    for path in [tmp_path / "x" / "collection.json", *(tmp_path / "x" / "items").glob("*.json")]:
        assert stac_items.validate(json.loads(path.read_text())) == [], path
    bad = json.loads((tmp_path / "x" / "items" / "m-classes-epsg32618.json").read_text())
    bad["assets"]["data"]["classification:classes"][0]["color_hint"] = "green"
    assert stac_items.validate(bad) and "color_hint" not in json.dumps(stac_items.validate(item.to_dict()))
    # (the process's one validator, its schemas compiled once, still names the object and the schema it fails)
    assert stac_items.validate(bad) == ["Validation failed for Feature with ID m-classes-epsg32618 against schema at "
                                        + stac_items.EXTENSIONS["classification"]]
    rustac = shutil.which("rustac") or str(Path(sys.executable).parent / "rustac")
    r = subprocess.run([rustac, "crawl", str(tmp_path / "x" / "collection.json"), str(tmp_path / "crawl")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    crawled = json.loads(next((tmp_path / "crawl").glob("*.json")).read_text())
    assert len(crawled["features"]) == 3


def test_change_cog_exports_its_transitions_and_p_change(tmp_path, capsys):
    from raylib.formats import stac_items

    from .test_change import BEFORE

    a = write_map(tmp_path / "a", BEFORE, "2018-06-01")
    b = write_map(tmp_path / "b", AFTER, "2023-06-01")
    assert main(["change", "--before", a, "--after", b, "--out", str(tmp_path / "c"), "--cog"]) == 0
    assert "COGs: " in capsys.readouterr().out
    cog_dir = tmp_path / "c" / "_cog"
    r = json.loads((cog_dir / "export.json").read_text())
    names = [c["name"] for c in r["classes"]]
    assert names[:3] == ["forest->forest", "forest->crop", "forest->water"] and len(names) == 10
    xs, ys = _centres(tiling.tile_table(scene(), GRID), "EPSG:32618")
    got = _read_at(cog_dir / "classes-epsg32618.tif", xs, ys)
    assert [names[v - 1] for v in got] == [f"{CLASSES[x]}->{CLASSES[y]}" for x, y in zip(BEFORE, AFTER)]
    p = _read_at(cog_dir / "p_change-epsg32618.tif", xs, ys)
    want = [18.5 if x == y else 90.75 for x, y in zip(BEFORE, AFTER)]  # 1 - 0.81 - 2 * 0.05^2; 1 - 0.0925
    assert np.abs(p - np.array(want)).max() <= 0.5 + 1e-6
    item = json.loads((cog_dir / "items" / "c-classes-epsg32618.json").read_text())
    assert item["properties"]["start_datetime"].startswith("2018-06-01") and stac_items.validate(item) == []
    assert item["assets"]["data"]["classification:classes"][1]["name"] == "forest_to_crop"
    assert main(["export", "--map", str(tmp_path / "c"), "--out", str(tmp_path / "x"), "--probabilities"]) == 2


def test_a_map_of_more_than_254_classes_gets_a_uint16_class_raster(tmp_path, capsys):
    many = [f"c{i}" for i in range(300)]
    m = write_map(tmp_path / "m", [0, 299, 150] + [7] * 9, "2023-06-01", classes=many, sure=0.5)
    assert main(["export", "--map", m, "--out", str(tmp_path / "x")]) == 0
    assert "note: 300 classes: the class raster is uint16" in capsys.readouterr().out
    xs, ys = _centres(tiling.tile_table(scene(), GRID), "EPSG:32618")
    with rasterio.open(tmp_path / "x" / "classes-epsg32618.tif") as ds:
        assert ds.dtypes[0] == "uint16"
    assert _read_at(tmp_path / "x" / "classes-epsg32618.tif", xs, ys).tolist()[:3] == [1, 300, 151]


def test_a_runs_stac_reads_only_new_or_changed_parts(tmp_path, monkeypatch):
    """Each part's facts (its SHA-256: a read of the whole part) are kept by fingerprint in
    ``_stac/_parts.json``: describing the folder again reads no part, a part added or
    rewritten is read alone, and the Items are those a fresh description writes."""
    import shutil

    from raylib.pipelines.common import map_stac

    m = write_map(tmp_path / "m", AFTER, "2023-06-01")
    reads = []
    real = map_stac._part
    monkeypatch.setattr(map_stac, "_part", lambda u: reads.append(Path(u).name) or real(u))
    assert map_stac.describe(m, "map", "m")["parts_read"] == 1 and reads == ["part-00000.parquet"]
    items = tmp_path / "m" / "_stac" / "items"
    first = {p.name: p.read_bytes() for p in items.glob("*.json")}
    assert map_stac.describe(m, "map", "m")["parts_read"] == 0 and len(reads) == 1
    assert {p.name: p.read_bytes() for p in items.glob("*.json")} == first
    shutil.copy(tmp_path / "m" / "part-00000.parquet", tmp_path / "m" / "part-00001.parquet")
    assert map_stac.describe(m, "map", "m") | {"collection": None} == {
        "collection": None, "items": 2, "rows": 24, "parts_read": 1}
    assert reads == ["part-00000.parquet", "part-00001.parquet"]
    write_map(tmp_path / "m", BEFORE, "2018-06-01")  # part-00000 rewritten: read again, and its Item follows
    assert map_stac.describe(m, "map", "m")["parts_read"] == 1 and reads[-1] == "part-00000.parquet"
    item = json.loads((items / "m-map-part-00000.json").read_text())
    assert item["properties"]["datetime"].startswith("2018-06-01")
    fresh = tmp_path / "fresh" / "m"  # (the same folder name: the same ids)
    shutil.copytree(tmp_path / "m", fresh, ignore=shutil.ignore_patterns("_stac"))
    map_stac.describe(str(fresh), "map", "m")
    assert (fresh / "_stac" / "items" / "m-map-part-00000.json").read_text().replace(str(fresh), str(tmp_path / "m")) \
        == (items / "m-map-part-00000.json").read_text()
    (tmp_path / "m" / "_stac" / "_parts.json").write_text('{"version": 1, "parts": ')  # cut short: all read again
    assert map_stac.describe(m, "map", "m")["parts_read"] == 2

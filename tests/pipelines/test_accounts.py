"""landcover accounts on maps written in the map contract (no Ray): zones that split tiles
add up to the map's area, a change map's transitions per zone, estimates with intervals from
a labelled sample, and bad zone files refused in one line."""

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely

from raylib.cli import main
from raylib.raster import tiling

from .test_change import AFTER, BEFORE, CLASSES, GRID, scene, write_map

# the scene's tiles are 160 m wide from x = 500000 (EPSG:32618): the border cuts a quarter of
# column 1 (500160..500320) off to the west
BORDER = 500200.0


def zones_file(path, crs="EPSG:32618", field="district", kinds=("poly", "poly")):
    west = shapely.box(499000, 4390000, BORDER, 4401000)
    east = shapely.box(BORDER, 4390000, 502000, 4401000)
    geoms = [g if k == "poly" else g.centroid for g, k in zip((west, east), kinds)]
    gpd.GeoDataFrame({field: ["West", "East"]}, geometry=geoms, crs=crs).to_file(path, driver="GPKG")
    return str(path)


def _run(*args):
    out = args[args.index("--out") + 1]
    rc = main(["accounts", *args])
    return rc, (json.loads(open(f"{out}/summary.json").read()) if rc == 0 else None)


@pytest.mark.parametrize("assign", ["share", "centre"])
def test_zones_that_split_tiles_add_up_to_the_maps_area(assign, tmp_path):
    m = write_map(tmp_path / "m", AFTER, "2023-06-01")
    z = zones_file(tmp_path / "z.gpkg")
    rc, s = _run("--map", m, "--zones", z, "--zone-field", "district", "--assign", assign, "--out", str(tmp_path / "a"))
    assert rc == 0
    ha = tiling.footprint_areas_ha(tiling.tile_table(scene(), GRID).column("geometry"))
    assert s["map_hectares"] == pytest.approx(ha.sum(), abs=1e-3)
    west, east = s["per_zone"]["West"]["mapped_hectares"], s["per_zone"]["East"]["mapped_hectares"]
    assert west + east == pytest.approx(s["map_hectares"], abs=1e-3) and s["outside_hectares"] < 1e-6
    cols = np.arange(12) % 4
    if assign == "share":  # column 0 and a quarter of column 1 are west
        assert west == pytest.approx(ha[cols == 0].sum() + ha[cols == 1].sum() / 4, rel=1e-4)
    else:  # column 1's centres are east
        assert west == pytest.approx(ha[cols == 0].sum(), rel=1e-4)
    rows = [line.split(",") for line in (tmp_path / "a" / "accounts.csv").read_text().splitlines()[1:]]
    assert {r[0] for r in rows} == {"West", "East"} and {r[1] for r in rows} == set(CLASSES)
    assert sum(float(r[3]) for r in rows) == pytest.approx(12)  # tiles_by_share: every tile once, split or whole
    # tiles: whole tiles, each once in every zone it counts in (column 1's tiles are split by the border)
    assert sum(int(r[2]) for r in rows) == (12 + 3 if assign == "share" else 12)
    assert (tmp_path / "a" / "charts" / "West.png").stat().st_size > 500 and (tmp_path / "a" / "_SUCCESS").exists()


def test_a_change_maps_transitions_per_zone(tmp_path):
    a = write_map(tmp_path / "a", BEFORE, "2018-06-01")
    b = write_map(tmp_path / "b", AFTER, "2023-06-01")
    assert main(["change", "--before", a, "--after", b, "--out", str(tmp_path / "c")]) == 0
    z = zones_file(tmp_path / "z.gpkg")
    rc, s = _run("--map", str(tmp_path / "c"), "--zones", z, "--zone-field", "district", "--out", str(tmp_path / "acc"))
    assert rc == 0 and s["kind"] == "change" and "forest->crop" in s["classes"]
    import pyarrow.parquet as pq

    t = pq.read_table(str(tmp_path / "acc" / "accounts.parquet")).to_pylist()
    ha = tiling.footprint_areas_ha(tiling.tile_table(scene(), GRID).column("geometry"))
    # forest->crop: tiles 1 (a quarter west) and 2 (east); water->crop: tile 11 (column 3, east)
    got = {(r["zone"], r["class"]): r["hectares"] for r in t}
    assert got[("West", "forest->crop")] == pytest.approx(ha[1] / 4, rel=1e-4)
    assert got[("East", "forest->crop")] == pytest.approx(ha[1] * 3 / 4 + ha[2], rel=1e-4)
    assert got[("West", "water->crop")] == 0 and got[("East", "water->crop")] == pytest.approx(ha[11], rel=1e-4)


def test_a_labelled_sample_gives_estimates_per_zone_or_says_why_not(tmp_path, capsys):
    m = write_map(tmp_path / "m", AFTER, "2023-06-01")
    ids = tiling.tile_table(scene(), GRID).column("tile_id").to_pylist()
    labels = [CLASSES[v] for v in AFTER]
    # every tile a unit (a unit in the zone where its tile counts most: columns 1-3 east, 0 west), its
    # reference its map class but for one crop tile of the east that is forest on the ground
    ref = list(labels)
    ref[7] = "forest"
    samples = tmp_path / "s.csv"
    samples.write_text("tile_id,map,reference\n" + "".join(f"{i},{a},{b}\n" for i, a, b in zip(ids, labels, ref)))
    z = zones_file(tmp_path / "z.gpkg")
    rc, s = _run("--map", m, "--zones", z, "--zone-field", "district", "--samples", str(samples),
                 "--out", str(tmp_path / "a"))
    assert rc == 0
    east = s["per_zone"]["East"]
    assert "no_interval" not in east  # east units: forest 2, crop 5, water 2
    est = east["estimates"]["area"]
    # crop's stratum: 1 of its 5 units is forest, so a fifth of its mapped area moves to forest
    crop_mapped = est["crop"]["mapped"]
    assert est["crop"]["estimate"] == pytest.approx(crop_mapped * 4 / 5, rel=1e-9)
    assert est["forest"]["estimate"] == pytest.approx(est["forest"]["mapped"] + crop_mapped / 5, rel=1e-9)
    assert est["crop"]["ci95"] > 0 and est["water"]["ci95"] == 0
    west = s["per_zone"]["West"]  # one unit of each class
    assert "too few sample units" in west["no_interval"] and "estimates" not in west
    assert "West: no interval" in capsys.readouterr().out
    t = (tmp_path / "a" / "accounts.csv").read_text().splitlines()
    assert t[0] == "zone,class,tiles,tiles_by_share,hectares,share,estimate_ha,ci95_ha"
    assert any(line.startswith("West,") and line.endswith(",,") for line in t[1:])  # no estimate in the west


@pytest.mark.parametrize("case, says", [
    ("points", "holds no polygon"),
    ("field", "has no field 'district'"),
    ("elsewhere", "No tile of the map"),
    ("no map", "There is no map at"),
])
def test_bad_zones_are_refused_in_one_line(case, says, tmp_path, capsys):
    m = write_map(tmp_path / "m", AFTER, "2023-06-01")
    z = zones_file(tmp_path / "z.gpkg", kinds=("point", "point") if case == "points" else ("poly", "poly"),
                   field="name" if case == "field" else "district")
    if case == "elsewhere":
        gpd.GeoDataFrame({"district": ["Far"]}, geometry=[shapely.box(10, 10, 11, 11)], crs="EPSG:4326").to_file(
            tmp_path / "far.geojson", driver="GeoJSON")
        z = str(tmp_path / "far.geojson")
    args = ["--map", str(tmp_path / "nothing") if case == "no map" else m, "--zones", z, "--zone-field", "district",
            "--out", str(tmp_path / "out")]
    assert main(["accounts", *args]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "_SUCCESS").exists()

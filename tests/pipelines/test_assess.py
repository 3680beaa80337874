"""landcover assess / sample on real reference land cover (NC Wake landclass96), with maps
written in the map contract over the real Landsat 7 scene's tile grid (no Ray needed)."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

from raylib.cli import main
from raylib.eval import reference
from raylib.formats import mapfile
from raylib.raster import scenes, tiling

from ..conftest import DATA, REPO

NC = DATA / "labelled-scenes" / "nc-wake-landsat7-landclass96"
IMAGE, LABELS, NATIVE = NC / "image_landsat7_2000.tif", NC / "label_landclass96.tif", NC / "landclass96_native_grid.tif"
CHES_LABELS = DATA / "labelled-scenes" / "chesapeake-wv-m_3907833_nw_17_1" / "label_lc.tif"
CROSSWALK = REPO / "configs" / "crosswalks" / "eurosat-to-nc-landclass96.yaml"
CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]
GROUP_CLASS = {"agriculture": "AnnualCrop", "herbaceous_shrub": "HerbaceousVegetation", "forest": "Forest",
               "developed": "Residential", "water": "SeaLake"}
GRID = tiling.GridSpec(64, 64, 10.0)


def by_hand(purity=0.5):
    """Reference group per tile of the image grid, computed straight from the label raster
    (same grid as the image): majority of the crosswalked labelled pixels."""
    cw = reference.load_crosswalk(str(CROSSWALK))
    info = scenes.open_scene(str(IMAGE))
    wins = tiling.layout(info, GRID).windows()
    with rasterio.open(LABELS) as ds:
        lab = ds.read(1)
    out = {}
    for k, (_, _, r, c, h, w) in enumerate(wins.tolist()):  # WINDOW records
        v = lab[r:r + h, c:c + w]
        v = v[v != 0]
        if not v.size:
            continue
        groups = [cw.reference_group(int(x)) for x in v]
        names, n = np.unique([g or "" for g in groups], return_counts=True)
        top = names[np.argmax(n)]
        if top and n.max() / v.size >= purity:
            out[k] = top
    return out


def write_map(out: Path, labels: list[str | None], fill=None, grid=GRID) -> Path:
    """A finished map of the NC scene in the map contract: ``labels`` per tile (None: error row)."""
    info = scenes.open_scene(str(IMAGE))
    rows = tiling.tile_table(info, grid)
    n = rows.num_rows
    probs = np.full((n, len(CLASSES)), np.nan, np.float32)
    status = np.array(["ok" if v else "error" for v in labels], dtype=object)
    error = np.array(["" if v else "all_nodata: the tile holds only fill/nodata pixels" for v in labels], dtype=object)
    for i, v in enumerate(labels):
        if v == "unknown":  # a tile the model is unsure of: below --unknown-below 0.5
            probs[i] = 1.0 / len(CLASSES)
        elif v:
            probs[i] = 0.0
            probs[i, CLASSES.index(v)] = 1.0
    ff = np.zeros(n, np.float32) if fill is None else np.asarray(fill, np.float32)
    table = mapfile.build_table(rows, probs, status, error, ff, CLASSES, "test-model@0", unknown_below=0.5)
    out.mkdir(parents=True, exist_ok=True)
    mapfile.write_part(table, str(out / "part-00000.parquet"), CLASSES, "test-model@0",
                       {"grid": {"tile_size": grid.tile_size, "stride": grid.stride, "gsd": grid.gsd}})
    (out / "_SUCCESS").write_text("")
    return out


@pytest.fixture(scope="module")
def truth():
    return by_hand()


@pytest.fixture(scope="module")
def n_tiles():
    return tiling.layout(scenes.open_scene(str(IMAGE)), GRID).n_tiles


@pytest.fixture(scope="module")
def perfect_map(tmp_path_factory, truth, n_tiles):
    """Each tile labelled with its reference group's class; tiles without a pure reference: Forest."""
    labels = [GROUP_CLASS[truth[k]] if k in truth else "Forest" for k in range(n_tiles)]
    return write_map(tmp_path_factory.mktemp("maps") / "perfect", labels)


def assess(*args) -> tuple[int, dict | None, Path]:
    out = Path(args[args.index("--out") + 1])
    rc = main(["assess", *args])
    result = json.loads((out / "assessment.json").read_text()) if (out / "assessment.json").exists() else None
    return rc, result, out


def test_raster_reference_on_the_same_grid_equals_a_count_by_hand(perfect_map, truth, tmp_path):
    rc, r, out = assess("--map", str(perfect_map), "--reference", str(LABELS), "--crosswalk", str(CROSSWALK),
                        "--out", str(tmp_path / "a"))
    assert rc == 0
    assert r["tiles"]["assessed"] == len(truth)
    assert r["overall_accuracy"] == pytest.approx(1.0) and r["balanced_accuracy"] == pytest.approx(1.0)
    counts = np.array(r["confusion"]["counts"])
    groups = r["groups"]
    for g in groups:  # the diagonal holds every tile of each group, as counted by hand
        assert counts[groups.index(g), groups.index(g)] == sum(v == g for v in truth.values())
    assert counts.sum() == np.trace(counts)
    for name in ("assessment.json", "report.md", "confusion.png", "comparison.png", "_SUCCESS"):
        assert (out / name).exists()
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r["area_unit"] == "ha" and r["users_accuracy"]["forest"]["estimate"] == pytest.approx(1.0)
    # mapped area: every tile's footprint; the scene is 489 x 443 px of 28.5 m
    assert sum(a["mapped"] for a in r["area"].values()) == pytest.approx(489 * 443 * 28.5 ** 2 / 1e4, rel=0.01)


def test_raster_reference_on_another_grid_agrees(perfect_map, truth, tmp_path):
    """landclass96 on its native grid (526 x 474 px, a sub-pixel offset from the image):
    read reprojected, the tiles' reference groups nearly all agree with the aligned file."""
    rc, r, _ = assess("--map", str(perfect_map), "--reference", str(NATIVE), "--crosswalk", str(CROSSWALK),
                      "--out", str(tmp_path / "native"))
    assert rc == 0
    assert abs(r["tiles"]["assessed"] - len(truth)) <= 0.03 * len(truth)
    assert r["overall_accuracy"] > 0.97 and r["sample_accuracy"] > 0.97


def test_an_error_in_the_map_is_counted(truth, n_tiles, tmp_path):
    labels = [GROUP_CLASS[truth[k]] if k in truth else "Forest" for k in range(n_tiles)]
    forest = [k for k, g in truth.items() if g == "forest"]
    for k in forest[1:11]:  # ten forest tiles mapped as water (tile 0 is the error row below)
        labels[k] = "SeaLake"
    labels[0] = None  # an error row is not assessed
    m = write_map(tmp_path / "map", labels)
    rc, r, _ = assess("--map", str(m), "--reference", str(LABELS), "--crosswalk", str(CROSSWALK),
                      "--out", str(tmp_path / "a"))
    assert rc == 0
    g = r["groups"]
    counts = np.array(r["confusion"]["counts"])
    assert counts[g.index("water"), g.index("forest")] == 10
    assert r["users_accuracy"]["water"]["estimate"] < 1 and r["producers_accuracy"]["forest"]["estimate"] < 1
    assert r["not_assessed"]["error_tiles"] == 1


def test_the_reports_headline_figures_come_from_its_own_tables(truth, n_tiles, tmp_path):
    """report.md: the balanced accuracy is the mean of its recall column, the overall
    accuracy the mapped-area-weighted mean of its user's accuracies (Olofsson's estimator),
    and what was not assessed adds up to the mapped tiles less the assessed ones."""
    import re

    labels = [GROUP_CLASS[truth[k]] if k in truth else "Forest" for k in range(n_tiles)]
    forest = [k for k, g in truth.items() if g == "forest"]
    for k in forest[1:31]:
        labels[k] = "SeaLake"
    for k in [k for k, g in truth.items() if g == "developed"][:8]:
        labels[k] = "HerbaceousVegetation"
    labels[0] = None
    m = write_map(tmp_path / "map", labels)
    rc, r, out = assess("--map", str(m), "--reference", str(LABELS), "--crosswalk", str(CROSSWALK),
                        "--out", str(tmp_path / "a"))
    assert rc == 0
    md = (out / "report.md").read_text()
    rows = [ln.split("|")[1:-1] for ln in md.splitlines() if ln.startswith("| ") and "±" in ln]
    recall = [float(c[3]) for c in rows if c[3].strip() != "—"]
    headline = float(re.search(r"balanced accuracy .*?\*\*([0-9.]+)\*\*", md).group(1))
    assert headline == pytest.approx(np.mean(recall), abs=1e-4) and headline < 1
    users = [(float(c[1].split("±")[0]), float(c[4].replace(",", ""))) for c in rows if c[1].strip() != "—"]
    oa = float(re.search(r"overall accuracy \(area-weighted\): \*\*([0-9.]+)", md).group(1))
    area = sum(a for _, a in users)
    assert oa == pytest.approx(sum(u * a for u, a in users) / area, abs=2e-3)  # the table's rounding
    t = r["tiles"]
    assert t["mapped"] - t["assessed"] == t["mapped_not_assessed"] == sum(
        v for k, v in r["not_assessed"].items() if k != "error_tiles" and isinstance(v, int))
    assert t["error_rows"] == 1 and f"{t['mapped']} mapped with a class, 1 error rows" in md
    assert "rows: map, columns: reference" in md


def test_unknown_tiles_are_withheld_and_reported(truth, n_tiles, tmp_path):
    labels = [GROUP_CLASS[truth[k]] if k in truth else "Forest" for k in range(n_tiles)]
    for k in range(0, n_tiles, 10):
        labels[k] = "unknown"
    m = write_map(tmp_path / "map", labels)
    table = mapfile.read_map(str(m))
    assert table["label"].to_pylist().count("unknown") == len(range(0, n_tiles, 10))
    assert table["label_index"].null_count == len(range(0, n_tiles, 10))
    rc, r, out = assess("--map", str(m), "--reference", str(LABELS), "--crosswalk", str(CROSSWALK),
                        "--out", str(tmp_path / "a"))
    assert rc == 0
    assert r["withheld"]["tiles"] == len(range(0, n_tiles, 10)) and 0.05 < r["withheld"]["share_of_mapped_area"] < 0.15
    assert r["tiles"]["assessed"] == len([k for k in truth if k % 10]) and r["overall_accuracy"] == pytest.approx(1.0)
    assert "Withheld as `unknown`" in (out / "report.md").read_text()
    assert r["calibration"]["ece"] == pytest.approx(0.0) and (out / "reliability.png").exists()


def test_vector_reference_points_and_polygons(perfect_map, truth, tmp_path):
    """Points (in the scene's own CRS, so they are reprojected) at tile centres, and one
    polygon over four tiles, each assessed against the tiles it falls in."""
    table = mapfile.read_map(str(perfect_map))
    polys = shapely.from_wkb(table["geometry"].to_pylist())
    codes = {"forest": 5, "developed": 1, "water": 6, "herbaceous_shrub": 3, "agriculture": 2}
    ks = sorted(truth)[:40]
    pts = gpd.GeoDataFrame({"lc": [codes[truth[k]] for k in ks]},
                           geometry=[polys[k].centroid for k in ks], crs="OGC:CRS84").to_crs(32119)
    pts_path = tmp_path / "points.gpkg"
    pts.to_file(pts_path)
    rc, r, _ = assess("--map", str(perfect_map), "--reference", str(pts_path), "--class-column", "lc",
                      "--crosswalk", str(CROSSWALK), "--out", str(tmp_path / "pts"))
    assert rc == 0 and r["tiles"]["assessed"] == 40 and r["overall_accuracy"] == pytest.approx(1.0)
    block = shapely.union_all([polys[k] for k in (0, 1, 23, 24)]).buffer(-1e-6)  # tiles (0,0),(0,1),(1,0),(1,1)
    cols = tiling.layout(scenes.open_scene(str(IMAGE)), GRID).col_offs
    assert len(cols) == 23
    gdf = gpd.GeoDataFrame({"class": ["forest"]}, geometry=[block], crs="OGC:CRS84")
    poly_path = tmp_path / "poly.geojson"
    gdf.to_file(poly_path, driver="GeoJSON")
    cw = tmp_path / "cw.yaml"
    cw.write_text(CROSSWALK.read_text() + "  forest: forest\n")
    rc, r, _ = assess("--map", str(perfect_map), "--reference", str(poly_path), "--crosswalk", str(cw),
                      "--out", str(tmp_path / "poly"))
    assert rc == 0 and r["tiles"]["assessed"] == 4


def test_sample_mode_reproduces_the_paper(tmp_path):
    counts = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
    names = ["deforestation", "forest_gain", "stable_forest", "stable_non_forest"]
    rows = [(names[i], names[j]) for i in range(4) for j in range(4) for _ in range(counts[i][j])]
    samples = tmp_path / "samples.csv"
    samples.write_text("id,map,reference\n" + "".join(f"{k},{a},{b}\n" for k, (a, b) in enumerate(rows)))
    areas = tmp_path / "areas.csv"
    areas.write_text("class,area\n" + "".join(f"{c},{a * 0.09}\n" for c, a in
                                               zip(names, [200_000, 150_000, 3_200_000, 6_450_000])))
    rc, r, out = assess("--samples", str(samples), "--areas", str(areas), "--area-unit", "ha",
                        "--out", str(tmp_path / "s"))
    assert rc == 0
    assert round(r["area"]["deforestation"]["estimate"]) == 21158 and round(r["area"]["deforestation"]["ci95"]) == 6158
    assert round(r["overall_accuracy"], 2) == 0.95 and r["area_unit"] == "ha"
    assert "21,158" in (out / "report.md").read_text()
    # the same sample as Parquet, with the map class as landcover sample names it (the CSV above: as
    # samples drawn before map_class were)
    pq.write_table(pa.table({"map_class": [a for a, _ in rows], "reference": [b for _, b in rows]}), tmp_path / "s.parquet")
    rc, r2, _ = assess("--samples", str(tmp_path / "s.parquet"), "--areas", str(areas), "--out", str(tmp_path / "s2"))
    assert rc == 0 and r2["area"] == r["area"]


def test_sample_draws_a_stratified_design_that_assess_reads_back(perfect_map, tmp_path, capsys):
    out = tmp_path / "sample.parquet"
    assert main(["sample", "--map", str(perfect_map), "--n", "60", "--min-per-class", "5", "--out", str(out)]) == 0
    t = gpd.read_parquet(out)
    counts = t["stratum"].value_counts().to_dict()
    assert sum(counts.values()) == 60 and min(counts.values()) >= 5
    table = mapfile.read_map(str(perfect_map))
    labels = np.array(table["label"].to_pylist(), dtype=object)
    for c, n in counts.items():  # inclusion probability = units drawn / tiles of the stratum
        assert np.allclose(t.loc[t.stratum == c, "inclusion_probability"], n / (labels == c).sum())
    assert (t.map_class == t.stratum).all() and t.reference.isna().all() and len(set(t.tile_id)) == 60
    assert t.map_class.value_counts().to_dict() == counts  # (a column named map hid GeoDataFrame.map)
    areas = Path(str(out)[: -len(".parquet")] + ".areas.csv")
    assert areas.exists()
    # a perfect interpreter labels every unit with its map class: assess then reports 1.0
    t["reference"] = t["map_class"]
    t.to_parquet(tmp_path / "labelled.parquet")
    rc, r, _ = assess("--samples", str(tmp_path / "labelled.parquet"), "--areas", str(areas),
                      "--out", str(tmp_path / "a"))
    assert rc == 0 and r["overall_accuracy"] == pytest.approx(1.0)


@pytest.mark.parametrize("case", ["no_overlap", "map_class_missing", "unknown_code", "malformed_samples",
                                  "sample_blank", "areas_missing_class", "incomplete_map", "bad_crosswalk"])
def test_bad_inputs_give_one_clear_error_and_nothing_complete(case, perfect_map, tmp_path, capsys):
    out = tmp_path / "out"
    samples = tmp_path / "samples.csv"
    areas = tmp_path / "areas.csv"
    areas.write_text("class,area\nForest,10\nSeaLake,5\n")
    cw = tmp_path / "cw.yaml"
    if case == "no_overlap":
        args = ["--map", str(perfect_map), "--reference", str(CHES_LABELS), "--crosswalk", str(CROSSWALK)]
        expect = "does not overlap the map"
    elif case == "map_class_missing":
        cw.write_text(CROSSWALK.read_text().replace("  Forest: forest\n", ""))
        args = ["--map", str(perfect_map), "--reference", str(LABELS), "--crosswalk", str(cw)]
        expect = r"Map class\(es\) \['Forest'\] are not in the 'map' section"
    elif case == "unknown_code":
        samples.write_text("map,reference\nForest,5\nSeaLake,9\n")
        args = ["--samples", str(samples), "--areas", str(areas), "--crosswalk", str(CROSSWALK)]
        expect = r"Reference class\(es\) \['9'\] of the sample table"
    elif case == "malformed_samples":
        samples.write_text("mapped,ref\nForest,Forest\n")
        args = ["--samples", str(samples), "--areas", str(areas)]
        expect = r"has no column\(s\) \['reference'\]"
    elif case == "sample_blank":
        samples.write_text("map,reference\nForest,Forest\nSeaLake,\n")
        args = ["--samples", str(samples), "--areas", str(areas)]
        expect = r"1 row\(s\) without a map or reference class \(first at row 2\)"
    elif case == "areas_missing_class":
        samples.write_text("map,reference\nForest,Forest\nRiver,River\n")
        args = ["--samples", str(samples), "--areas", str(areas)]
        expect = r"Map class\(es\) \['River'\] of the sample table .* have no area"
    elif case == "incomplete_map":
        half = tmp_path / "half"
        half.mkdir()
        (half / "part-00000.parquet").write_bytes((perfect_map / "part-00000.parquet").read_bytes())
        args = ["--map", str(half), "--reference", str(LABELS)]
        expect = "is incomplete"
    else:
        cw.write_text("map: {Forest: forest}\n")
        args = ["--map", str(perfect_map), "--reference", str(LABELS), "--crosswalk", str(cw)]
        expect = "exactly the keys 'map' and 'reference'"
    rc = main(["assess", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("landcover assess: error: ") and len(err.strip().splitlines()) == 1
    import re

    assert re.search(expect, err), err
    assert not (out / "assessment.json").exists() and not (out / "_SUCCESS").exists()


def test_the_comparison_of_a_wide_scene_is_stacked_and_large_in_the_maps_colours():
    import io

    from PIL import Image

    from raylib.eval import reports

    wide = np.zeros((10, 80), np.int16)
    wide[:, 40:] = 1
    png = reports.side_by_side_png("t", [wide, wide], ["forest", "water"], ["map", "reference"],
                                   colours=[(1, 2, 3), (4, 5, 6)])
    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.width >= 720 and img.height >= 2 * 90  # one above the other, 9 px a tile: not 664 x 108
    arr = np.asarray(img)
    assert (arr == (1, 2, 3)).all(axis=-1).sum() >= 2 * 10 * 40 * 81 and (arr == (4, 5, 6)).all(axis=-1).any()


def test_the_comparison_colours_a_group_as_its_most_frequent_map_class(monkeypatch):
    """'developed' holds Highway (grey) and Residential (red); on a map of Residential tiles
    the comparison draws 'developed' red, as the map's quick-look draws those tiles."""
    from types import SimpleNamespace

    import pyarrow as pa

    from raylib.eval import reports
    from raylib.pipelines import assess

    drawn = {}
    monkeypatch.setattr(reports, "side_by_side_png", lambda *a, colours=None, **k: drawn.setdefault("c", colours))
    classes = ["Highway", "Residential", "Forest"]
    table = pa.table({"scene": ["s.tif"] * 3, "grid_row": [0, 0, 0], "grid_col": [0, 1, 2],
                      "label_index": [1, 1, 2]})
    cw = SimpleNamespace(map={"Highway": "developed", "Residential": "developed", "Forest": "forest"})
    assess._comparison_png(table, np.ones(3, bool), np.array([0, 0, 1]), np.arange(3), np.array([0, 0, 1]),
                           ["developed", "forest"], cw, classes)
    assert drawn["c"] == [reports.NAMED_COLOURS["Residential"], reports.NAMED_COLOURS["Forest"]]

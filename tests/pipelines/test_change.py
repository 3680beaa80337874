"""landcover change on maps written in the map contract over a ground grid (no Ray): known
transitions give the exact transition table; persistence removes flicker; bad inputs are
refused in one line with nothing written."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raylib.cli import main
from raylib.formats import mapfile
from raylib.pipelines.change.run import run_change
from raylib.raster import scenes, tiling

CLASSES = ["forest", "crop", "water"]
GRID = tiling.GridSpec(16, 16, 10.0, ground=True)  # 160 m tiles
F, C, W = 0, 1, 2


def scene(crs="EPSG:32618", x0=500000.0) -> scenes.SceneInfo:
    """A 4 x 3 tile scene on the ground grid (64 x 48 pixels of 10 m)."""
    return scenes.SceneInfo("s.tif", 64, 48, 3, "uint16", crs, (10.0, 0.0, x0, 0.0, -10.0, 4400000.0),
                            (10.0, 10.0), 0, True)


def write_map(out: Path, labels: list, when: str, sure: float = 0.9, model: str = "m@1", classes=CLASSES,
              grid: tiling.GridSpec = GRID, info: scenes.SceneInfo | None = None, done: bool = True,
              rows: pa.Table | None = None) -> str:
    """A finished map: class index per tile (None: an error row, reason cloudy)."""
    rows = rows if rows is not None else tiling.tile_table(info or scene(), grid)
    n = rows.num_rows
    assert len(labels) == n
    k = len(classes)
    probs = np.full((n, k), np.nan, np.float32)
    for i, v in enumerate(labels):
        if v is not None:
            probs[i] = (1 - sure) / (k - 1)
            probs[i, v] = sure
    status = np.array(["ok" if v is not None else "error" for v in labels], object)
    error = np.array(["" if v is not None else "cloudy: 80 % of the tile is cloud" for v in labels], object)
    ts = np.datetime64(when, "s").astype(np.int64)
    rows = rows.append_column("datetime", pa.array(np.full(n, ts), pa.timestamp("s", tz="UTC")))
    table = mapfile.build_table(rows, probs, status, error, np.zeros(n, np.float32), classes, model)
    out.mkdir(parents=True, exist_ok=True)
    mapfile.write_part(table, str(out / "part-00000.parquet"), classes, model, {"grid": grid.as_dict()})
    if done:
        (out / "_SUCCESS").write_text("")
    return str(out)


BEFORE = [F, F, F, F, C, C, C, C, W, W, W, W]
AFTER = [F, C, C, F, C, C, F, C, W, W, W, C]  # forest->crop 2, crop->forest 1, water->crop 1


def areas() -> np.ndarray:
    return tiling.footprint_areas_ha(tiling.tile_table(scene(), GRID).column("geometry"))


def test_two_dates_give_the_exact_transition_table(tmp_path, capsys):
    a = write_map(tmp_path / "2018", BEFORE, "2018-06-01")
    b = write_map(tmp_path / "2023", AFTER, "2023-06-01")
    assert main(["change", "--before", a, "--after", b, "--out", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "change 2018-06-01 -> 2023-06-01: 4 of 12 tiles changed" in printed
    s = json.loads((tmp_path / "c" / "_summary.json").read_text())
    assert (tmp_path / "c" / "_SUCCESS").exists() and (tmp_path / "c" / "_quicklook" / "change.png").stat().st_size > 1000
    ha = areas()
    want = {("forest", "forest"): [0, 3], ("forest", "crop"): [1, 2], ("crop", "crop"): [4, 5, 7],
            ("crop", "forest"): [6], ("water", "water"): [8, 9, 10], ("water", "crop"): [11]}
    got = {(r["from"], r["to"]): (r["tiles"], r["hectares"]) for r in s["transitions"]}
    assert got == {k: (len(v), round(float(ha[v].sum()), 4)) for k, v in want.items()}
    assert s["changed_tiles"] == 4 and s["changed_hectares"] == round(float(ha[[1, 2, 6, 11]].sum()), 4)
    csv = (tmp_path / "c" / "_transitions.csv").read_text().splitlines()
    assert csv[0] == "period,from,to,changed,tiles,hectares" and len(csv) == 7
    assert "2018-06-01->2023-06-01,forest,crop,true,2," in "\n".join(csv)
    t = mapfile.read_map(str(tmp_path / "c"))  # a map reader sees a map of transitions
    assert sorted(t.column("label").to_pylist()).count("forest->crop") == 2 and t.num_rows == 12
    import pyarrow.parquet as pq

    ct = pq.read_table(str(tmp_path / "c" / "part-00000.parquet"))
    assert json.loads(ct.schema.metadata[b"landcover"])["kind"] == "change"
    by_id = {r["tile_id"]: r for r in ct.to_pylist()}
    ids = tiling.tile_table(scene(), GRID).column("tile_id").to_pylist()
    r = by_id[ids[1]]
    assert (r["from"], r["to"], r["changed"], r["labels"]) == ("forest", "crop", True, ["forest", "crop"])
    assert r["p_change"] == pytest.approx(1 - 2 * 0.9 * 0.05 - 0.05 ** 2, abs=1e-6)
    assert r["confidence_before"] == pytest.approx(0.9) and r["changed_at"] == "2023-06-01"
    assert by_id[ids[0]]["changed"] is False and by_id[ids[0]]["label"] == "forest->forest"
    # the run's STAC: an Item per part with its transitions' classes, valid, under a Collection
    from raylib.formats import stac_items

    coll = json.loads((tmp_path / "c" / "_stac" / "collection.json").read_text())
    item = json.loads((tmp_path / "c" / "_stac" / coll["links"][2]["href"][2:]).read_text())
    assert stac_items.validate(coll) == [] and stac_items.validate(item) == []
    assert item["assets"]["data"]["href"] == "../../part-00000.parquet" and item["properties"]["landcover:rows"] == 12
    assert item["assets"]["data"]["classification:classes"][1]["title"] == "forest->crop"


def test_unsure_dates_and_a_high_threshold_keep_tiles_stable(tmp_path):
    a = write_map(tmp_path / "a", BEFORE, "2018-06-01", sure=0.6)
    b = write_map(tmp_path / "b", AFTER, "2023-06-01", sure=0.6)
    s = run_change(_cfg(before=a, after=b, out=str(tmp_path / "c1"), min_p_change=0.75))  # p_change 0.72
    assert s["changed_tiles"] == 0 and s["candidates"] == 4
    s = run_change(_cfg(before=a, after=b, out=str(tmp_path / "c2"), min_confidence=0.7))
    assert s["changed_tiles"] == 0
    assert run_change(_cfg(before=a, after=b, out=str(tmp_path / "c3")))["changed_tiles"] == 4


def test_persistence_removes_flicker_over_three_dates(tmp_path):
    d1 = write_map(tmp_path / "d1", BEFORE, "2010-06-01")
    d2 = write_map(tmp_path / "d2", AFTER, "2015-06-01")
    back = list(AFTER)
    back[1] = F  # tile 1: forest -> crop -> forest (flicker); tiles 2, 6, 11 hold their new class
    d3 = write_map(tmp_path / "d3", back, "2020-06-01")
    raw = run_change(_cfg(dates=[d1, d2, d3], out=str(tmp_path / "raw"), persistence=False))
    kept = run_change(_cfg(dates=[d1, d2, d3], out=str(tmp_path / "kept")))  # persistence: on by default
    assert raw["flicker_tiles"] == 1 and raw["flicker_share"] == round(1 / 12, 4)
    assert raw["flicker_share_after"] == round(1 / 12, 4) and kept["flicker_share_after"] == 0
    assert raw["changed_tiles"] == kept["changed_tiles"] == 3  # tile 1 is back to forest either way ...
    per = {(r["period"], r["from"], r["to"]): r["tiles"] for r in raw["transitions"]}
    assert per[("2015-06-01->2020-06-01", "crop", "forest")] == 1  # ... but without persistence it changed twice
    per = {(r["period"], r["from"], r["to"]): r["tiles"] for r in kept["transitions"]}
    assert ("2015-06-01->2020-06-01", "crop", "forest") not in per
    assert per[("2010-06-01->2015-06-01", "forest", "crop")] == 1  # tile 2 only
    assert per[("2010-06-01->2020-06-01", "forest", "crop")] == 1


def test_a_change_into_the_last_date_is_pending_with_persistence(tmp_path):
    d1 = write_map(tmp_path / "d1", BEFORE, "2010-06-01")
    d2 = write_map(tmp_path / "d2", BEFORE, "2015-06-01")
    d3 = write_map(tmp_path / "d3", AFTER, "2020-06-01")
    s = run_change(_cfg(dates=[d1, d2, d3], out=str(tmp_path / "c")))
    assert s["changed_tiles"] == 0 and s["pending"] == 4


def test_error_rows_carry_the_date_and_reason(tmp_path):
    after = list(AFTER)
    after[5] = None  # cloudy in 2023
    a = write_map(tmp_path / "a", BEFORE, "2018-06-01")
    b = write_map(tmp_path / "b", after, "2023-06-01")
    s = run_change(_cfg(before=a, after=b, out=str(tmp_path / "c")))
    assert s["counts"] == {"ok": 11, "error": 1} and s["reasons"] == {"cloudy": 1}
    t = mapfile.read_map(str(tmp_path / "c")).to_pylist()
    bad = [r for r in t if r["status"] == "error"]
    assert len(bad) == 1 and bad[0]["reason"] == "cloudy" and bad[0]["error"].startswith(f"2023-06-01 ({b}): cloudy")
    assert bad[0]["label"] is None


def test_a_crosswalk_joins_maps_of_two_models(tmp_path):
    other = ["trees", "field", "lake", "town"]
    a = write_map(tmp_path / "a", BEFORE, "2018-06-01")
    b = write_map(tmp_path / "b", [{F: 0, C: 1, W: 2}[v] for v in AFTER], "2023-06-01", model="n@2", classes=other)
    with pytest.raises(Exception, match="another model|another classes|crosswalk"):
        run_change(_cfg(before=a, after=b, out=str(tmp_path / "no")))
    cw = tmp_path / "cw.yaml"
    cw.write_text("map: {forest: forest, trees: forest, crop: open, field: open, town: open, water: water, "
                  "lake: water}\n")
    s = run_change(_cfg(before=a, after=b, out=str(tmp_path / "c"), crosswalk=str(cw)))
    assert s["groups"] == ["forest", "open", "water"] and s["changed_tiles"] == 4


def _cfg(**kw):
    from raylib.config import ChangeConfig

    return ChangeConfig(**kw)


def _case(name: str, tmp: Path) -> list[str]:
    a = write_map(tmp / "a", BEFORE, "2018-06-01")
    b = write_map(tmp / "b", AFTER, "2023-06-01")
    if name == "one date":
        return ["--before", a]
    if name == "scene grid":
        s = write_map(tmp / "s", AFTER, "2023-06-01", grid=tiling.GridSpec(16, 16, 10.0))
        return ["--before", a, "--after", s]
    if name == "other grid":
        other = tiling.GridSpec(16, 8, 10.0, ground=True)
        g = write_map(tmp / "g", [F] * tiling.tile_table(scene(), other).num_rows, "2023-06-01", grid=other)
        return ["--before", a, "--after", g]
    if name == "no overlap":
        z = write_map(tmp / "z", AFTER, "2023-06-01", info=scene(x0=700000.0))
        return ["--before", a, "--after", z]
    if name == "out of order":
        return ["--before", b, "--after", a]
    if name == "unfinished":
        u = write_map(tmp / "u", AFTER, "2023-06-01", done=False)
        return ["--before", a, "--after", u]
    if name == "several observations":
        d = write_map(tmp / "d", AFTER, "2023-06-01")
        Path(d, "part-00001.parquet").write_bytes(Path(d, "part-00000.parquet").read_bytes())
        return ["--before", a, "--after", d]
    if name == "missing":
        return ["--before", a, "--after", str(tmp / "nothing")]
    raise AssertionError(name)


@pytest.mark.parametrize("case, says", [
    ("one date", "only --before was given"),
    ("scene grid", "map every date with --grid ground"),
    ("other grid", "different ground grids"),
    ("no overlap", "share no ground tile"),
    ("out of order", "out of order"),
    ("unfinished", "incomplete (no _SUCCESS)"),
    ("several observations", "--composite best"),
    ("missing", "There is no map at"),
])
def test_bad_inputs_are_refused_in_one_line_and_nothing_is_written(case, says, tmp_path, capsys):
    args = _case(case, tmp_path)
    out = tmp_path / "out"
    assert main(["change", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_change_map_is_sampled_by_transition(tmp_path):
    a = write_map(tmp_path / "a", BEFORE, "2018-06-01")
    b = write_map(tmp_path / "b", AFTER, "2023-06-01")
    run_change(_cfg(before=a, after=b, out=str(tmp_path / "c")))
    assert main(["sample", "--map", str(tmp_path / "c"), "--per-class", "1", "--out", str(tmp_path / "s.parquet")]) == 0
    import pyarrow.parquet as pq

    s = pq.read_table(str(tmp_path / "s.parquet"))
    assert sorted(s.column("stratum").to_pylist()) == sorted(
        ["crop->crop", "crop->forest", "forest->crop", "forest->forest", "water->crop", "water->water"])


def _equal_tiles(n: int, ha: float) -> pa.Table:
    """A tile table of ``n`` lon/lat boxes in one row along the equator (centred on UTM zone
    18's meridian), each of ``ha`` hectares on WGS 84 (boxes of one latitude band and width
    have one geodesic area)."""
    import shapely
    from pyproj import Geod

    def area(side):
        return abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.box(0, 0, side, side))[0]) / 1e4

    lo, hi = 0.001, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if area(mid) < ha else (lo, mid)
    side = (lo + hi) / 2
    rows = tiling.tile_table(scene(), tiling.GridSpec(2, 2, 10.0, ground=True)).slice(0, n)
    assert rows.num_rows == n
    x0 = -75 - n * side / 2
    boxes = [shapely.box(x0 + i * side, 0, x0 + (i + 1) * side, side) for i in range(n)]
    bbox = pa.StructArray.from_arrays([pa.array([b.bounds[k] for b in boxes]) for k in range(4)],
                                      names=["xmin", "ymin", "xmax", "ymax"])
    rows = rows.set_column(rows.column_names.index("geometry"), "geometry",
                           pa.array(shapely.to_wkb(boxes).tolist(), pa.binary()))
    return rows.set_column(rows.column_names.index("bbox"), "bbox", bbox)


def test_the_olofsson_example_through_a_change_map(tmp_path):
    """Olofsson et al. 2014's deforestation example (section 5) as a change map: 200 tiles of
    4,500 ha (the paper's 900,000 ha in its strata's shares), sampled and labelled with the
    paper's counts, assessed with the mapped areas taken from the change map."""
    cls = ["forest", "non_forest"]
    fo, nf = 0, 1
    # deforestation 4 tiles (18,000 ha), gain 3 (13,500), stable forest 64 (288,000), stable non-forest 129 (580,500)
    before = [fo] * 4 + [nf] * 3 + [fo] * 64 + [nf] * 129
    after = [nf] * 4 + [fo] * 3 + [fo] * 64 + [nf] * 129
    rows = _equal_tiles(200, 4500.0)
    a = write_map(tmp_path / "a", before, "2000-06-01", classes=cls, rows=rows)
    b = write_map(tmp_path / "b", after, "2010-06-01", classes=cls, rows=rows)
    assert main(["change", "--before", a, "--after", b, "--out", str(tmp_path / "c")]) == 0
    names = {"deforestation": "forest->non_forest", "forest_gain": "non_forest->forest",
             "stable_forest": "forest->forest", "stable_non_forest": "non_forest->non_forest"}
    order = list(names.values())
    counts = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]  # the paper's Table 8
    units = [(order[i], order[j]) for i in range(4) for j in range(4) for _ in range(counts[i][j])]
    samples = tmp_path / "labelled.csv"
    samples.write_text("map,reference\n" + "".join(f"{m},{r}\n" for m, r in units))
    out = tmp_path / "assessment"
    assert main(["assess", "--map", str(tmp_path / "c"), "--samples", str(samples), "--out", str(out)]) == 0
    r = json.loads((out / "assessment.json").read_text())
    loss = r["area"]["forest->non_forest"]
    assert round(loss["mapped"]) == 18000 and r["area_unit"] == "ha"
    assert round(loss["estimate"]) == 21158 and round(loss["ci95"]) == 6158  # the paper: 21,158 ± 6,158 ha
    assert round(r["area"]["non_forest->forest"]["estimate"]) == 11686  # gain: 11,686 ± 3,756 ha
    assert round(r["area"]["non_forest->forest"]["ci95"]) == 3756
    assert round(r["users_accuracy"]["forest->non_forest"]["estimate"], 2) == 0.88
    assert round(r["producers_accuracy"]["forest->non_forest"]["estimate"], 2) == 0.75
    assert round(r["overall_accuracy"], 2) == 0.95
    # a sample that left out a stratum is refused: its area would fall out of every estimate
    samples.write_text("map,reference\n" + "".join(f"{m},{r}\n" for m, r in units if m != order[1]))
    assert main(["assess", "--map", str(tmp_path / "c"), "--samples", str(samples),
                 "--out", str(tmp_path / "refused")]) == 2
    assert not (tmp_path / "refused" / "assessment.json").exists()


def _reference(path, codes: list[int]) -> str:
    """A reference class raster of the test scene: one code per tile (1 forest, 2 crop, 3 water)."""
    import rasterio
    from rasterio.transform import from_origin

    grid = np.asarray(codes, np.uint8).reshape(3, 4)
    data = np.kron(grid, np.ones((16, 16), np.uint8))
    with rasterio.open(path, "w", driver="GTiff", width=64, height=48, count=1, dtype="uint8", crs="EPSG:32618",
                       transform=from_origin(500000, 4400000, 10.0, 10.0), nodata=0) as ds:
        ds.write(data, 1)
    return str(path)


def test_a_change_map_assessed_against_references_of_both_dates(tmp_path):
    a = write_map(tmp_path / "a", BEFORE, "2018-06-01")
    b = write_map(tmp_path / "b", AFTER, "2023-06-01")
    run_change(_cfg(before=a, after=b, out=str(tmp_path / "c")))
    truth_before, truth_after = list(BEFORE), list(AFTER)
    truth_before[5] = F  # tile 5 was forest in 2018 (mapped crop -> crop; truly forest -> crop)
    truth_after[11] = W  # tile 11 is still water (mapped water -> crop)
    rb = _reference(tmp_path / "before.tif", [v + 1 for v in truth_before])
    ra = _reference(tmp_path / "after.tif", [v + 1 for v in truth_after])
    cw = tmp_path / "cw.yaml"
    cw.write_text("map: {forest: forest, crop: crop, water: water}\nreference: {1: forest, 2: crop, 3: water}\n")
    out = tmp_path / "assessment"
    assert main(["assess", "--map", str(tmp_path / "c"), "--reference-before", rb, "--reference-after", ra,
                 "--crosswalk", str(cw), "--out", str(out)]) == 0
    r = json.loads((out / "assessment.json").read_text())
    assert r["mode"] == "change" and r["tiles"]["assessed"] == 12 and r["area_unit"] == "ha"
    assert r["sample_accuracy"] == pytest.approx(10 / 12)
    ha = areas()
    est = r["area"]
    assert est["water->crop"]["mapped"] == pytest.approx(ha[11], rel=1e-6) and est["water->crop"]["estimate"] == 0
    assert est["water->water"]["estimate"] == pytest.approx(ha[[8, 9, 10, 11]].sum(), rel=1e-6)
    # forest->crop: its stratum (tiles 1, 2) and a third of crop->crop's (tile 5 of 4, 5, 7)
    assert est["forest->crop"]["estimate"] == pytest.approx(ha[[1, 2]].sum() + ha[[4, 5, 7]].sum() / 3, rel=1e-6)
    assert "first date -> last date" in (out / "report.md").read_text()
    # a map of one date is not a change map
    assert main(["assess", "--map", a, "--reference-before", rb, "--reference-after", ra,
                 "--out", str(tmp_path / "refused")]) == 2


@pytest.mark.parametrize("args, said", [
    (["--reference-before", "b.tif"], "give --reference-before and --reference-after"),
    (["--reference-after", "a.tif"], "give --reference-before and --reference-after"),
    (["--reference-before", "b.tif", "--reference-after", "a.tif", "--reference", "r.tif"],
     "give --map <change folder> and not --reference or --samples"),
])
def test_a_change_assessment_needs_both_references_and_no_other_mode(args, said, tmp_path, capsys):
    """One date's reference alone, or the change references beside --reference: refused
    before anything is read, in one line naming the flags (exit 2)."""
    assert main(["assess", "--map", str(tmp_path / "c"), *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_a_change_pictures_transitions_never_look_like_a_class():
    """The ten transitions' colours stay far from every class colour of the picture and from
    what the change panel shows besides (black: not observed; the imagery's greys), for
    EuroSAT's classes and for assessment groups: PermanentCrop's orange or Highway's grey
    never stand for a change."""
    from raylib.eval import reports
    from raylib.pipelines.change.picture import AVOID, transition_colours

    for names in (list(reports.NAMED_COLOURS)[:10], ["forest", "water", "developed", "agriculture", "barren"]):
        classes = reports.palette(names)
        moves = transition_colours(classes, 10)
        assert len(set(moves)) == 10
        for c in moves:
            assert min(np.linalg.norm(np.subtract(c, k)) for k in classes + AVOID) > 80, (names, c)

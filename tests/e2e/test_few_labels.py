"""The label-and-adapt loop on NC Wake: embed the scene into a store, train a head on a few
labelled tiles (from the reference raster, points, a CSV), remap, assess without the
training tiles."""

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely

from raylib.cli import main
from raylib.formats import embstore

from ..conftest import DATA, REPO

NC = DATA / "labelled-scenes" / "nc-wake-landsat7-landclass96"
CROSSWALK = REPO / "configs" / "crosswalks" / "eurosat-to-nc-landclass96.yaml"


@pytest.fixture(scope="module")
def store(ray_session, test_model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("nc") / "store")
    rc = main(["embed", "--scenes", str(NC / "image_landsat7_2000.tif"), "--model", test_model["uri"],
               "--bands", "3,2,1", "--sensor", "landsat-etm-l1", "--out", out])
    assert rc == 0
    return out


def test_loop_with_raster_labels(store, tmp_path, capsys):
    head = str(tmp_path / "head")
    assert main(["train-head", "--store", store, "--labels", str(NC / "label_landclass96.tif"),
                 "--crosswalk", str(CROSSWALK), "--per-class", "20", "--seed", "0", "--out", head]) == 0
    man = json.loads((tmp_path / "head" / "model.json").read_text())
    assert man["metrics"]["labelled_tiles"] == {"herbaceous_shrub": 20, "forest": 20, "developed": 20, "water": 3}
    assert man["head"]["features"]["mode"] == "embedding+spectral" and man["head"]["features"]["n_bands"] == 6
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert warned == ["landcover train-head: warning: class water: 3 labelled tile(s) found, 20 asked",
                      "landcover train-head: warning: no labelled tile of class(es) agriculture: the head cannot "
                      "predict it"], warned
    import pyarrow.parquet as pq

    tiles = pq.read_table(tmp_path / "head" / "training_tiles.parquet")
    assert tiles.num_rows == 63 and len(set(tiles["tile_id"].to_pylist())) == 63
    remapped = str(tmp_path / "map")
    assert main(["remap", "--store", store, "--model", head, "--out", remapped]) == 0
    rep = str(tmp_path / "assess")
    assert main(["assess", "--map", remapped, "--reference", str(NC / "label_landclass96.tif"),
                 "--crosswalk", str(CROSSWALK), "--exclude-training", head, "--out", rep]) == 0
    r = json.loads((tmp_path / "assess" / "assessment.json").read_text())
    assert r["not_assessed"]["training_tiles"] == 63
    counts = np.array(r["confusion"]["counts"])
    g = r["groups"]
    keep = [g.index(x) for x in ("forest", "developed", "herbaceous_shrub")]
    recall = [counts[i, i] / counts[:, i].sum() for i in keep]
    assert np.mean(recall) > 0.65, recall  # zero-shot EuroSAT: 0.26 on the same groups
    assert r["tiles"]["assessed"] + 63 <= 381 + 63


def test_labels_from_points_and_csv_and_bad_labels(store, tmp_path, capsys):
    t = embstore.read(store, columns=["tile_id", "geometry", "status"])
    ok = [i for i, s in enumerate(t["status"].to_pylist()) if s == "ok"]
    geoms = shapely.from_wkb(t["geometry"].to_pylist())
    pts = gpd.GeoDataFrame({"class": [5, 1] * 5}, geometry=[geoms[i].centroid for i in ok[100:110]], crs="OGC:CRS84")
    pts.to_file(tmp_path / "pts.geojson", driver="GeoJSON")
    assert main(["train-head", "--store", store, "--labels", str(tmp_path / "pts.geojson"),
                 "--crosswalk", str(CROSSWALK), "--features", "spectral", "--out", str(tmp_path / "h1")]) == 0
    m = json.loads((tmp_path / "h1" / "model.json").read_text())
    assert m["metrics"]["labelled_tiles"] == {"forest": 5, "developed": 5} and m["classes"] == ["forest", "developed"]
    ids = t["tile_id"].to_pylist()
    (tmp_path / "l.csv").write_text("tile_id,label\n" + "".join(f"{ids[i]},{'a' if k % 2 else 'b'}\n"
                                                                 for k, i in enumerate(ok[:12])))
    assert main(["train-head", "--store", store, "--labels", str(tmp_path / "l.csv"),
                 "--out", str(tmp_path / "h2")]) == 0
    assert json.loads((tmp_path / "h2" / "model.json").read_text())["classes"] == ["a", "b"]
    capsys.readouterr()
    # bad: labels that hit no tile; a class missing from the crosswalk; an empty store
    far = gpd.GeoDataFrame({"class": [5]}, geometry=[shapely.Point(10, 50)], crs="OGC:CRS84")
    far.to_file(tmp_path / "far.geojson", driver="GeoJSON")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("tile_id,label\n" + f"{ids[ok[0]]},9\n")
    for args, needle in (
            (["--labels", str(tmp_path / "far.geojson"), "--crosswalk", str(CROSSWALK)], "does not overlap the map"),
            (["--labels", str(tmp_path / "bad.csv"), "--crosswalk", str(CROSSWALK)],
             "Label(s) ['9'] of"),
            (["--labels", str(tmp_path / "l.csv")], "no embedding store")):
        emb = str(tmp_path / "empty") if needle == "no embedding store" else store
        rc = main(["train-head", "--store", emb, *args, "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err, err
        assert not (tmp_path / "bad" / "model.json").exists()


def test_similar_tiles(store, tmp_path, capsys):
    """Five forest tiles (pure in landclass96) as positives: most of the 50 most similar
    tiles are forest; the faiss IVF index finds nearly the same tiles; bad ids are named."""
    import pyarrow.parquet as pq

    from raylib.eval import reference

    t = embstore.read(store, columns=list(embstore.TILE_COLUMNS) + ["status"])
    cw = reference.load_crosswalk(str(CROSSWALK))
    ref = reference.raster_reference(t, str(NC / "label_landclass96.tif"), cw, purity=0.5)
    group = dict(zip(ref.rows.tolist(), [cw.groups[g] for g in ref.group]))
    pure = dict(zip(ref.rows.tolist(), ref.purity.tolist()))
    ids = t["tile_id"].to_pylist()
    ok = t["status"].to_pylist()
    forest = [ids[r] for r in sorted(group) if group[r] == "forest" and pure[r] > 0.9 and ok[r] == "ok"][:5]
    assert len(forest) == 5
    hits = {}
    for index in ("exact", "ivf"):
        out = str(tmp_path / f"{index}.parquet")
        assert main(["similar", "--store", store, "--positives", *forest, "--k", "50", "--index", index,
                     "--out", out]) == 0
        r = pq.read_table(out)
        assert r.num_rows == 50 and r["rank"].to_pylist() == list(range(1, 51)) and not set(forest) & set(r["tile_id"].to_pylist())
        hits[index] = r["tile_id"].to_pylist()
    pos = {tid: i for i, tid in enumerate(ids)}
    share = np.mean([group.get(pos[tid]) == "forest" for tid in hits["exact"]])
    assert share >= 0.6, share  # forest is 207 of the 381 assessed tiles (0.54)
    assert len(set(hits["exact"]) & set(hits["ivf"])) >= 40
    capsys.readouterr()
    rc = main(["similar", "--store", store, "--positives", "no-such-tile", "--out", str(tmp_path / "x.parquet")])
    assert rc == 2 and "are not in the store" in capsys.readouterr().err


def test_tune_on_labelled_tiles_of_the_store(store, tmp_path, capsys):
    """tune --labels: trials scored by cross-validation on the drawn tiles, the rest of the
    labelled tiles as the test; the best head is a head of the store that remap accepts."""
    out = tmp_path / "tune"
    assert main(["tune", "--store", store, "--labels", str(NC / "label_landclass96.tif"),
                 "--crosswalk", str(CROSSWALK), "--per-class", "10", "--seed", "1", "--trials", "3",
                 "--families", "logistic_regression,knn", "--max-concurrent-trials", "1", "--out", str(out)]) == 0
    assert "cross-validated balanced accuracy" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["labelled_tiles"] == {"herbaceous_shrub": 10, "forest": 10, "developed": 10, "water": 3}
    assert s["cv_folds"] == 3  # water has 3 labelled tiles
    assert s["test_tiles"] == 381 - 33 and s["test"]["balanced_accuracy"] > 0.5, s["test"]
    import pyarrow.parquet as pq

    assert pq.read_table(out / "model" / "training_tiles.parquet").num_rows == 33
    man = json.loads((out / "model" / "model.json").read_text())
    assert man["head"]["features"]["mode"] == "embedding+spectral" and man["metrics"]["best_config"]["family"] in (
        "logistic_regression", "knn")
    assert main(["remap", "--store", store, "--model", str(out / "model"), "--out", str(tmp_path / "map"),
                 "--no-quicklook"]) == 0
    capsys.readouterr()
    rc = main(["tune", "--store", store, "--per-class", "5", "--out", str(tmp_path / "bad")])
    assert rc == 2 and "--crosswalk and --per-class go with --labels" in capsys.readouterr().err


def test_export_tiles_reads_the_windows_the_map_read(store, test_model, tmp_path, capsys):
    """export-tiles: the drawn tiles as <class>/<tile_id>.tif; embedded again, each gives the
    embedding the store holds for it (the map's own reading, scaling and resampling)."""
    import rasterio

    from raylib.models.landcover_model import LandcoverModel
    from raylib.raster import patches

    out = tmp_path / "tiles"
    args = ["export-tiles", "--store", store, "--labels", str(NC / "label_landclass96.tif"),
            "--crosswalk", str(CROSSWALK), "--per-class", "3", "--seed", "2", "--out", str(out)]
    assert main(args) == 0
    files = sorted(out.glob("*/*.tif"))
    assert len(files) == 12 and {f.parent.name for f in files} == {"forest", "developed", "herbaceous_shrub", "water"}
    ls = patches.labelled_set(str(out), test_fraction=0)
    assert len(ls.sources) == 12 and set(ls.split) == {"train"}
    import pyarrow.parquet as pq

    tiles = pq.read_table(out / "training_tiles.parquet")
    assert sorted(tiles["tile_id"].to_pylist()) == sorted(f.stem for f in files)
    pix = []
    for f in files:
        with rasterio.open(f) as ds:
            assert ds.count == 3 and ds.descriptions == ("red", "green", "blue") and ds.crs.to_epsg() == 32119
            pix.append(ds.read().astype(np.float32) / 10000.0)
    model = LandcoverModel.load(test_model["uri"])
    mine = model.embed(np.stack(pix))
    t = embstore.read(store, columns=["tile_id", "embedding", "status"])
    pos = {tid: i for i, tid in enumerate(t["tile_id"].to_pylist())}
    there = embstore.embeddings_of(t.take([pos[f.stem] for f in files]))
    cos = (mine * there).sum(1) / np.linalg.norm(mine, axis=1) / np.linalg.norm(there, axis=1)
    assert cos.min() > 0.999, cos
    capsys.readouterr()
    assert main(args) == 2 and "already holds exported tiles" in capsys.readouterr().err


def test_pixel_classifier_maps_imagery_not_the_store(store, tmp_path, capsys):
    """train-head --pixels: a pixel classifier of the drawn tiles' pixels, labelled pixel by
    pixel from the raster, beside the tile head. remap refuses it; the map averages the two:
    a tile's probabilities are the mean of the same tile head's (remapped without the pixel
    classifier) and of its pixels' (read again as the map read them); the adapted map beats
    the tile head alone on the held-out tiles."""
    import shutil

    import pyarrow.parquet as pq

    from raylib.formats.mapfile import read_map
    from raylib.models.pixel_head import PixelHead, combine
    from raylib.pipelines.common.store_tiles import read_store_tiles
    from raylib.raster.reading import PixelFn

    head = tmp_path / "pix"
    assert main(["train-head", "--store", store, "--labels", str(NC / "label_landclass96.tif"),
                 "--crosswalk", str(CROSSWALK), "--per-class", "20", "--seed", "0", "--pixels", "--out", str(head)]) == 0
    man = json.loads((head / "model.json").read_text())
    px = man["metrics"]["pixels"]
    assert px["bands"] == 6 and px["stride"] == 2 and px["window"] == 9 and px["labels"] == "pixel by pixel from the class raster"
    assert set(px["pixels_per_class"]) == set(man["classes"]) and 50_000 < px["training_pixels"] <= 63 * 32 * 32
    spec = man["head"]["pixels"]
    assert spec["classes"] == [0, 1, 2, 3]
    capsys.readouterr()
    rc = main(["remap", "--store", store, "--model", str(head), "--out", str(tmp_path / "refused")])
    assert rc == 2 and "has a pixel classifier" in capsys.readouterr().err
    mapped = tmp_path / "map"
    assert main(["map", "--scenes", str(NC / "image_landsat7_2000.tif"), "--bands", "3,2,1", "--sensor",
                 "landsat-etm-l1", "--model", str(head), "--out", str(mapped), "--no-quicklook"]) == 0
    plain = tmp_path / "plain"  # the same tile head without the pixel classifier
    shutil.copytree(head, plain)
    del man["head"]["pixels"]
    (plain / "model.json").write_text(json.dumps(man))
    assert main(["remap", "--store", store, "--model", str(plain), "--out", str(tmp_path / "remap"),
                 "--no-quicklook"]) == 0
    a = read_map(str(mapped)).sort_by("tile_id")
    b = read_map(str(tmp_path / "remap")).sort_by("tile_id")
    assert a["tile_id"].to_pylist() == b["tile_id"].to_pylist() and a["status"].to_pylist() == b["status"].to_pylist()
    t = embstore.read(store, columns=[*embstore.TILE_COLUMNS, "status"])
    ids = t["tile_id"].to_pylist()
    ok = [i for i, s in enumerate(t["status"].to_pylist()) if s == "ok"]
    rows = np.array(ok[::20])  # a sample of the mapped tiles, read again
    ph = PixelHead.load(head, spec)
    _, _, pixel_out = read_store_tiles(embstore.read_meta(store), t, rows,
                                       PixelFn(ph.tile_proba, ph.width, ph.n_bands, ph.stride, ph.window))
    pos = {tid: i for i, tid in enumerate(a["tile_id"].to_pylist())}
    take = [pos[ids[r]] for r in rows]
    tile_head = np.array([b["probs"][i].as_py() for i in take], np.float32)
    want = combine(tile_head, pixel_out, spec["classes"])
    np.testing.assert_allclose(np.array([a["probs"][i].as_py() for i in take]), want, atol=1e-5)
    scores = {}
    for name, m in (("pixels", mapped), ("tile head", tmp_path / "remap")):
        rep = tmp_path / f"assess-{name}"
        assert main(["assess", "--map", str(m), "--reference", str(NC / "label_landclass96.tif"),
                     "--crosswalk", str(CROSSWALK), "--exclude-training", str(head), "--out", str(rep)]) == 0
        r = json.loads((rep / "assessment.json").read_text())
        counts, g = np.array(r["confusion"]["counts"]), r["groups"]
        scores[name] = np.mean([counts[i, i] / counts[:, i].sum()
                                for i in (g.index(x) for x in ("forest", "developed", "herbaceous_shrub"))])
    assert scores["pixels"] > max(0.75, scores["tile head"]), scores
    assert pq.read_table(head / "training_tiles.parquet").num_rows == 63
    # a scene without the six bands the pixel classifier reads: every tile an error row that says so
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(NC / "image_landsat7_2000.tif") as src:
        w = Window(100, 100, 64, 64)
        prof = dict(src.profile, count=3, width=64, height=64, transform=src.window_transform(w))
        with rasterio.open(tmp_path / "three.tif", "w", **prof) as dst:
            dst.write(src.read([1, 2, 3], window=w))
    capsys.readouterr()
    main(["map", "--scenes", str(tmp_path / "three.tif"), "--bands", "3,2,1", "--model", str(head),
          "--out", str(tmp_path / "three"), "--no-quicklook"])
    summary = json.loads((tmp_path / "three" / "_summary.json").read_text())
    assert summary["error_reasons"] == {"band_mismatch": summary["tiles"]} and summary["tiles"] == 9, summary
    t3 = read_map(str(tmp_path / "three"))
    assert "pixel classifier reads 6 spectral band(s)" in t3["error"][0].as_py()

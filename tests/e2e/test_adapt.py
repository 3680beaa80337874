"""The label-and-adapt loop on NC Wake: embed the scene into a store, train a head on a few
labelled tiles (from the reference raster, points, a CSV), remap, assess without the
training tiles."""

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely

from raylib import embstore
from raylib.cli import main

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
    assert main(["train-head", "--embeddings", store, "--labels", str(NC / "label_landclass96.tif"),
                 "--crosswalk", str(CROSSWALK), "--per-class", "20", "--seed", "0", "--out", head]) == 0
    man = json.loads((tmp_path / "head" / "model.json").read_text())
    assert man["metrics"]["labelled_tiles"] == {"herbaceous_shrub": 20, "forest": 20, "developed": 20, "water": 3}
    assert man["head"]["features"]["mode"] == "embedding+spectral" and man["head"]["features"]["n_bands"] == 6
    import pyarrow.parquet as pq

    tiles = pq.read_table(tmp_path / "head" / "training_tiles.parquet")
    assert tiles.num_rows == 63 and len(set(tiles["tile_id"].to_pylist())) == 63
    remapped = str(tmp_path / "map")
    assert main(["remap", "--embeddings", store, "--model", head, "--out", remapped]) == 0
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
    assert main(["train-head", "--embeddings", store, "--labels", str(tmp_path / "pts.geojson"),
                 "--crosswalk", str(CROSSWALK), "--features", "spectral", "--out", str(tmp_path / "h1")]) == 0
    m = json.loads((tmp_path / "h1" / "model.json").read_text())
    assert m["metrics"]["labelled_tiles"] == {"forest": 5, "developed": 5} and m["classes"] == ["forest", "developed"]
    ids = t["tile_id"].to_pylist()
    (tmp_path / "l.csv").write_text("tile_id,label\n" + "".join(f"{ids[i]},{'a' if k % 2 else 'b'}\n"
                                                                 for k, i in enumerate(ok[:12])))
    assert main(["train-head", "--embeddings", store, "--labels", str(tmp_path / "l.csv"),
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
        rc = main(["train-head", "--embeddings", emb, *args, "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err, err
        assert not (tmp_path / "bad" / "model.json").exists()

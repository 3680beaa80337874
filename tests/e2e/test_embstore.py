"""The embedding store: landcover map --store, landcover embed --scenes, landcover remap
(real scenes, real Ray, the S3 server)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from raylib.cli import main
from raylib.config import MapConfig, RemapConfig
from raylib.errors import InputError
from raylib.formats import embstore
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.pipelines.map.run import run_map
from raylib.pipelines.remap import run_remap

from ..conftest import LANDSAT, NAIP

S3_NAIP = f"s3://data/scenes/{NAIP.name}"


@pytest.fixture(scope="module")
def mapped(ray_session, bucket, test_model, tmp_path_factory):
    """The NAIP scene (from S3) and a Landsat crop, mapped with --store."""
    out = str(tmp_path_factory.mktemp("store") / "map")
    cfg = MapConfig(scenes=[S3_NAIP, str(LANDSAT)], out=out, model=test_model["uri"], bands=[1, 2, 3], fill_value=0,
                    gsd="native", store=True, rows_per_part=300)
    return {"cfg": cfg, "summary": run_map(cfg), "out": out}


def test_store_rows_keys_and_metadata(mapped):
    out = mapped["out"]
    store = storage.join(out, "_embeddings")
    assert mapped["summary"]["embeddings"] == store
    m, s = read_map(out), embstore.read(store)
    assert s.num_rows == m.num_rows == mapped["summary"]["tiles"]
    assert sorted(s["tile_id"].to_pylist()) == sorted(m["tile_id"].to_pylist())  # keyed by the map's tile ids
    by_id = dict(zip(m["tile_id"].to_pylist(), m["status"].to_pylist()))
    assert [by_id[t] for t in s["tile_id"].to_pylist()] == s["status"].to_pylist()
    ok = np.array(s["status"].to_pylist()) == "ok"
    assert s["embedding"].null_count == int((~ok).sum()) > 0  # error tiles have no embedding
    assert s.schema.field("embedding").type.value_type == "halffloat" and s.schema.field("embedding").type.list_size == 1280
    emb = embstore.embeddings_of(s.filter(ok))
    assert np.isfinite(emb).all() and (np.abs(emb).sum(axis=1) > 0).all()
    dates = {sc: d for sc, d in zip(s["scene"].to_pylist(), s["datetime"].to_pylist())}
    assert str(dates[S3_NAIP].date()) == "2015-09-26" and str(dates[str(LANDSAT)].date()) == "2020-05-18"
    meta = embstore.read_meta(store)
    assert meta["weights_hash"] and meta["preprocessing_hash"] and meta["backbone"] == "default"
    # row groups of ROW_GROUP rows, in Z-order, with bbox statistics
    files = embstore.part_files(store)
    assert [storage.basename(f) for f in files] == sorted(storage.basename(f) for f in storage.list_files(out)
                                                           if f.endswith(".parquet") and "/_embeddings/" not in f)
    md = pq.ParquetFile(files[0]).metadata
    assert md.row_group(0).num_rows <= embstore.ROW_GROUP
    names = [md.schema.column(i).path for i in range(md.num_columns)]
    assert md.row_group(0).column(names.index("bbox.xmin")).statistics.has_min_max


def test_remap_equals_map(mapped, test_model, tmp_path):
    out = str(tmp_path / "remap")
    s = run_remap(RemapConfig(store=storage.join(mapped["out"], "_embeddings"), model=test_model["uri"], out=out))
    assert s["tiles"] == mapped["summary"]["tiles"] and s["counts"] == mapped["summary"]["counts"]
    a = read_map(mapped["out"]).sort_by("tile_id")
    b = read_map(out).sort_by("tile_id")
    assert a["tile_id"].equals(b["tile_id"]) and a["label"].equals(b["label"]) and a["status"].equals(b["status"])
    assert a["reason"].equals(b["reason"]) and a["geometry"].equals(b["geometry"])
    pa_, pb = a["probs"].to_pylist(), b["probs"].to_pylist()
    ok = [p is not None for p in pa_]
    np.testing.assert_allclose(np.array([p for p, o in zip(pa_, ok) if o]), np.array([p for p, o in zip(pb, ok) if o]),
                               atol=1e-5)
    np.testing.assert_allclose(np.array(a["ood"].to_pylist(), float), np.array(b["ood"].to_pylist(), float),
                               atol=1e-5, equal_nan=True)
    assert storage.exists(out + "/_SUCCESS") and s["quicklooks"]
    # a bbox: only the tiles meeting it
    naip = a.filter(np.array(a["scene"].to_pylist()) == S3_NAIP)
    bb = naip["bbox"].combine_chunks()
    box = [float(np.min(bb.field("xmin"))), float(np.min(bb.field("ymin"))),
           float(np.max(bb.field("xmax"))), float(np.max(bb.field("ymax")))]
    s2 = run_remap(RemapConfig(store=storage.join(mapped["out"], "_embeddings"), model=test_model["uri"],
                               out=str(tmp_path / "bbox"), bbox=box))
    assert s2["tiles"] == naip.num_rows == 15 * 12


def test_embed_scenes_builds_the_same_store_and_refuses_mixing(mapped, test_model, tmp_path, capsys):
    out = str(tmp_path / "store")
    rc = main(["embed", "--scenes", S3_NAIP, "--model", test_model["uri"], "--bands", "1,2,3", "--fill-value", "0",
               "--gsd", "native", "--out", out])
    assert rc == 0 and "embedding store:" in capsys.readouterr().out
    mine = embstore.read(out).sort_by("tile_id")
    there = embstore.read(storage.join(mapped["out"], "_embeddings"))
    there = there.filter(np.array(there["scene"].to_pylist()) == S3_NAIP).sort_by("tile_id")
    assert mine["tile_id"].equals(there["tile_id"])
    np.testing.assert_array_equal(embstore.embeddings_of(mine), embstore.embeddings_of(there))
    assert embstore.read_meta(out)["preprocessing_hash"] == embstore.read_meta(
        storage.join(mapped["out"], "_embeddings"))["preprocessing_hash"]
    assert storage.exists(out + "/_SUCCESS") and not (tmp_path / "store" / "_quicklook").exists()
    # an incremental map adding tiles made another way to an existing store is refused
    inc = str(tmp_path / "inc")
    base = dict(out=inc, model=test_model["uri"], bands=[1, 2, 3], gsd="native", store=True, incremental=True)
    run_map(MapConfig(scenes=[S3_NAIP], **base))
    with pytest.raises(InputError, match="holds tiles made with another preprocessing"):
        run_map(MapConfig(scenes=[str(LANDSAT)], fill_value=0, tile_size=32, **base))


def test_a_map_made_with_embeddings_reads_as_the_map_alone_and_names_its_store(mapped, tmp_path):
    """``geopandas.read_parquet(<map>)`` (what the map command prints) gives the map's rows,
    labels and all: the store lives in a '_' folder every Parquet reader skips. Commands
    that read a store take the map folder too, and find a store where older maps kept it."""
    import shutil

    import geopandas

    out = mapped["out"]
    gdf = geopandas.read_parquet(out)
    assert len(gdf) == mapped["summary"]["tiles"] == read_map(out).num_rows and "label" in gdf.columns
    assert "embedding" not in gdf.columns and gdf["tile_id"].is_unique
    store = storage.join(out, "_embeddings")
    assert embstore.locate(out) == store and embstore.locate(store) == store
    legacy = tmp_path / "old-map"
    shutil.copytree(out, legacy)
    (legacy / "_embeddings").rename(legacy / "embeddings")  # a map made before the '_' folder
    assert embstore.locate(str(legacy)) == str(legacy / "embeddings")
    assert embstore.beside_map(str(legacy)) == str(legacy / "embeddings")  # its later runs add to it there
    assert embstore.beside_map(str(tmp_path / "new")) == str(tmp_path / "new" / "_embeddings")
    assert embstore.read(str(legacy)).num_rows == embstore.read(store).num_rows


def test_remap_refuses_a_head_of_another_backbone_and_an_empty_store(mapped, test_model, tmp_path, capsys):
    head = tmp_path / "head"
    import shutil

    shutil.copytree(test_model["uri"], head)
    man = json.loads((head / "model.json").read_text())
    man["backbone"]["input_size"] = 224  # embeddings of another input size
    (head / "model.json").write_text(json.dumps(man))
    rc = main(["remap", "--store", storage.join(mapped["out"], "_embeddings"), "--model", str(head),
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "use a head trained on this store's embeddings" in err and "224 px" in err
    (tmp_path / "empty").mkdir()
    rc = main(["remap", "--store", str(tmp_path / "empty"), "--model", test_model["uri"],
               "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert rc == 2 and "There is no embedding store at" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_killed_remap_resumes_with_the_parts_it_wrote(ray_session, mapped, test_model, tmp_path):
    """SIGKILL the remap driver after its first part; the re-run keeps that part, writes the
    others, and the map equals the map job's."""
    from .test_reliability import driver

    store, out = storage.join(mapped["out"], "_embeddings"), str(tmp_path / "remap")
    n_parts = len(embstore.part_files(store))
    assert n_parts >= 3
    args = ["remap", "--store", store, "--model", test_model["uri"], "--out", out, "--no-quicklook"]
    r = driver(ray_session, args, failpoint="remap_part_done:1")
    assert r.returncode == -9, r.stderr[-2000:]
    assert not storage.exists(out + "/_SUCCESS")
    s = run_remap(RemapConfig(store=store, model=test_model["uri"], out=out, quicklook=False))
    assert s["parts_resumed"] >= 1 and s["parts_resumed"] + s["parts_written"] == s["parts"] == n_parts
    a, b = read_map(mapped["out"]).sort_by("tile_id"), read_map(out).sort_by("tile_id")
    assert a["tile_id"].equals(b["tile_id"]) and a["label"].equals(b["label"]) and a["status"].equals(b["status"])


def test_the_run_describes_its_map_and_store_parts_in_stac(mapped):
    """A map run with --store writes a STAC Collection of its parts and one of its store's."""
    import json

    from raylib.formats import stac_items

    s = mapped["summary"]
    assert s["stac"]["map"]["rows"] == s["tiles"] and s["stac"]["store"]["items"] >= 1
    for folder in (mapped["out"], storage.join(mapped["out"], "_embeddings")):
        coll = json.loads(open(storage.join(folder, "_stac", "collection.json")).read())
        assert stac_items.validate(coll) == []
        for link in (x for x in coll["links"] if x["rel"] == "item"):
            item = json.loads(open(storage.join(folder, "_stac", link["href"][2:])).read())
            assert stac_items.validate(item) == [] and item["assets"]["data"]["file:size"] > 0

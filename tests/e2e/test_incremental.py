"""Scheduled incremental mapping: a map over an S3 prefix keeps a state record, so the next
run maps only new or changed scenes, and a model change re-maps on request."""

import json
import shutil

import pytest

from raylib.cli import main
from raylib.config import MapConfig
from raylib.errors import ConfigError
from raylib.formats import mapstate
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.pipelines.map.run import run_map

from ..conftest import SCENES

NAIP_2010 = SCENES / "m_4709963_se_14_1_20100629.tif"
NAIP_2015 = SCENES / "m_4709963_se_14_1_20150926.tif"
NAIP_2020 = SCENES / "m_4709963_se_14_1_20200831.tif"


def test_only_new_and_changed_scenes_are_mapped(ray_session, bucket, test_model, tmp_path, capsys):
    prefix, out = "s3://data/incremental/", "s3://maps/incremental"
    storage.write_bytes(prefix + "a.tif", NAIP_2010.read_bytes())
    cfg = MapConfig(scenes=[prefix], model=test_model["uri"], out=out, incremental=True, bands="naip")

    s1 = run_map(cfg)
    assert s1["tiles"] == 48 and s1["scenes"] == 1 and s1["reasons"] == {prefix + "a.tif": "new"}
    assert read_map(out).num_rows == 48

    storage.write_bytes(prefix + "b.tif", NAIP_2015.read_bytes())  # a new scene arrives
    s2 = run_map(cfg.model_copy(update={"num_gpus": 1}))  # on the session's logical GPU: the same job, the same map
    assert s2["tiles"] == 48 and s2["unchanged"] == 1 and s2["reasons"] == {prefix + "b.tif": "new"}
    t = read_map(out)
    assert t.num_rows == 96 and len(set(t["tile_id"].to_pylist())) == 96
    assert sorted(set(t["scene"].to_pylist())) == [prefix + "a.tif", prefix + "b.tif"]

    assert main(["map", "--scenes", prefix, "--model", test_model["uri"], "--out", out, "--incremental",
                 "--bands", "naip"]) == 0  # nothing new: nothing is processed
    printed = capsys.readouterr().out
    assert "mapped 0 tiles from 0 scene(s)" in printed and "2 scene(s) unchanged" in printed
    assert read_map(out).num_rows == 96

    # a scene rewritten in place (new ETag) is mapped again; its old rows are replaced
    before = {r["tile_id"]: r["probs"] for r in read_map(out).to_pylist() if r["scene"] == prefix + "a.tif"}
    storage.write_bytes(prefix + "a.tif", NAIP_2020.read_bytes())
    s4 = run_map(cfg)
    assert s4["reasons"] == {prefix + "a.tif": "changed"} and s4["tiles"] == 48
    t = read_map(out)
    assert t.num_rows == 96 and len(set(t["tile_id"].to_pylist())) == 96
    after = {r["tile_id"]: r["probs"] for r in t.to_pylist() if r["scene"] == prefix + "a.tif"}
    assert set(after) == set(before) and any(after[k] != before[k] for k in after)  # new pixels, new numbers
    state = {"scenes": mapstate.MapState.load(out).scenes}  # the record (a Parquet log under _state/)
    assert set(state["scenes"]) == {prefix + "a.tif", prefix + "b.tif"}
    parts = {u.rsplit("/", 1)[1] for u in storage.list_files(out + "/") if u.rsplit("/", 1)[1].startswith("part-")}
    assert parts == {p for s in state["scenes"].values() for p in s["parts"]}


def test_model_change_needs_refresh_and_debris_of_a_killed_run_is_removed(ray_session, test_model, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    shutil.copy(NAIP_2010, scenes / "a.tif")
    out = str(tmp_path / "map")
    cfg = MapConfig(scenes=[str(scenes)], model=test_model["uri"], out=out, incremental=True, bands="naip",
                    quicklook=False)
    run_map(cfg)
    other = tmp_path / "other-model"
    shutil.copytree(test_model["uri"], other)
    man = json.loads((other / "model.json").read_text())
    man["id"] = "another-model@0123456789"
    (other / "model.json").write_text(json.dumps(man))
    with pytest.raises(ConfigError, match="was mapped with model test-small@.*this run uses model another-model"):
        run_map(cfg.model_copy(update={"model": str(other)}))
    # a part left behind by a run killed before it recorded its parts
    shutil.copy(next((tmp_path / "map").glob("part-*.parquet")), tmp_path / "map" / "part-deadbeef0000-1-00000.parquet")
    s = run_map(cfg.model_copy(update={"model": str(other), "refresh": True}))
    assert s["reasons"] == {str(scenes / "a.tif"): "refresh"} and s["tiles"] == 48
    t = read_map(out)
    assert t.num_rows == 48 and set(t["model_id"].to_pylist()) == {"another-model@0123456789"}
    assert not (tmp_path / "map" / "part-deadbeef0000-1-00000.parquet").exists()


def test_incremental_refuses_a_map_made_without_it(ray_session, test_model, tmp_path):
    out = str(tmp_path / "map")
    run_map(MapConfig(scenes=[str(NAIP_2010)], model=test_model["uri"], out=out, quicklook=False))
    with pytest.raises(ConfigError, match="holds a map made without --incremental"):
        run_map(MapConfig(scenes=[str(NAIP_2010)], model=test_model["uri"], out=out, incremental=True))

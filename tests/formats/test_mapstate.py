"""formats.mapstate: the record of an incremental map, what a run owes, debris."""

import os

import pytest

from raylib.errors import ConfigError
from raylib.formats import mapstate

GRID = {"tile_size": 64, "stride": 64, "gsd": 10.0}


def _scene(tmp_path, name: str, data: bytes = b"x") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_record_roundtrip_and_what_a_run_owes(tmp_path):
    out = str(tmp_path / "map")
    os.makedirs(out)
    a, b, c = (_scene(tmp_path, n) for n in ("a.tif", "b.tif", "c.tif"))
    state = mapstate.MapState.load(out)
    assert state.scenes == {} and state.model_id is None
    plan = mapstate.plan_increment(state, [a, b], "m@1", GRID, refresh=False, out=out)
    assert plan.pending == [a, b] and plan.reasons == {a: "new", b: "new"}
    assert mapstate.record(state, a, fingerprint=plan.fingerprints[a], parts=["part-a-0"], tiles=4, counts={"ok": 4},
                           quicklook=None) == []
    mapstate.record(state, b, fingerprint=plan.fingerprints[b], parts=["part-b-0"], tiles=4, counts={"error": 4},
                    quicklook=None, failed="corrupt")
    state.model_id, state.grid = "m@1", GRID
    state.save(out)
    state = mapstate.MapState.load(out)
    assert state.committed_parts() == {"part-a-0", "part-b-0"} and state.get(b)["failed"] == "corrupt"
    assert state.get(a)["counts"] == {"ok": 4} and state.n_scenes() == 2 and state.n_tiles() == 8
    _scene(tmp_path, "a.tif", b"a rewritten scene")  # a new version: a new fingerprint
    plan = mapstate.plan_increment(state, [a, b, c], "m@1", GRID, refresh=False, out=out)
    assert plan.pending == [a, b, c] and plan.reasons == {a: "changed", b: "retry", c: "new"}
    replaced = mapstate.record(state, a, fingerprint=plan.fingerprints[a], parts=["part-a-1"], tiles=4, counts=None,
                               quicklook=None)
    assert replaced == ["part-a-0"]
    plan = mapstate.plan_increment(state, [a], "m@1", GRID, refresh=False, out=out)
    assert plan.pending == [] and plan.unchanged == [a]
    with pytest.raises(ConfigError, match="was mapped with model m@1; this run uses model m@2"):
        mapstate.plan_increment(state, [a], "m@2", GRID, refresh=False, out=out)
    plan = mapstate.plan_increment(state, [a], "m@2", GRID, refresh=True, out=out)
    assert plan.reasons == {a: "refresh"}


def test_debris_is_what_the_record_does_not_list(tmp_path):
    out = tmp_path / "map"
    out.mkdir()
    for name in ("part-a-0.parquet", "part-b-0.parquet", "part-c-0.parquet", "_summary.json"):
        (out / name).write_text("x")
    state = mapstate.MapState()
    mapstate.record(state, "s", fingerprint="f", parts=["part-a-0.parquet"], tiles=1, counts=None, quicklook=None)
    gone = mapstate.remove_debris(state, str(out), keep={"part-c-0.parquet"})
    assert gone == ["part-b-0.parquet"]
    assert sorted(p.name for p in out.iterdir()) == ["_summary.json", "part-a-0.parquet", "part-c-0.parquet"]
    assert mapstate.scene_key("s3://b/k.tif") == mapstate.scene_key("s3://b/k.tif") != mapstate.scene_key("k.tif")


def test_the_record_is_a_log_appended_per_run_and_compacted(tmp_path, monkeypatch):
    out = str(tmp_path / "map")
    os.makedirs(out)
    state = mapstate.MapState.load(out)
    state.model_id, state.grid = "m@1", GRID
    for run in range(5):  # five runs, each re-mapping scene "a" and adding one new scene
        mapstate.record(state, "a", fingerprint=f"v{run}", parts=[f"part-a-{run}"], tiles=4, counts=None,
                        quicklook=None)
        mapstate.record(state, f"n{run}", fingerprint="v", parts=[f"part-n{run}"], tiles=2, counts=None, quicklook=None)
        state.save(out)
    logs = sorted(p.name for p in (tmp_path / "map" / mapstate.STATE).glob("log-*.parquet"))
    assert len(logs) == 5  # one small file per run, nothing rewritten
    state = mapstate.MapState.load(out)
    assert state.get("a")["fingerprint"] == "v4" and state.n_scenes() == 6 and state.n_tiles() == 4 + 5 * 2
    state.save(out)  # nothing new: no file written
    assert len(list((tmp_path / "map" / mapstate.STATE).glob("log-*.parquet"))) == 5
    monkeypatch.setattr(mapstate, "COMPACT_AFTER", 3)
    mapstate.record(state, "b", fingerprint="v", parts=["part-b"], tiles=1, counts=None, quicklook=None)
    state.save(out)
    assert len(list((tmp_path / "map" / mapstate.STATE).glob("log-*.parquet"))) == 1
    again = mapstate.MapState.load(out)
    assert again.scenes == state.scenes and again.get("a")["parts"] == ["part-a-4"]


def test_a_record_of_an_earlier_version_is_carried_over(tmp_path):
    import json

    out = tmp_path / "map"
    out.mkdir()
    (out / "_state.json").write_text(json.dumps({"model_id": "m@1", "grid": GRID, "scenes": {
        "s3://b/a.tif": {"fingerprint": "f", "key": "k", "parts": ["part-x"], "tiles": 3, "counts": {"ok": 3},
                         "quicklook": None, "mapped_at": 1.0}}}))
    state = mapstate.MapState.load(str(out))
    assert mapstate.exists(str(out)) and state.get("s3://b/a.tif")["parts"] == ["part-x"]
    state.save(str(out))
    assert not (out / "_state.json").exists()
    assert mapstate.MapState.load(str(out)).get("s3://b/a.tif")["tiles"] == 3

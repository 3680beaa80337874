"""A map folder's life (formats.map_folder), without Ray: ready for a job, resumed, moved into
place, finished; a finished map refused without --overwrite."""

import json

import pytest

from raylib.errors import ConfigError, InputError
from raylib.formats import map_folder
from raylib.formats.mapfile import MARKER, SUCCESS, SUMMARY


def test_a_map_folders_life(tmp_path):
    out = str(tmp_path / "map")
    assert map_folder.prepare(out, "job-a", overwrite=False) is False  # a new folder
    map_folder.mark(out, "job-a", "map", model_id="m@1")
    marker = json.loads((tmp_path / "map" / MARKER).read_text())
    assert marker["job"] == "job-a" and marker["kind"] == "map" and marker["model_id"] == "m@1"
    tmp = tmp_path / "map" / "_tmp"
    tmp.mkdir()
    for k in range(2):
        (tmp / f"part-0000{k}.parquet").write_bytes(b"part %d" % k)
    assert map_folder.prepare(out, "job-a", overwrite=False) is True  # killed and rerun: resumed, parts kept
    assert sorted(p.name for p in tmp.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    map_folder.commit(out, ["part-00000.parquet", "part-00001.parquet"])
    assert (tmp_path / "map" / "part-00001.parquet").read_bytes() == b"part 1" and not tmp.exists()
    map_folder.finish(out, {"result": "failed", "tiles": 2})
    assert (tmp_path / "map" / SUMMARY).exists() and not (tmp_path / "map" / SUCCESS).exists()
    map_folder.finish(out, {"result": "ok", "tiles": 2})
    assert (tmp_path / "map" / SUCCESS).exists()
    with pytest.raises(ConfigError, match="already holds a finished map"):
        map_folder.prepare(out, "job-a", overwrite=False)
    assert map_folder.prepare(out, "job-a", overwrite=True) is False  # cleared for the new run
    assert not any((tmp_path / "map").glob("part-*")) and not (tmp_path / "map" / SUCCESS).exists()


def test_an_unfinished_run_of_another_job_is_cleared_and_a_strangers_folder_refused(tmp_path):
    out = str(tmp_path / "map")
    map_folder.prepare(out, "job-a", overwrite=False)
    map_folder.mark(out, "job-a", "map")
    (tmp_path / "map" / "part-00000.parquet").write_bytes(b"x")
    assert map_folder.prepare(out, "job-b", overwrite=False) is False
    assert not (tmp_path / "map" / "part-00000.parquet").exists()
    other = tmp_path / "theirs"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises((ConfigError, InputError)):
        map_folder.prepare(str(other), "job-a", overwrite=False)
    assert (other / "notes.txt").read_text() == "mine"

"""End to end: real scenes on a real S3 server -> Ray Data + actor pool -> GeoParquet."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

from raylib.cli import main
from raylib.config import MapConfig
from raylib.errors import ConfigError
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.pipelines.map.run import run_map
from raylib.raster import scenes, tiling

from ..conftest import LANDSAT, LANDSAT_B2, NAIP, NAIP_COUNTS, REPO

S3_LANDSAT = f"s3://data/scenes/{LANDSAT.name}"
S3_NAIP = f"s3://data/scenes/{NAIP.name}"


def check_map(table, scene_path, scene_uri, grid, classes, model_id):
    info = scenes.open_scene(str(scene_path))
    expected = tiling.tile_table(scenes.SceneInfo(**{**info.__dict__, "uri": scene_uri}), grid)
    rows = table
    assert rows.num_rows == expected.num_rows
    assert sorted(rows["tile_id"].to_pylist()) == sorted(expected["tile_id"].to_pylist())
    assert len(set(rows["tile_id"].to_pylist())) == rows.num_rows  # no duplicates
    cov = np.zeros((info.height, info.width), np.int32)
    for r, c, h, w in zip(*(rows[k].to_numpy() for k in ("row_off", "col_off", "height", "width"))):
        cov[r : r + h, c : c + w] += 1
    assert cov.min() == 1 and cov.max() == 1  # every pixel covered exactly once
    d = rows.to_pydict()
    ok = np.array(d["status"]) == "ok"
    assert ok.sum() > 0
    for i in np.flatnonzero(ok):
        p = np.array(d["probs"][i])
        assert len(p) == len(classes) and abs(p.sum() - 1) < 1e-5
        assert d["label_index"][i] == int(p.argmax()) and d["label"][i] == classes[int(p.argmax())]
        assert d["confidence"][i] == pytest.approx(float(p.max()))
        assert d["error"][i] is None and d["reason"][i] is None and d["model_id"][i] == model_id
        assert d["area_ha"][i] > 0
    for i in np.flatnonzero(~ok):  # fill: all of the tile, or more than max_fill_fraction of it; or mostly outside
        assert (d["error"][i].startswith("all_nodata") and d["fill_fraction"][i] == 1.0) or \
            (d["reason"][i] == "mostly_fill" and d["error"][i].startswith("mostly_fill: ")) or \
            (d["reason"][i] == "mostly_outside" and d["edge"][i] and d["error"][i].startswith("mostly_outside: "))
        assert d["probs"][i] is None and d["label"][i] is None
    with rasterio.open(scene_path) as ds:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    b = shapely.bounds(shapely.from_wkb(np.array(d["geometry"], dtype=object)))
    assert (b[:, 0] >= w - 1e-9).all() and (b[:, 2] <= e + 1e-9).all()
    assert (b[:, 1] >= s - 1e-9).all() and (b[:, 3] <= n + 1e-9).all()
    return d


def test_map_landsat_from_s3_to_s3(ray_session, bucket, test_model):
    import geopandas

    out = "s3://maps/landsat"
    cfg = MapConfig(scenes=[S3_LANDSAT], out=out, model=test_model["uri"], tile_size=64, gsd="native",
                    bands="landsat8-b234", fill_value=0, batch_size=128)
    summary = run_map(cfg)
    grid = tiling.GridSpec(64, 64, None)
    assert summary["tiles"] == 32 * 30 == 960
    assert summary["tiles_on_driver"] == 0  # Ray was up: no child maps a first batch
    table = read_map(out)
    classes = test_model["manifest"].classes
    d = check_map(table, LANDSAT, S3_LANDSAT, grid, classes, test_model["manifest"].id)
    # the scene has 16.5 % fill (value 0): all-fill tiles become all_nodata error rows, nothing dropped
    n_err = sum(s != "ok" for s in d["status"])
    assert summary["counts"] == {"error": n_err, "ok": 960 - n_err} and 50 < n_err < 300
    # GeoPandas reads it straight from S3
    fs, path = storage.arrow_filesystem(out)
    gdf = geopandas.read_parquet(path, filesystem=fs)
    assert len(gdf) == 960 and gdf.crs.to_string() == "OGC:CRS84"
    meta = json.loads(pq.read_schema(path + "/part-00000.parquet", filesystem=fs).metadata[b"landcover"])
    assert meta["classes"] == classes and meta["model_id"] == test_model["manifest"].id
    geo = json.loads(pq.read_schema(path + "/part-00000.parquet", filesystem=fs).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert storage.exists(out + "/_SUCCESS") and not storage.list_files(out + "/_tmp/")
    png = storage.read_bytes(summary["quicklooks"][0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # lake water is the largest class among the valid tiles of this reservoir scene? at least present
    assert "SeaLake" in set(d["label"]) or "River" in set(d["label"])


def test_map_naip_local_reads_with_duckdb_and_is_deterministic(ray_session, bucket, test_model, tmp_path):
    import duckdb
    import geopandas

    out = str(tmp_path / "naip")
    cfg = MapConfig(scenes=[S3_NAIP], out=out, model=test_model["uri"])  # model grid: 64 px at 10 m
    summary = run_map(cfg)
    assert summary["tiles"] == 8 * 6 == 48 and summary["counts"] == NAIP_COUNTS
    assert summary["error_reasons"] == {"mostly_outside": 6} and summary["result"] == "ok"  # (data, not failures)
    table = read_map(out)
    check_map(table, NAIP, S3_NAIP, tiling.GridSpec(64, 64, 10.0), test_model["manifest"].classes,
              test_model["manifest"].id)
    gdf = geopandas.read_parquet(out)
    assert len(gdf) == 48 and gdf.geometry.is_valid.all()
    # per-tile spectral statistics of all 4 NAIP bands (R, G, B, NIR), NDVI/NDWI, OOD score
    mapped = table.filter(pc.equal(table["status"], "ok"))
    assert all(len(v) == 4 for v in mapped["band_mean"].to_pylist())
    assert all(len(v) == 4 for v in mapped["band_std"].to_pylist())
    ndvi, ndwi, ood = (np.array(mapped[c].to_pylist(), float) for c in ("ndvi", "ndwi", "ood"))
    assert np.isfinite(ndvi).all() and (np.abs(ndvi) <= 1).all() and np.isfinite(ndwi).all()
    assert np.isfinite(ood).all() and (ood > 0).all()
    assert summary["scaling"] == {"reflectance": 1}  # NAIP from its quarter-quad name: its 8-bit values as they are
    n, labels = duckdb.sql(f"select count(*), count(distinct label) from read_parquet('{out}/*.parquet')").fetchall()[0]
    assert n == 48 and labels >= 1
    assert (tmp_path / "naip" / "_quicklook").is_dir()
    # same input, same grid -> same ids and predictions, also with small blocks taken several at
    # once by the actor (actor_concurrency: GPU actors' default); a finished map is not clobbered
    with pytest.raises(ConfigError, match="already holds a finished map"):
        run_map(cfg)
    run_map(cfg.model_copy(update={"overwrite": True, "actor_concurrency": 3, "block_tiles": 8}))
    again = read_map(out).sort_by("tile_id")
    first = table.sort_by("tile_id")
    assert again["tile_id"].equals(first["tile_id"]) and again["label"].equals(first["label"])
    assert again["probs"].is_valid().equals(first["probs"].is_valid())
    np.testing.assert_allclose(np.array(again["probs"].drop_null().to_pylist()),
                               np.array(first["probs"].drop_null().to_pylist()), atol=1e-5)


@pytest.mark.parametrize("case", ["missing", "not_raster", "too_few_bands", "no_bucket", "bad_value", "unknown_key",
                                  "truncated"])
def test_bad_input_gives_one_clear_error_and_no_output(case, ray_session, bucket, test_model, tmp_path, capsys):
    storage.write_bytes("s3://data/bad/notes.tif", b"this is a text file, not a GeoTIFF")
    out = str(tmp_path / "out")
    base = ["map", "--model", test_model["uri"], "--out", out]
    args, needle = {
        "missing": (["--scenes", str(tmp_path / "nope.tif")], "nope.tif does not exist"),
        "not_raster": (["--scenes", "s3://data/bad/notes.tif"], "s3://data/bad/notes.tif is not a readable raster"),
        "too_few_bands": (["--scenes", str(LANDSAT_B2)], "has 1 band(s)"),
        "no_bucket": (["--scenes", "s3://no-such-bucket/scene.tif"], "bucket of s3://no-such-bucket/scene.tif does not exist"),
        "bad_value": (["--scenes", str(NAIP), "--tile-size", "-5"], "field 'tile_size'"),
        "unknown_key": (["--config", str(tmp_path / "c.yaml")], "unknown field 'tile_sise'"),
        # (head -c 5000 scene.tif > bad.tif: its header reads, its first block does not)
        "truncated": (["--scenes", str(tmp_path / "bad.tif")], "bad.tif cannot be mapped (corrupt: "),
    }[case]
    (tmp_path / "bad.tif").write_bytes(LANDSAT.read_bytes()[:5000])
    (tmp_path / "c.yaml").write_text(f"scenes: [{NAIP}]\ntile_sise: 32\n")
    rc = main(base + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and "Fix:" in err and err.count("\n") == 1  # one line
    assert "4294967295" not in err and (case != "truncated" or "copy it again" in err)  # (GDAL's chain: not shown)
    assert not os.path.exists(out)  # nothing written, nothing that looks complete


def test_job_entry_point_with_yaml_and_default_model(ray_session, bucket, tmp_path):
    """jobs/map.py + YAML config, no --model: the built-in default model (built small here)."""
    from raylib.models.default import default_model_dir

    default_model_dir(per_class=10)  # populate the cache the job will find
    cfg = tmp_path / "map.yaml"
    cfg.write_text(f"scenes: [{S3_NAIP}]\nout: {tmp_path / 'job'}\nbatch_size: 32\n")
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    r = subprocess.run([sys.executable, str(REPO / "jobs" / "map.py"), "--config", str(cfg)],
                       capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mapped 48 tiles from 1 scene(s)" in r.stdout and "quick-look:" in r.stdout
    assert read_map(str(tmp_path / "job")).num_rows == 48


def test_prefix_expands_to_every_tif(bucket):
    from raylib.pipelines.common.planning import expand_scenes

    storage.write_bytes("s3://data/mixed/readme.txt", b"not a scene")
    storage.write_bytes("s3://data/mixed/a/x.TIF", b"")
    storage.write_bytes("s3://data/mixed/y.tiff", b"")
    assert expand_scenes(["s3://data/mixed/"]) == ["s3://data/mixed/a/x.TIF", "s3://data/mixed/y.tiff"]
    assert expand_scenes(["s3://data/scenes/", S3_NAIP]) == sorted(
        f"s3://data/scenes/{p.name}" for p in (LANDSAT, LANDSAT_B2, NAIP))
    with pytest.raises(Exception, match="No .tif/.tiff scenes under"):
        expand_scenes(["s3://data/empty-prefix/"])


def test_hive_partitions_by_zone_and_year_resume_and_a_bbox_filter_reads_only_its_row_groups(
        ray_session, bucket, test_model, tmp_path):
    """Two scenes in two UTM zones and two years: parts under zone=/year= folders (pyarrow
    reads the keys back as columns), small row groups each within one scene, and a run that
    lost one of its parts redoes only that part's tiles."""
    import pyarrow.dataset as pads

    out = tmp_path / "map"
    cfg = MapConfig(scenes=[S3_NAIP, S3_LANDSAT], out=str(out), model=test_model["uri"], gsd="native",
                    tile_size=64, bands=[1, 2, 3], fill_value=0, partition_by=["zone", "year"], rows_per_part=200,
                    row_group_rows=50, quicklook=False)
    s = run_map(cfg)
    naip_zone = scenes.open_scene(str(NAIP)).crs.split(":")[1]
    landsat_zone = scenes.open_scene(str(LANDSAT)).crs.split(":")[1]
    folders = sorted(str(p.parent.relative_to(out)) for p in out.rglob("part-*.parquet"))
    assert set(folders) == {f"zone={naip_zone}/year=2015", f"zone={landsat_zone}/year=2020"}, folders
    ds = pads.dataset(str(out), format="parquet", partitioning="hive", ignore_prefixes=["_", "."])
    t = ds.to_table(columns=["tile_id", "scene", "zone", "year"])
    assert t.num_rows == s["tiles"] and len(set(t["tile_id"].to_pylist())) == t.num_rows
    by_scene = {sc: {(z, y) for sc2, z, y in zip(*(t[c].to_pylist() for c in ("scene", "zone", "year"))) if sc2 == sc}
                for sc in (S3_NAIP, S3_LANDSAT)}
    assert by_scene == {S3_NAIP: {(int(naip_zone), 2015)}, S3_LANDSAT: {(int(landsat_zone), 2020)}}
    assert s["parts"] == len(folders) and all(pq.read_metadata(p).num_rows <= 200 for p in out.rglob("part-*.parquet"))
    # a bbox query on the NAIP scene's footprint reads only row groups of the NAIP partition
    naip = t.filter(pc.equal(t["scene"], S3_NAIP))
    bb = pads.dataset(str(out), format="parquet", partitioning="hive", ignore_prefixes=["_", "."]).to_table(
        filter=pc.field("scene") == S3_NAIP, columns=["bbox"])["bbox"].combine_chunks()
    x0, x1 = pc.min(bb.field("xmin")).as_py(), pc.max(bb.field("xmax")).as_py()
    flt = (pc.field("bbox", "xmin") <= x1) & (pc.field("bbox", "xmax") >= x0)
    groups = [rg for f in ds.get_fragments() for rg in f.split_by_row_group(flt)]
    assert groups and all(f"zone={naip_zone}" in g.path for g in groups)
    assert ds.to_table(filter=flt, columns=["scene"])["scene"].to_pylist().count(S3_NAIP) == naip.num_rows
    # a killed run's parts minus one: the re-run redoes only that part's tiles
    victim = sorted(out.rglob("part-*.parquet"))[-1]
    lost = pq.read_metadata(victim).num_rows
    for name in ("_SUCCESS", "_summary.json"):
        (out / name).unlink()
    victim.unlink()
    again = run_map(cfg)
    assert again["tiles_computed"] == lost and again["parts_resumed"] == s["parts"] - 1
    t2 = pads.dataset(str(out), format="parquet", partitioning="hive", ignore_prefixes=["_", "."]).to_table(
        columns=["tile_id"])
    assert sorted(t2["tile_id"].to_pylist()) == sorted(t["tile_id"].to_pylist())


def test_the_first_batch_mapped_while_ray_starts_gives_the_same_map(ray_session, bucket, test_model, tmp_path,
                                                                   monkeypatch):
    """A slow Ray start (simulated: it is 'ready' once the first batch is back from the
    driver's child process): the child's rows are taken before the pipeline starts, the
    pipeline leaves those tiles out, and the map equals the pipeline's own."""
    import threading

    from raylib.pipelines.map import driver_head
    from raylib.pipelines.map import run as run_module

    ready = threading.Event()

    class SlowStart:
        def __init__(self, address):
            self.ready = ready
            threading.Timer(120, ready.set).start()  # never hang the suite

        def wait(self):
            ready.wait()

    take = driver_head.DriverHead.take

    def take_then_start(self):
        rows = take(self)
        if rows is not None or self.error is not None:
            ready.set()
        return rows

    monkeypatch.setattr(run_module, "_RayStarter", SlowStart)
    monkeypatch.setattr(run_module, "_ray_ready", lambda: False)  # (the session's Ray is up: as if it were not)
    monkeypatch.setattr(driver_head.DriverHead, "take", take_then_start)
    cfg = MapConfig(scenes=[S3_LANDSAT], out=str(tmp_path / "head"), model=test_model["uri"], tile_size=64,
                    gsd="native", bands="landsat8-b234", fill_value=0, batch_size=128)
    s = run_map(cfg)
    assert s["tiles_on_driver"] == 128 and s["tiles"] == 960
    head = read_map(str(tmp_path / "head")).sort_by("tile_id")
    monkeypatch.undo()
    ready.set()
    run_map(cfg.model_copy(update={"out": str(tmp_path / "pipeline"), "driver_first_block": False}))
    base = read_map(str(tmp_path / "pipeline")).sort_by("tile_id")
    assert head["tile_id"].equals(base["tile_id"]) and head["status"].equals(base["status"])
    assert head["label"].equals(base["label"])


def test_settings_marked_run_leave_the_rows_alike(ray_session, bucket, test_model, tmp_path):
    """The settings left out of a map's job identity (marked RUN in raylib/config: how the job
    runs) all changed at once, the model on the session's logical GPU: the same rows (so a
    killed run resumed with them changed keeps valid parts)."""
    from raylib.config import job_role

    base = dict(scenes=[S3_NAIP], model=test_model["uri"], tile_size=64, gsd="native", bands=[1, 2, 3], fill_value=0)
    first = run_map(MapConfig(out=str(tmp_path / "a"), quicklook=False, **base))
    changed = dict(batch_size=7, read_batch_size=13, actors=1, actor_cpus=0.5, read_cpus=0.25, torch_threads=1,
                   num_gpus=1, plan_threads=1, scenes_per_task=2, read_units_per_task=1, block_tiles=5,
                   actor_concurrency=2, driver_first_block=False, row_group_rows=10, read_timeout=30.0,
                   read_retries=1, max_error_share=1.0, quicklook=True, refresh=False, overwrite=True)
    run_fields = {k for k, f in MapConfig.model_fields.items() if job_role(f) == "run"}
    assert run_fields - set(changed) == {"out", "cog", "ray_address"}  # (a new RUN mark is proved here too)
    s = run_map(MapConfig(out=str(tmp_path / "b"), **base, **changed))
    assert s["tiles"] == first["tiles"] == 180 and s["counts"] == first["counts"] and s["tiles_on_driver"] == 0
    a, b = (read_map(str(tmp_path / x)).sort_by("tile_id") for x in "ab")
    import pyarrow as pa

    for col in a.column_names:  # (the network's floats within 1e-4: other batch sizes and threads sum in another order)
        if col == "probs" or pa.types.is_floating(a[col].type) and col in ("confidence", "ood"):
            np.testing.assert_allclose(np.array(a[col].drop_null().to_pylist()),
                                       np.array(b[col].drop_null().to_pylist()), atol=1e-4, err_msg=col)
        else:
            assert a[col].equals(b[col]), col

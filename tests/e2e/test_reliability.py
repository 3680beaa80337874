"""Fault injection against the real S3 server and the real Ray cluster: every tile of the
grid ends as exactly one row, whatever breaks. Each case states its figures (tiles tried,
predicted, error rows, lost, duplicates); with LANDCOVER_RELIABILITY_LOG set they are also
appended there as JSON lines (RELIABILITY.md is made from that)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio
from rasterio.windows import Window

from raylib.cli import main
from raylib.config import MapConfig
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.pipelines.map import row_codec
from raylib.pipelines.map.run import run_map
from raylib.raster import scenes, tiling

from ..conftest import LANDSAT, LANDSAT_B2, REPO, S3_KEY_ID, S3_SECRET, SCENES

NAIP_2015 = SCENES / "m_4709963_se_14_1_20150926.tif"
NAIP_2020 = SCENES / "m_4709963_se_14_1_20200831.tif"
GRID = tiling.GridSpec(64, 64, None)
MAP_ARGS = dict(tile_size=64, gsd="native", bands=[1, 2, 3], fill_value=0, batch_size=32, rows_per_part=64)


def record(case: str, table: pa.Table, expected_ids: set[str], **extra) -> dict:
    """The case's figures; asserts nothing was lost or duplicated."""
    ids = table["tile_id"].to_pylist()
    status = np.array(table["status"].to_pylist())
    reasons = [r for r in table["reason"].to_pylist() if r]
    figures = {
        "case": case, "tiles_tried": len(expected_ids), "rows": len(ids), "predicted": int((status == "ok").sum()),
        "error_rows": int((status == "error").sum()),
        "reasons": {r: reasons.count(r) for r in sorted(set(reasons))},
        "lost": len(expected_ids - set(ids)), "duplicates": len(ids) - len(set(ids)),
        "unexpected": len(set(ids) - expected_ids), **extra,
    }
    log = os.environ.get("LANDCOVER_RELIABILITY_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps(figures) + "\n")
    assert figures["lost"] == 0 and figures["duplicates"] == 0 and figures["unexpected"] == 0, figures
    return figures


def expected_ids(uris_paths: dict[str, Path | None]) -> set[str]:
    """Tile ids the grid owes: every tile of a readable header, one row for an unreadable one."""
    out = set()
    for uri, path in uris_paths.items():
        try:
            info = scenes.open_scene(str(path) if path else uri)
            info = scenes.SceneInfo(**{**info.__dict__, "uri": uri})
            out |= set(tiling.tile_table(info, GRID)["tile_id"].to_pylist())
        except Exception:
            out |= set(row_codec.unreadable_scene_row(uri, GRID)["tile_id"].to_pylist())
    return out


def crop(src: Path, dst: Path, rows: int, cols: int, **changes) -> Path:
    with rasterio.open(src) as ds:
        data = ds.read(window=Window(0, 0, cols, rows))
        prof = dict(ds.profile, width=cols, height=rows, transform=ds.window_transform(Window(0, 0, cols, rows)))
    prof.pop("blockxsize", None), prof.pop("blockysize", None)
    prof.update(tiled=False, **changes)
    if "dtype" in changes:
        data = data.astype(changes["dtype"])
    if changes.pop("zeros", False):
        data[:] = 0
    with rasterio.open(dst, "w", **prof) as out:
        out.write(data)
    return dst


@pytest.fixture(scope="module")
def clean(bucket, test_model, tmp_path_factory):
    """Two real NAIP scenes on S3 (360 tiles) and an uninterrupted reference map of them."""
    prefix = "s3://data/reliability/clean/"
    for p in (NAIP_2015, NAIP_2020):
        storage.write_bytes(prefix + p.name, p.read_bytes())
    ref = str(tmp_path_factory.mktemp("ref") / "map")
    cfg = MapConfig(scenes=[prefix], out=ref, model=test_model["uri"], **MAP_ARGS)
    s = run_map(cfg)
    assert s["tiles"] == 360 and s["parts"] == 6 and s["result"] == "ok"
    table = read_map(ref).sort_by("tile_id")
    ids = expected_ids({prefix + p.name: p for p in (NAIP_2015, NAIP_2020)})
    assert set(table["tile_id"].to_pylist()) == ids
    return {"prefix": prefix, "cfg": cfg, "table": table, "ids": ids}


def same_rows(table: pa.Table, ref: pa.Table) -> None:
    """Exactly the reference's rows: ids, statuses, labels, probabilities (to float noise)."""
    t = table.sort_by("tile_id")
    assert t["tile_id"].equals(ref["tile_id"])
    assert t["status"].to_pylist() == ref["status"].to_pylist()
    assert t["label"].to_pylist() == ref["label"].to_pylist()
    ok = np.array(ref["status"].to_pylist()) == "ok"
    a = np.array([p for p, o in zip(t["probs"].to_pylist(), ok) if o])
    b = np.array([p for p, o in zip(ref["probs"].to_pylist(), ok) if o])
    np.testing.assert_allclose(a, b, atol=1e-5)


def cli_args(cfg: MapConfig, out: str, *more: str) -> list[str]:
    args = ["map", "--scenes", *cfg.scenes, "--out", out, "--model", cfg.model]
    for k, v in MAP_ARGS.items():
        args += [f"--{k.replace('_', '-')}", ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return args + list(more)


def driver(ray_session, args: list[str], failpoint: str | None = None, timeout: float = 300):
    """``landcover map`` as its own driver process on the session's cluster."""
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    env.pop("LANDCOVER_FAILPOINT", None)
    if failpoint:
        env["LANDCOVER_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "-m", "raylib.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


# --------------------------------------------------------------------------- bad input


def test_bad_objects_in_a_prefix_become_error_rows(ray_session, bucket, test_model, tmp_path, capsys):
    """Corrupt, truncated, non-raster, wrong-band, wrong-dtype, all-nodata, tiny and
    mixed-CRS scenes under one prefix: the good tiles are predicted, every other tile is an
    error row with its reason, and the run's verdict follows max_error_share."""
    prefix = "s3://data/reliability/mixed/"
    naip = NAIP_2015.read_bytes()
    garbled = bytearray(naip)
    garbled[len(naip) // 2: len(naip) // 2 + 200_000] = bytes(200_000)
    files = {
        "good-naip.tif": naip,
        "landsat-crop.tif": crop(LANDSAT, tmp_path / "l.tif", 200, 200).read_bytes(),  # another CRS
        "tiny.tif": crop(NAIP_2015, tmp_path / "t.tif", 20, 20).read_bytes(),  # smaller than one tile
        "truncated.tif": naip[: int(len(naip) * 0.75)],  # the first of its 4 blocks survives
        "garbled.tif": bytes(garbled),
        "text.tif": b"this is not a GeoTIFF",
        "empty.tif": b"",
        "one-band.tif": crop(LANDSAT_B2, tmp_path / "b.tif", 128, 128).read_bytes(),
        "complex.tif": crop(NAIP_2015, tmp_path / "c.tif", 128, 128, dtype="complex64", nodata=None).read_bytes(),
        "all-fill.tif": crop(NAIP_2015, tmp_path / "z.tif", 128, 128, zeros=True).read_bytes(),
        "notes.txt": b"not a scene: skipped, and counted as skipped",
    }
    local = tmp_path / "objects"
    local.mkdir()
    for name, data in files.items():
        storage.write_bytes(prefix + name, data)
        (local / name).write_bytes(data)
    out = str(tmp_path / "map")
    args = ["map", "--scenes", prefix, "--out", out, "--model", test_model["uri"], "--tile-size", "64",
            "--gsd", "native", "--bands", "1,2,3", "--fill-value", "0", "--read-retries", "1"]
    t0 = time.time()
    rc = main(args)
    seconds = time.time() - t0
    captured = capsys.readouterr()
    table = read_map(out)
    uris = {prefix + n: local / n for n in files if n.endswith(".tif")}
    ids = expected_ids(uris)
    figures = record("corrupt/truncated/non-raster/wrong-band/dtype/all-nodata objects in one prefix", table, ids,
                     seconds=round(seconds, 1))
    by_scene: dict[str, set] = {}
    for sc, st, r in zip(table["scene"].to_pylist(), table["status"].to_pylist(), table["reason"].to_pylist()):
        by_scene.setdefault(sc.rsplit("/", 1)[1], set()).add(r if st == "error" else "ok")
    # (--gsd native, 64 px tiles: the last row of the NAIP grid is 19 px of 64 inside the scene: mostly_outside)
    assert by_scene["good-naip.tif"] == {"ok", "mostly_outside"}
    assert by_scene["landsat-crop.tif"] <= {"ok", "all_nodata", "mostly_fill", "mostly_outside"}
    assert "ok" in by_scene["landsat-crop.tif"]
    assert by_scene["tiny.tif"] == {"mostly_outside"}  # smaller than one tile: its one tile is 90 % padding
    # the first half of the file still maps
    assert {"ok", "corrupt"} <= by_scene["truncated.tif"] <= {"ok", "corrupt", "mostly_outside"}
    assert "corrupt" in by_scene["garbled.tif"] and "ok" in by_scene["garbled.tif"]
    assert by_scene["text.tif"] == by_scene["empty.tif"] == {"corrupt"}
    assert by_scene["one-band.tif"] == {"band_mismatch"}
    assert by_scene["complex.tif"] == {"unsupported"}
    assert by_scene["all-fill.tif"] == {"all_nodata"}
    crs = {c for c in table["scene_crs"].to_pylist() if c}
    assert len(crs) == 2  # NAIP (UTM 14N) and Landsat in one map
    summary = json.loads(Path(out, "_summary.json").read_text())
    assert summary["skipped_objects"] == 1 and summary["skipped_examples"] == [prefix + "notes.txt"]
    assert set(summary["scenes_failed"]) == {prefix + n for n in (
        "text.tif", "empty.tif", "one-band.tif", "complex.tif", "all-fill.tif")}
    # far more than 5 % of the tiles failed: the map is written, the run says failed (exit 3)
    assert rc == 3 and summary["result"] == "failed" and "max_error_share" in summary["failure"]
    assert not Path(out, "_SUCCESS").exists() and "failed:" in captured.err
    assert f"{figures['rows']} tiles" in captured.out
    # the same job with a tolerance that covers it passes, keeping every part already written
    assert main(args + ["--max-error-share", "0.9"]) == 0
    again = json.loads(Path(out, "_summary.json").read_text())
    assert again["parts_resumed"] == again["parts"] and again["tiles_computed"] == 0
    assert again["counts"] == summary["counts"] and Path(out, "_SUCCESS").exists()
    # credentials never reach outputs or messages
    blobs = [captured.out, captured.err] + [p.read_bytes().decode("latin-1") for p in Path(out).rglob("*")
                                            if p.is_file()]
    assert not any(S3_SECRET in b or S3_KEY_ID in b for b in blobs)


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("point", ["planned", "part_written:2", "part_moved:3", "summary_written"])
def test_killed_driver_rerun_gives_the_same_rows(point, ray_session, clean, tmp_path):
    out = str(tmp_path / "map")
    args = cli_args(clean["cfg"], out)
    r = driver(ray_session, args, failpoint=point)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert not Path(out, "_SUCCESS").exists()
    left = sorted(p.name for p in Path(out).rglob("part-*.parquet"))
    r = driver(ray_session, args)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(Path(out, "_summary.json").read_text())
    table = read_map(out)
    record(f"driver SIGKILLed at {point}, then re-run", table, clean["ids"], parts_left_by_killed_run=len(left),
           parts_kept=summary["parts_resumed"], tiles_recomputed=summary["tiles_computed"])
    same_rows(table, clean["table"])
    assert summary["parts_resumed"] == len(left) and summary["tiles_computed"] == 360 - 64 * len(left) + (
        64 * 6 - 360 if "part-00005.parquet" in left else 0)
    assert not list(Path(out).glob("_tmp/*"))
    # a scene's picture is whole, its tiles from the killed run's parts included: the clean run's, byte for byte
    ref = {p.name: p.read_bytes() for p in Path(clean["cfg"].out, "_quicklook").glob("*.png")}
    got = {p.name: p.read_bytes() for p in Path(out, "_quicklook").glob("*.png")}
    assert len(ref) == 2 and all(got[n] == ref[n] for n in got)
    if point == "part_written:2":  # scene 0 half written: drawn by the rerun
        assert len(got) == 2


def test_a_full_disk_stops_the_run_in_one_line_and_the_rerun_completes(ray_session, clean, test_model, tmp_path,
                                                                         monkeypatch, capsys):
    """No space left where the parts are written (the third row group of the run fails with
    ENOSPC, as a full tmpfs made it): one line naming the output, the part and the fix, exit
    4, the complete parts kept; the same command after space is freed maps the rest, every
    tile once."""
    import errno

    import pyarrow.parquet as pq

    from raylib.cli import main

    out = tmp_path / "map"
    args = ["map", "--scenes", clean["prefix"], "--out", str(out), "--model", test_model["uri"], "--tile-size", "64",
            "--gsd", "native", "--bands", "1,2,3", "--fill-value", "0", "--batch-size", "32", "--rows-per-part", "64"]
    write, calls = pq.ParquetWriter.write_table, []

    def full_disk(self, *a, **k):
        calls.append(1)
        if len(calls) >= 3:  # one row group a part here (64 rows): the third part
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, *a, **k)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    assert main(args) == 4
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("map: ")]
    assert len(err) == 1 and "No space left on the device of" in err[0] and "part part-00002.parquet" in err[0]
    assert str(out) in err[0] and "run the same command again" in err[0]
    assert not list((out / "_tmp").glob(".part-*"))  # the part that did not fit: gone with its space
    monkeypatch.undo()
    assert main(args) == 0
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["parts_resumed"] == 2 and summary["tiles_computed"] == 360 - 128
    table = read_map(str(out))
    record("no space left on the output's device, then re-run", table, clean["ids"], exit_code=4,
           parts_kept=summary["parts_resumed"], tiles_recomputed=summary["tiles_computed"])
    same_rows(table, clean["table"])


def test_rerun_of_a_finished_job_is_refused_and_overwrite_recomputes(ray_session, clean, tmp_path):
    out = str(tmp_path / "map")
    s = run_map(clean["cfg"].model_copy(update={"out": out}))
    assert s["parts_written"] == 6
    assert main(cli_args(clean["cfg"], out)) == 2  # a finished map is not clobbered (no duplicate rows)
    s = run_map(clean["cfg"].model_copy(update={"out": out, "overwrite": True}))
    assert s["parts_resumed"] == 0 and s["parts_written"] == 6
    same_rows(read_map(out), clean["table"])


# --------------------------------------------------------------------------- faults


def _find_map_actors() -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"])
            if any("MapWorker" in c for c in (p.info["cmdline"] or [])) and "Predictor" in " ".join(p.info["cmdline"])]


def _wait_for_parts(folder: Path, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while len(list(folder.glob("_tmp/part-*.parquet"))) < n:
        assert time.time() < deadline, "no part was written in time"
        time.sleep(0.05)


@pytest.mark.parametrize("gpus", [0, 1], ids=["cpu-actor", "gpu-actor"])
def test_killed_model_actor_is_replaced(gpus, ray_session, clean, tmp_path):
    """The model actor SIGKILLed mid-run; with ``gpus`` 1 it holds the session's logical GPU
    (Ray Data's GPU stage: batches joined from blocks, 8 calls at once)."""
    out = tmp_path / "map"
    cfg = clean["cfg"].model_copy(update={"out": str(out), "batch_size": 8, "num_gpus": gpus,
                                          "block_tiles": 32 if gpus else None})
    res = {}
    th = threading.Thread(target=lambda: res.update(s=run_map(cfg)))
    th.start()
    _wait_for_parts(out, 1)
    victims = _find_map_actors()
    assert victims, "no model actor process found"
    for p in victims:
        p.kill()
    th.join(300)
    s = res["s"]
    table = read_map(str(out))
    record(f"model actor ({'GPU' if gpus else 'CPU'}) SIGKILLed mid-run", table, clean["ids"],
           actors_killed=len(victims),
           parts_before_kill=1, seconds=s["seconds"])
    same_rows(table, clean["table"])
    assert s["parts_written"] == 6 and s["result"] == "ok"


def test_s3_server_restarted_mid_run(ray_session, s3_server, clean, tmp_path):
    """S3 (scenes and the map) goes away mid-run and comes back: reads and writes retry
    with backoff; the map equals the reference."""
    server = s3_server["server"]
    out = "s3://maps/reliability-restart"
    cfg = clean["cfg"].model_copy(update={"out": out, "batch_size": 8})
    res = {}
    th = threading.Thread(target=lambda: res.update(s=run_map(cfg)))
    th.start()
    deadline = time.time() + 120
    while not storage.exists(out + "/_landcover.json"):  # planned: the reads are about to start
        assert time.time() < deadline
        time.sleep(0.05)
    server.stop()
    down = time.time()
    time.sleep(3)
    server.start()
    downtime = time.time() - down
    th.join(300)
    s = res["s"]
    table = read_map(out)
    record("S3 server killed and restarted mid-run", table, clean["ids"], downtime_s=round(downtime, 1),
           read_retries=s["read_retries"], seconds=s["seconds"])
    same_rows(table, clean["table"])
    assert s["counts"] == clean_counts(clean) and s["result"] == "ok"
    assert s["read_retries"] > 0  # the outage was met, and ridden out


def clean_counts(clean) -> dict:
    st = clean["table"]["status"].to_pylist()
    return {k: st.count(k) for k in sorted(set(st))}


def test_stalled_store_and_a_read_that_hangs(ray_session, s3_server, clean, tmp_path):
    """The object store stops answering for a while (SIGSTOP), and one scene never answers
    (a FIFO: its open blocks for ever). Reads time out and retry; the stalled reads succeed
    when the store answers again; the stuck scene becomes one timeout row; the run ends."""
    server = s3_server["server"]
    fifo = tmp_path / "stuck.tif"
    os.mkfifo(fifo)
    out = tmp_path / "map"
    cfg = clean["cfg"].model_copy(update={"out": str(out), "scenes": [clean["prefix"], str(fifo)],
                                          "read_timeout": 2.0, "read_retries": 2, "batch_size": 8})
    res = {}
    t0 = time.time()
    th = threading.Thread(target=lambda: res.update(s=run_map(cfg)))
    th.start()
    try:
        deadline = time.time() + 120
        while not (out / "_landcover.json").exists():  # planned: the reads are about to start
            assert time.time() < deadline
            time.sleep(0.05)
        server.signal(signal.SIGSTOP)
        time.sleep(4)
        server.signal(signal.SIGCONT)
        th.join(300)
    finally:
        server.signal(signal.SIGCONT)
        try:  # release the abandoned reader blocked in open()
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    s = res["s"]
    table = read_map(str(out))
    stuck = row_codec.unreadable_scene_row(str(fifo), GRID)["tile_id"].to_pylist()
    record("S3 stalled 4 s (SIGSTOP) + one scene whose read hangs for ever", table, clean["ids"] | set(stuck),
           read_timeout_s=2, read_retries=s["read_retries"], seconds=round(time.time() - t0, 1))
    rows = {t: (st, r) for t, st, r in zip(table["tile_id"].to_pylist(), table["status"].to_pylist(),
                                           table["reason"].to_pylist())}
    assert rows[stuck[0]] == ("error", "timeout")
    assert s["scenes_failed"] == {str(fifo): "timeout"}
    assert s["read_retries"] > 0  # reads timed out while the store was stopped, then succeeded
    same_rows(table.filter(pa.compute.not_equal(table["scene"], str(fifo))), clean["table"])

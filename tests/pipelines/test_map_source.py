"""pipelines.map.source without Ray: the plan task's read units (lazily cut, minus the tiles
an earlier run wrote) and the read task's rows, on rasters written to disk."""

import json

import numpy as np
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from raylib.config import MapConfig
from raylib.models.manifest import ModelManifest
from raylib.pipelines.common import planning, sizing
from raylib.pipelines.map import source
from raylib.raster import read_block
from raylib.raster.reading import rows_out

MAN = ModelManifest(id="m@0", kind="head", backbone={}, head={}, classes=["a", "b"], tile_size=16, gsd=10.0,
                    bands={"channels": ["red", "green", "blue"], "mean": [0.3] * 3, "std": [0.1] * 3},
                    metrics={}, created_by="")


class _Ref:
    """Stands in for an object-store reference (``object_store.shared`` fetches it once)."""

    def __init__(self, value):
        self.value = value

    def hex(self):
        return str(id(self))


def _raster(path, count=3) -> str:
    with MemoryFile() as mf:
        ds = mf.open(driver="GTiff", width=64, height=48, count=count, dtype="uint16", crs="EPSG:32618", nodata=0,
                     transform=from_origin(500000, 4400000, 10.0, 10.0))
        ds.write(np.random.default_rng(0).integers(100, 3000, (count, 48, 64)).astype("uint16"))
        ds.close()
        path.write_bytes(mf.read())
    return str(path)


def test_unit_ranges_cover_the_scene_minus_what_is_done():
    assert source.unit_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert source.unit_ranges(10, 4, done=[[0, 3], [5, 6]]) == [(3, 5), (6, 10)]
    assert source.unit_ranges(10, 4, done=[[0, 10]]) == []
    got = np.zeros(37, int)
    for lo, hi in source.unit_ranges(37, 5, done=[[4, 9], [20, 21]]):
        assert hi - lo <= 5
        got[lo:hi] += 1
    want = np.ones(37, int)
    want[4:9] = want[20] = 0
    assert (got == want).all()  # every tile not done exactly once


def test_plan_task_emits_units_and_failures_with_the_scene_record(tmp_path, monkeypatch):
    good, bad = _raster(tmp_path / "good.tif"), _raster(tmp_path / "few.tif", count=2)
    uris = [good, bad]
    monkeypatch.setattr(source, "shared", lambda ref: ref.value if ref is not None else None)
    cfg = MapConfig(scenes=uris, out=str(tmp_path / "out"), read_batch_size=4, read_units_per_task=1,
                    bands=[1, 2, 3])
    grid = planning.resolve_grid(cfg, MAN)
    import pyarrow as pa

    done = {good: {"ranges": [[0, 2]], "tiles": 12}}
    tasks = source.plan_units({"id": np.array([0, 1])}, uris_ref=_Ref(pa.array(uris)), done_ref=_Ref(done), cfg=cfg,
                              manifest=MAN, grid=grid)
    packed = [list(zip(t, lo, hi, sp != "")) for t, lo, hi, sp in zip(tasks["scene_idx"], tasks["lo"], tasks["hi"],
                                                                     tasks["spec"])]
    # scene 0: 12 tiles, 0..2 done; tasks of up to 4 tiles, where a failure record (scene 1: band_mismatch,
    # standing for 4 tiles) counts as one row
    assert packed == [[(0, 2, 6, True)], [(0, 6, 10, True)], [(0, 10, 12, True), (1, 0, 4, False), (1, 4, 8, False)],
                      [(1, 8, 12, False)]]
    units = {k: np.concatenate([np.asarray(v) for v in tasks[k]]) for k in tasks}
    metas = [json.loads(m) for m in units["meta"]]
    assert metas[0]["uri"] == good and metas[0]["tiles"] == 12 and metas[0]["failure"] is None
    assert metas[-1]["failure"][0] == "band_mismatch" and metas[-1]["index"] == 1

    one = {k: np.array([v[:1]], object) for k, v in units.items()}  # a read task of one unit
    out = source.read_units(one, grid=grid, channels=3, read_timeout=10, read_retries=0)
    n = int(units["hi"][0] - units["lo"][0])
    assert len(out["idx"]) == n and list(out["idx"]) == list(range(int(units["lo"][0]), int(units["hi"][0])))
    assert out["pixels"].shape == (n, 3, 16, 16) and (out["status"] == "ok").all() and (out["span"] == 0).all()
    assert out["meta"][0] == units["meta"][0] and (out["meta"][1:] == "").all()
    assert set(out["uri"]) == {good} and len(set(out["tile_id"])) == n and np.isfinite(out["bbox_xmin"]).all()
    fail = source.read_units({k: np.array([v[-1:]], object) for k, v in units.items()}, grid=grid, channels=3,
                             read_timeout=10, read_retries=0)
    assert len(fail["idx"]) == 1 and fail["idx"][0] == 8 and fail["span"][0] == 4 and fail["status"][0] == "error"
    assert fail["error"][0].startswith("band_mismatch: ")
    # both kinds of row carry exactly the columns raster.read_block names, in one type each
    assert sorted(out) == sorted(fail) == sorted(read_block.FROM_READ)
    assert all(np.asarray(out[k]).dtype == np.asarray(fail[k]).dtype for k in out)
    assert sorted(rows_out(out, np.zeros((n, 2), np.float32))) == sorted(
        c for c in read_block.FROM_MODEL if c not in (read_block.OOD, read_block.EMBEDDING))


def test_the_first_read_task_is_the_first_tiles_of_scene_0_alone(tmp_path, monkeypatch):
    good, bad = _raster(tmp_path / "good.tif"), _raster(tmp_path / "few.tif", count=2)
    uris = [good, bad]
    monkeypatch.setattr(source, "shared", lambda ref: ref.value if ref is not None else None)
    cfg = MapConfig(scenes=uris, out=str(tmp_path / "out"), read_batch_size=4, read_units_per_task=2, bands=[1, 2, 3])
    grid = planning.resolve_grid(cfg, MAN)
    import pyarrow as pa

    blocks = source.first_blocks(2, 8, 3, ramp=4)
    assert [{k: v.tolist() for k, v in b.items()} for b in blocks] == [
        {"id": [0], "lo": [0], "hi": [3]}, {"id": [0], "lo": [3], "hi": [7]}, {"id": [0, 1], "lo": [7, 0], "hi": [-1, -1]}]

    def units(uris, block, done=None):
        t = source.plan_units(block, uris_ref=_Ref(pa.array(uris)),
                              done_ref=_Ref(done or {}), cfg=cfg, manifest=MAN, grid=grid)
        return [[(s, lo, hi) for s, lo, hi in zip(*u)] for u in zip(t["scene_idx"], t["lo"], t["hi"])]

    assert units(uris, blocks[0]) == [[(0, 0, 3)]]
    assert units(uris, blocks[1]) == [[(0, 3, 7)]]  # the first read unit: a read task of its own
    # the rest of scene 0 (12 tiles), then scene 1's failure records: every tile once
    assert units(uris, blocks[2]) == [[(0, 7, 12), (1, 0, 8), (1, 8, 12)]]  # a failure record is one row
    assert units(uris, blocks[2], {good: {"ranges": [[5, 12]], "tiles": 12}}) == [[(1, 0, 8), (1, 8, 12)]]
    assert units(uris, blocks[1], {good: {"ranges": [[5, 12]], "tiles": 12}}) == [[(0, 3, 5)]]
    # a scene 0 that cannot be mapped has all its records in its last block, none in the first two
    assert units(uris[::-1], blocks[0]) == [] and units(uris[::-1], blocks[1]) == []
    assert sum(hi - lo for u in units(uris[::-1], blocks[2]) for s, lo, hi in u if s == 0) == 12
    assert source.first_blocks(0, 8, 3) == []
    # the driver maps scene 0's head itself: no block of its own, scene 0 without it
    assert [{k: v.tolist() for k, v in b.items()} for b in source.first_blocks(2, 8, 3, on_driver=True, ramp=4)] == \
        [{"id": [0], "lo": [3], "hi": [7]}, {"id": [0, 1], "lo": [7, 0], "hi": [-1, -1]}]
    # no head, no ramp: every scene whole
    assert [{k: v.tolist() for k, v in b.items()} for b in source.first_blocks(3, 2, 0)] == \
        [{"id": [0, 1], "lo": [0, 0], "hi": [-1, -1]}, {"id": [2], "lo": [0], "hi": [-1]}]


def test_few_scenes_are_spread_over_read_tasks_with_every_tile_once(tmp_path, monkeypatch):
    """Fewer scenes than read slots: each scene's tiles in even spans of at least a read
    unit, each span a read task; with the first blocks, a resumed part and a scene that
    cannot be mapped, every tile still comes once."""
    assert source.scene_spans(0, 12, 3, 4) == [(0, 4), (4, 8), (8, 12)]
    assert source.scene_spans(7, 12, 8, 2) == [(7, 9), (9, 12)]  # at least a unit each
    assert source.scene_spans(0, 3, 4, 4) == [(0, 3)]
    good, other, bad = (_raster(tmp_path / "good.tif"), _raster(tmp_path / "other.tif"),
                        _raster(tmp_path / "few.tif", count=2))
    uris = [good, other, bad]
    monkeypatch.setattr(source, "shared", lambda ref: ref.value if ref is not None else None)
    cfg = MapConfig(scenes=uris, out=str(tmp_path / "out"), read_batch_size=2, read_units_per_task=2, bands=[1, 2, 3])
    grid = planning.resolve_grid(cfg, MAN)
    import pyarrow as pa

    spread = {0: source.scene_spans(3 + 2, 12, 3, 2), 1: source.scene_spans(0, 12, 2, 2)}
    blocks = source.first_blocks(3, 1, 3, ramp=2, spread=spread)
    assert [{k: v.tolist() for k, v in b.items()} for b in blocks] == [
        {"id": [0], "lo": [0], "hi": [3]}, {"id": [0], "lo": [3], "hi": [5]},
        {"id": [0], "lo": [5], "hi": [7]}, {"id": [0], "lo": [7], "hi": [9]}, {"id": [0], "lo": [9], "hi": [-1]},
        {"id": [1], "lo": [0], "hi": [6]}, {"id": [1], "lo": [6], "hi": [-1]},
        {"id": [2], "lo": [0], "hi": [-1]}]
    for done in ({}, {other: {"ranges": [[4, 8]], "tiles": 12}}):
        seen = {0: [], 1: [], 2: []}
        for block in blocks:
            t = source.plan_units(block, uris_ref=_Ref(pa.array(uris)), done_ref=_Ref(done), cfg=cfg, manifest=MAN,
                                  grid=grid)
            for units in zip(t["scene_idx"], t["lo"], t["hi"]):
                for sc, lo, hi in zip(*units):
                    seen[int(sc)] += list(range(int(lo), int(hi)))
        assert sorted(seen[0]) == list(range(12))
        assert sorted(seen[1]) == [k for k in range(12) if not 4 <= k < 8 or not done]
        assert sorted(seen[2]) == list(range(12))  # its failure records, once, from its one block


def test_blocks_are_a_read_unit_on_cpu_and_a_read_task_on_gpu(tmp_path):
    cfg = MapConfig(scenes=["a.tif"], out=str(tmp_path))
    assert sizing.block_tiles(cfg) == 256
    assert sizing.block_tiles(cfg.model_copy(update={"num_gpus": 1.0})) == 1024
    assert sizing.block_tiles(cfg.model_copy(update={"block_tiles": 100})) == 100
    assert sizing.block_bytes(cfg, 3, 64) == int(1.1 * 256 * 3 * 64 * 64 * 4)
    assert sizing.block_bytes(cfg, 3, 64, "uint16") == int(1.1 * 256 * 3 * 64 * 64 * 2)  # the job's transfer type
    gpu = cfg.model_copy(update={"num_gpus": 1.0})
    assert sizing.model_batch(cfg.batch_size, cfg.num_gpus) == 64 and sizing.model_batch(None, 1.0) == 1024
    assert sizing.first_tiles(cfg) == 64 and sizing.first_tiles(gpu) == 64
    assert sizing.first_tiles(cfg.model_copy(update={"batch_size": 5})) == 5
    assert sizing.read_slots(cfg, 16, 1) == 30 and sizing.read_slots(cfg, 2, 1) == 2 and sizing.read_slots(cfg, 1, 1) == 1


def test_gpu_actors_take_several_blocks_at_once_and_cpu_actors_one(tmp_path):
    cfg = MapConfig(scenes=["a.tif"], out=str(tmp_path))
    assert sizing.actor_concurrency(cfg) == 1
    assert sizing.actor_concurrency(cfg.model_copy(update={"num_gpus": 0.5})) == 8
    assert sizing.actor_concurrency(cfg.model_copy(update={"actor_concurrency": 3})) == 3


class _EchoModel:
    """Stands in for the model actor class: the block's tile numbers as 'probabilities'."""

    def __init__(self, model_ref, torch_threads=None, actors=1, tta=None, batch_size=64, embeddings=False, **kw):
        self.model_ref = model_ref

    def __call__(self, batch):
        return {**batch, "probs": np.stack([batch["idx"], batch["idx"]], 1).astype(np.float32)}


class _NoModel(_EchoModel):
    def __init__(self, *a, **k):
        raise RuntimeError("no model here")


def _taken(head, timeout=120):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = head.take()
        if rows is not None or head.error is not None:
            return rows
        time.sleep(0.05)
    raise AssertionError("the child process sent nothing")


def test_a_child_of_the_driver_maps_scene_0s_first_tiles_with_the_read_and_model_code(tmp_path):
    from raylib.pipelines.map.driver_head import DriverHead

    uri = _raster(tmp_path / "s.tif")
    cfg = MapConfig(scenes=[uri], out=str(tmp_path / "out"), bands=[1, 2, 3], batch_size=5)
    grid = planning.resolve_grid(cfg, MAN)
    head = DriverHead(uri, cfg, MAN, grid, 3, _EchoModel, "m", False)
    rows = _taken(head)
    assert head.tiles == 5
    assert rows["idx"].tolist() == [0, 1, 2, 3, 4] and rows["pixels"].shape == (5, 3, 16, 16)
    assert json.loads(rows["meta"][0])["uri"] == uri and (rows["status"] == "ok").all()
    assert head.taken and head.take() is None and not head.proc.is_alive()  # once; the child is done
    # a model that cannot load: no rows, the error kept (the pipeline maps the tiles)
    bad = DriverHead(uri, cfg, MAN, grid, 3, _NoModel, "m", False)
    assert _taken(bad) is None and "no model here" in bad.error and not bad.taken
    # stopped before it is back: nothing, ever
    late = DriverHead(uri, cfg, MAN, grid, 3, _EchoModel, "m", False)
    late.stop()
    assert late.take() is None and not late.proc.is_alive()


def test_the_child_is_forked_while_the_driver_runs_no_other_thread(tmp_path):
    """In a fresh process (a user's command before Ray starts) the child is forked, and maps
    the same rows; with another thread running it is spawned."""
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import json, threading, time
from tests.pipelines.test_map_source import MAN, MapConfig, _EchoModel, _raster, _taken, planning
from raylib.pipelines.map import driver_head
uri = _raster(__import__("pathlib").Path({str(tmp_path)!r}) / "s.tif")
cfg = MapConfig(scenes=[uri], out={str(tmp_path / 'out')!r}, bands=[1, 2, 3], batch_size=5)
first = driver_head.start_method()
head = driver_head.DriverHead(uri, cfg, MAN, planning.resolve_grid(cfg, MAN), 3, _EchoModel, "m", False)
rows = _taken(head)
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
print(json.dumps([first, driver_head.start_method(), head.tiles, rows["idx"].tolist()]))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["fork", "spawn", 5, [0, 1, 2, 3, 4]]

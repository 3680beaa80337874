"""pipelines.map.row_codec without Ray: a map block's tile-table columns written on a read
worker and read back on the driver give the scene's tile table, value for value."""

import json

import numpy as np
import pyarrow as pa
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from raylib.pipelines.map import row_codec
from raylib.pipelines.map.source import scene_meta
from raylib.raster import scenes, tiling
from raylib.raster.reading import empty_rows

GRID = tiling.GridSpec(16, 16, None)
ITEM = {"datetime": 1589760000, "item_id": "LC08_X", "collection": "landsat-c2-l2"}


def _meta(tmp_path, failure=None, header=True):
    path = tmp_path / "s.tif"
    with MemoryFile() as mf:
        ds = mf.open(driver="GTiff", width=40, height=35, count=3, dtype="uint16", crs="EPSG:32618",
                     transform=from_origin(500000, 4400000, 10.0, 10.0))
        ds.write(np.ones((3, 35, 40), "uint16"))
        ds.close()
        path.write_bytes(mf.read())
    info = scenes.open_scene(str(path))
    return {"uri": str(path), "info": dict(info.__dict__) if header else None, "failure": failure,
            "item": ITEM}, info


def _concat(a: dict, b: dict) -> dict:
    return {k: np.concatenate([np.asarray(a[k]), np.asarray(b[k])]) for k in a}


def test_tile_rows_round_trip_to_the_scenes_tile_table(tmp_path):
    meta, info = _meta(tmp_path)
    meta = json.loads(json.dumps(meta))  # as it travels: JSON on the unit's first row
    want = tiling.tile_table(info, GRID)  # 3 x 3 tiles, edges cut
    # two units of one scene, as two read tasks write them, in one block on the driver
    block = _concat(row_codec.encode_tiles(meta, GRID, 0, 4), row_codec.encode_tiles(meta, GRID, 4, 9))
    assert (block["span"] == 0).all()
    got = row_codec.decode_tiles(block)
    assert got.num_rows == want.num_rows == 9
    assert got.select(want.column_names).equals(want)  # every column, value for value, in the map's types
    assert got.column("datetime").to_pylist()[0].timestamp() == ITEM["datetime"]
    assert set(got.column("item_id").to_pylist()) == {"LC08_X"}


def test_a_scene_without_an_item_gets_nulls_not_empty_strings(tmp_path):
    meta, _ = _meta(tmp_path)
    meta["item"] = None
    got = row_codec.decode_tiles(row_codec.encode_tiles(meta, GRID, 2, 5))
    assert got.column("datetime").null_count == got.column("item_id").null_count == 3
    assert got.column("collection").to_pylist() == [None] * 3


def test_a_failure_row_stands_for_its_span_and_joins_tile_rows(tmp_path):
    meta, info = _meta(tmp_path, failure=["config", "2 bands, 3 asked"])
    row = row_codec.encode_failure(meta, GRID, channels=3, lo=3, hi=9)
    assert row["span"].tolist() == [6] and row["idx"].tolist() == [3]
    assert row["error"].tolist() == ["config: 2 bands, 3 asked"]
    read = empty_rows(3, 3, GRID.tile_size, pixel_type="float32")  # a read task's rows of a good scene
    read.update(row_codec.encode_tiles({**meta, "failure": None}, GRID, 0, 3))
    assert set(read) == set(row)
    block = _concat(read, row)  # both kinds concatenate, every column in one type
    assert all(block[k].dtype == np.asarray(read[k]).dtype for k in read)
    assert block["span"].tolist() == [0, 0, 0, 6]
    got = row_codec.decode_failure(meta, GRID, 3, 6)
    assert got.select(tiling.tile_table(info, GRID).column_names).equals(tiling.tile_table(info, GRID, 3, 9))
    assert got.column("item_id").to_pylist() == ["LC08_X"] * 6


def test_an_unreadable_header_is_one_row_with_no_window(tmp_path):
    meta, _ = _meta(tmp_path, failure=["unreadable", "not a TIFF"], header=False)
    got = row_codec.decode_failure(meta, GRID, 0, 1)
    assert got.num_rows == 1
    r = got.to_pylist()[0]
    assert (r["grid_row"], r["grid_col"], r["geometry"], r["bbox"]) == (-1, -1, None, None)
    assert r["tile_id"] == tiling.tile_id(meta["uri"], -1, -1, 0, 0, GRID)
    assert got.schema.field("bbox").type == row_codec.BBOX_TYPE
    assert pa.types.is_timestamp(got.schema.field("datetime").type)


def test_scene_meta_is_what_the_codec_reads(tmp_path):
    """The record a read task carries (``source.scene_meta``) holds what the codec needs."""
    from raylib.pipelines.common.planning import ScenePlan

    meta = scene_meta(ScenePlan("s3://b/x.tif", failure=("config", "bad")))
    got = row_codec.decode_failure(json.loads(json.dumps(meta)), GRID, 0, 1)
    assert got.column("scene").to_pylist() == ["s3://b/x.tif"]

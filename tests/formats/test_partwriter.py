"""formats.partwriter: parts cut by bytes or rows, row groups sorted along a Z-order curve
with bbox statistics, and the contents record a resumed run reads."""

import json

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from raylib.formats import mapfile, partwriter
from raylib.raster import scenes, tiling

CLASSES = ["forest", "water"]


def _rows(uri: str, x0: float, lo: int, hi: int, width=160, height=160):
    """Map rows of tiles lo..hi of a 10x10-tile scene at easting x0."""
    with MemoryFile() as mf:
        ds = mf.open(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs="EPSG:32618",
                     transform=from_origin(x0, 4400000, 10, 10))
        ds.write(np.full((3, height, width), 100, np.uint8))
        ds.close()
        info = scenes.open_scene(mf.name)
    info = scenes.SceneInfo(**{**info.__dict__, "uri": uri})
    man = tiling.tile_table(info, tiling.GridSpec(16, 16, None), lo, hi)
    n = man.num_rows
    probs = np.tile(np.array([[0.8, 0.2]], np.float32), (n, 1))
    status = np.array(["ok"] * n, object)
    status[::7] = "error"
    error = np.where(status == "ok", "", "corrupt: a damaged block").astype(object)
    return mapfile.build_table(man, probs, status, error, np.zeros(n, np.float32), CLASSES, "m@1")


def _writer(tmp_path, parts, **kw):
    sink = partwriter.Sink(str(tmp_path), str(tmp_path / "_tmp"), {"landcover": {"classes": CLASSES}})
    records = {"s3://b/a.tif": {"fingerprint": "fa", "tiles": 100, "failed": None, "message": None},
               "s3://b/b.tif": {"fingerprint": "fb", "tiles": 100, "failed": None, "message": None}}
    return partwriter.PartWriter([sink], first_index=0, scene_record=records.__getitem__,
                                 on_part=lambda name, c: parts.append((name, c)), **kw)


def test_parts_cut_by_rows_hold_every_row_once_with_their_contents(tmp_path):
    parts = []
    w = _writer(tmp_path, parts, part_bytes=2**30, rows_cap=64, row_group_rows=32)
    # two scenes' rows, interleaved and out of order, as the pipeline returns them
    for uri, x0, lo, hi in [("s3://b/a.tif", 500000, 50, 100), ("s3://b/b.tif", 600000, 0, 100),
                            ("s3://b/a.tif", 500000, 0, 50)]:
        w.add([_rows(uri, x0, lo, hi)], np.arange(lo, hi))
    w.close()
    assert [n for n, _ in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet",
                                     "part-00003.parquet"]
    assert [c["rows"] for _, c in parts] == [64, 64, 64, 8]
    done = partwriter.done_scenes([c for _, c in parts])
    for uri in done:  # every tile of both scenes, once
        cover = np.zeros(100, int)
        for lo, hi in done[uri]["ranges"]:
            cover[lo:hi] += 1
        assert (cover == 1).all(), uri
        assert done[uri]["fingerprint"] in ("fa", "fb") and sum(done[uri]["counts"].values()) == 100
    assert sum(c["counts"].get("error", 0) for _, c in parts) == 8 + 15 + 8  # every 7th row of each batch
    table = pads.dataset(str(tmp_path / "_tmp"), format="parquet").to_table()
    assert table.num_rows == 200 and len(set(table["tile_id"].to_pylist())) == 200
    # what a resumed run reads, and what GeoParquet readers read
    uri = str(tmp_path / "_tmp" / "part-00001.parquet")
    assert partwriter.read_contents(uri) == parts[1][1]
    geo = json.loads(pq.read_schema(uri).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert json.loads(pq.read_schema(uri).metadata[b"landcover"])["classes"] == CLASSES


def test_row_groups_are_spatially_compact_and_skipped_by_a_bbox_filter(tmp_path):
    parts = []
    w = _writer(tmp_path, parts, part_bytes=2**30, rows_cap=None, row_group_rows=50)
    # scene a's and scene b's rows (1 degree apart) arrive interleaved in small batches
    for k in range(0, 100, 10):
        w.add([_rows("s3://b/a.tif", 500000, k, k + 10)], np.arange(k, k + 10))
        w.add([_rows("s3://b/b.tif", 600000, k, k + 10)], np.arange(k, k + 10))
    w.close()
    assert len(parts) == 1
    md = pq.read_metadata(str(tmp_path / "_tmp" / "part-00000.parquet"))
    assert md.num_row_groups == 4
    names = [md.schema.column(i).path for i in range(md.num_columns)]
    xmin, xmax = names.index("bbox.xmin"), names.index("bbox.xmax")
    spans = [md.row_group(g).column(xmax).statistics.max - md.row_group(g).column(xmin).statistics.min
             for g in range(md.num_row_groups)]
    assert max(spans) < 0.1  # each row group lies within one scene (the scenes are ~1 degree apart)
    # a query for scene a's area reads half of the row groups
    import pyarrow.compute as pc

    ds = pads.dataset(str(tmp_path / "_tmp"), format="parquet")
    a = _rows("s3://b/a.tif", 500000, 0, 100)["bbox"].combine_chunks()
    x0, x1 = pc.min(a.field("xmin")).as_py(), pc.max(a.field("xmax")).as_py()
    flt = (pc.field("bbox", "xmin") <= x1) & (pc.field("bbox", "xmax") >= x0)
    frags = [f for f in ds.get_fragments()]
    groups = [rg for f in frags for rg in f.split_by_row_group(flt)]
    assert len(groups) == 2 and ds.to_table(filter=flt).num_rows == 100


def test_parts_cut_by_bytes(tmp_path):
    parts = []
    w = _writer(tmp_path, parts, part_bytes=12_000, rows_cap=None, row_group_rows=4)
    w.add([_rows("s3://b/a.tif", 500000, 0, 100)], np.arange(100))
    w.add([_rows("s3://b/b.tif", 600000, 0, 100)], np.arange(100))
    w.close()
    sizes = [(tmp_path / "_tmp" / n).stat().st_size for n, _ in parts]
    assert len(parts) > 2 and sum(c["rows"] for _, c in parts) == 200
    assert all(s >= 12_000 for s in sizes[:-1])  # closed at the first row group past the target


def test_parts_left_growing_by_a_killed_run_are_removed(tmp_path):
    stage = tmp_path / "embeddings"
    stage.mkdir()
    (stage / ".part-abc123.parquet").write_bytes(b"half a part")
    (stage / "part-00000.parquet").write_bytes(b"a complete part")
    (stage / ".hidden-other").write_bytes(b"not ours")
    assert partwriter.remove_growing(str(stage)) == [".part-abc123.parquet"]
    assert sorted(p.name for p in stage.iterdir()) == [".hidden-other", "part-00000.parquet"]
    assert partwriter.remove_growing(str(tmp_path / "missing")) == []

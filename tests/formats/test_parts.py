"""formats.parts: chunks of a run, the buffer of a chunk in flight, which parts exist, commit."""

import numpy as np
import pytest

from raylib.formats import parts


def test_chunks_cover_the_run_in_order():
    c = parts.global_chunks(10, 4)
    assert [(x.name, x.lo, x.hi) for x in c] == [("part-00000.parquet", 0, 4), ("part-00001.parquet", 4, 8),
                                                  ("part-00002.parquet", 8, 10)]
    s = parts.scene_chunks("part-abc", 100, 5, 2)
    assert [(x.name, x.lo, x.hi, x.size) for x in s] == [("part-abc-00000.parquet", 100, 102, 2),
                                                        ("part-abc-00001.parquet", 102, 104, 2),
                                                        ("part-abc-00002.parquet", 104, 105, 1)]
    assert parts.digest({"a": 1, "b": [2]}) == parts.digest({"b": [2], "a": 1}) != parts.digest({"a": 2})


def test_buffer_takes_rows_in_any_order_once():
    buf = parts.Buffer(parts.Chunk("part-00001.parquet", 10, 14), n_classes=2)
    assert not buf.complete and (buf.status == "error").all()
    buf.put(np.array([13, 11]), probs=np.array([[0.1, 0.9], [0.8, 0.2]], np.float32),
            status=np.array(["ok", "ok"], object), embedding=np.zeros((2, 0), np.float16))
    buf.put(np.array([10, 12]), status=np.array(["error", "ok"], object), error=np.array(["timeout: x", ""], object),
            embedding=np.ones((2, 3), np.float16))
    assert buf.complete and buf.status.tolist() == ["error", "ok", "ok", "ok"]
    np.testing.assert_array_equal(buf.probs[3], np.array([0.1, 0.9], np.float32))
    assert np.isnan(buf.probs[0]).all() and buf.error[0] == "timeout: x"
    assert buf.embedding.shape == (4, 3) and buf.embedding[0].tolist() == [1, 1, 1]
    with pytest.raises(RuntimeError, match="came back twice"):
        buf.put(np.array([12]), status=np.array(["ok"], object))


def test_existing_debris_and_commit(tmp_path):
    out = tmp_path / "map"
    (out / parts.TMP).mkdir(parents=True)
    (out / "part-00000.parquet").write_bytes(b"a")
    (out / parts.TMP / "part-00001.parquet").write_bytes(b"b")
    (out / parts.TMP / "part-00002.parquet.tmp123").write_bytes(b"half")
    (out / "_summary.json").write_text("{}")
    found = parts.existing(str(out))
    assert sorted(found) == ["part-00000.parquet", "part-00001.parquet"]
    gone = parts.remove_tmp_debris(str(out), keep={"part-00001.parquet"})
    assert [p.split("/")[-1] for p in gone] == ["part-00002.parquet.tmp123"]
    moved = []
    parts.commit(str(out), ["part-00000.parquet", "part-00001.parquet"], after_each=moved.append)
    assert moved == ["part-00000.parquet", "part-00001.parquet"]
    assert (out / "part-00001.parquet").read_bytes() == b"b" and not (out / parts.TMP / "part-00001.parquet").exists()

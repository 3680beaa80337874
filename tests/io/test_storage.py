import os
import socket

import pytest
import rasterio

from raylib.errors import InputError, StorageError
from raylib.io import storage

from ..conftest import NAIP, S3_SECRET


def test_parse():
    loc = storage.parse("s3://bucket/a/b.tif")
    assert (loc.scheme, loc.bucket, loc.key, loc.gdal_path) == ("s3", "bucket", "a/b.tif", "/vsis3/bucket/a/b.tif")
    assert storage.parse("rel/x.tif").key == os.path.abspath("rel/x.tif")
    assert storage.parse("file:///tmp/x.tif").key == "/tmp/x.tif"
    assert storage.join("s3://b/p/", "x", "y.png") == "s3://b/p/x/y.png"
    with pytest.raises(InputError, match="Unsupported storage scheme"):
        storage.parse("gs://bucket/x.tif")
    with pytest.raises(InputError, match="no bucket"):
        storage.parse("s3:///x.tif")


def test_local_round_trip_is_atomic(tmp_path):
    uri = str(tmp_path / "d" / "f.bin")
    storage.write_bytes(uri, b"abc" * 1000)
    assert storage.read_bytes(uri) == b"abc" * 1000
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["f.bin"]  # no temp files left
    storage.move(uri, str(tmp_path / "e" / "g.bin"))
    assert not storage.exists(uri) and storage.read_bytes(str(tmp_path / "e" / "g.bin")) == b"abc" * 1000


def test_files_by_name_whatever_the_folder_is_written_as(tmp_path, monkeypatch):
    """A folder given relative (as the README's walk-throughs do), with '~', 'file://' or a
    trailing slash names its files alike (listings are absolute: a name cut from one by the
    length of the relative path lost every part of a store)."""
    from raylib.formats import embstore, parts

    (tmp_path / "m" / "_embeddings" / "_stac").mkdir(parents=True)
    (tmp_path / "m" / "_tmp").mkdir()
    for rel in ("part-00000.parquet", "_embeddings/part-00000.parquet", "_embeddings/_stac/x.parquet",
                "_tmp/part-00001.parquet"):
        (tmp_path / "m" / rel).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    want = {"_embeddings/_stac/x.parquet", "_embeddings/part-00000.parquet", "_tmp/part-00001.parquet",
            "part-00000.parquet"}
    for form in ("m", "m/", "./m", "~/m", f"file://{tmp_path}/m", str(tmp_path / "m")):
        names = storage.files_by_name(form)
        assert set(names) == want, form
        assert all(os.path.isfile(u) for u in names.values())
        assert embstore.part_files(form + ("/" if not form.endswith("/") else "") + "_embeddings") == [
            str(tmp_path / "m" / "_embeddings" / "part-00000.parquet")], form
        assert set(parts.existing(form)) == {"part-00000.parquet", "part-00001.parquet"}, form
    assert storage.files_by_name("nowhere") == {}


def test_s3_round_trip_list_move_delete(bucket):
    data = bytes(range(256)) * 100
    storage.write_bytes("s3://maps/t/a.bin", data)
    storage.write_bytes("s3://maps/t/sub/b.tif", b"x")
    assert storage.read_bytes("s3://maps/t/a.bin") == data  # byte-exact
    assert storage.list_files("s3://maps/t/") == ["s3://maps/t/a.bin", "s3://maps/t/sub/b.tif"]
    assert storage.list_files("s3://maps/t", (".tif",)) == ["s3://maps/t/sub/b.tif"]
    storage.move("s3://maps/t/a.bin", "s3://maps/t/c.bin")
    assert not storage.exists("s3://maps/t/a.bin") and storage.read_bytes("s3://maps/t/c.bin") == data
    assert storage.delete_prefix("s3://maps/t/") == 2
    assert storage.list_files("s3://maps/t/") == []


def test_rasterio_windowed_read_over_s3_matches_local(bucket):
    uri = f"s3://data/scenes/{NAIP.name}"
    win = rasterio.windows.Window(100, 200, 64, 64)
    with storage.rasterio_env(), rasterio.open(storage.parse(uri).gdal_path) as ds:
        remote = ds.read(window=win)
    with rasterio.open(NAIP) as ds:
        local = ds.read(window=win)
    assert (remote == local).all()


def test_arrow_filesystem_reads_s3(bucket):
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = storage.arrow_filesystem("s3://maps/arrow/x.parquet")
    pq.write_table(pa.table({"a": [1, 2, 3]}), path, filesystem=fs)
    assert pq.read_table(path, filesystem=fs)["a"].to_pylist() == [1, 2, 3]


def test_missing_object_and_bucket_errors(bucket):
    assert not storage.exists("s3://data/scenes/missing.tif")
    with pytest.raises(StorageError, match="does not exist"):
        storage.check_bucket("s3://no-such-bucket-xyz/scene.tif")
    with pytest.raises(InputError, match="does not exist"):
        storage.read_bytes("s3://data/missing.bin")


def test_unreachable_endpoint_is_named_without_secrets(bucket, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError) as e:
        storage.check_bucket("s3://data/x.tif")
    msg = str(e.value)
    assert f"127.0.0.1:{port}" in msg and "Fix:" in msg and S3_SECRET not in msg


def test_gdal_options_follow_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    o = storage.gdal_options()
    assert o["AWS_S3_ENDPOINT"] == "127.0.0.1:9999" and o["AWS_HTTPS"] == "NO" and o["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert o["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert not any("SECRET" in k for k in o)

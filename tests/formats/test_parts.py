"""formats.parts: which parts exist, the debris of a killed run, commit."""


from raylib.formats import parts


def test_digest_is_stable():
    assert parts.digest({"a": 1, "b": [2]}) == parts.digest({"b": [2], "a": 1}) != parts.digest({"a": 2})


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

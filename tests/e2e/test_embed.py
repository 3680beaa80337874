"""landcover embed on the real local Ray cluster: image folders, 13-band GeoTIFF patches,
patches cut from a label raster, on local disk and S3."""

import numpy as np
import pytest

from raylib.cli import main
from raylib.config import EmbedConfig
from raylib.errors import ConfigError, InputError
from raylib.formats.embtable import read_embeddings
from raylib.io import storage
from raylib.models.backbones import Backbone
from raylib.pipelines.embed import run_embed
from raylib.raster.patches import read_rgb

from ..conftest import DATA, eurosat_subset

CHES = DATA / "labelled-scenes" / "chesapeake-wv-m_3907833_nw_17_1"


@pytest.fixture()
def small_folder(tmp_path):
    return eurosat_subset(tmp_path / "set", ("Forest", "Highway", "SeaLake"), 0, 10)


def test_embed_image_folder_matches_direct_backbone_and_never_duplicates(ray_session, small_folder, tmp_path):
    out = str(tmp_path / "emb")
    cfg = EmbedConfig(data=str(small_folder), out=out, input_size=64, batch_size=16)
    summary = run_embed(cfg)
    assert summary["rows"] == 30 and summary["test"] == 6 and summary["dim"] == 1280
    X, y, split, classes, meta, table = read_embeddings(out)
    assert classes == ["Forest", "Highway", "SeaLake"] and X.shape == (30, 1280)
    assert len(set(table["tile_id"].to_pylist())) == 30
    for c in range(3):  # stratified: 2 of 10 per class in test
        assert (split[y == c] == "test").sum() == 2
    # the pipeline's embedding equals the backbone applied directly to the decoded image
    src = table["source"].to_pylist()
    bb = Backbone.from_pretrained("default", device="cpu", input_size=64)
    direct = bb.embed(np.stack([read_rgb(s) for s in src[:4]]).astype(np.float32) / 255)
    np.testing.assert_allclose(X[:4], direct, rtol=1e-4, atol=1e-5)
    assert 0 < meta["band_mean"][0] < 1
    with pytest.raises(ConfigError, match="already holds embeddings"):
        run_embed(cfg)
    run_embed(cfg.model_copy(update={"overwrite": True}))
    X2, _, split2, _, _, table2 = read_embeddings(out)
    assert table2.num_rows == 30 and table2["tile_id"].equals(table["tile_id"]) and (split2 == split).all()
    np.testing.assert_allclose(X2, X, atol=1e-5)


def test_corrupt_image_is_named_and_nothing_written(ray_session, small_folder, tmp_path, capsys):
    (small_folder / "Forest" / "Forest_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rc = main(["embed", "--data", str(small_folder), "--out", str(tmp_path / "emb"), "--input-size", "64"])
    err = capsys.readouterr().err
    assert rc == 2 and "Forest_broken.jpg" in err and "nothing was written" in err
    assert not (tmp_path / "emb").exists()


def test_stray_file_in_class_folder_is_named(ray_session, small_folder, tmp_path, capsys):
    (small_folder / "Highway" / "labels.csv").write_text("x")
    rc = main(["embed", "--data", str(small_folder), "--out", str(tmp_path / "emb")])
    assert rc == 2 and "labels.csv is not an image" in capsys.readouterr().err


def test_embed_13_band_geotiffs_from_s3(ray_session, bucket, tmp_path):
    ms = DATA / "eurosat-ms-sample"
    for cls in ("Forest", "SeaLake", "Industrial"):
        for f in sorted((ms / cls).glob("*.tif"))[:6]:
            storage.write_bytes(f"s3://data/ms/{cls}/{f.name}", f.read_bytes())
    cfg = EmbedConfig(data="s3://data/ms/", out="s3://maps/emb-ms", bands="sentinel2-eurosat", scale=3000,
                      input_size=64)
    summary = run_embed(cfg)
    assert summary["rows"] == 18 and summary["dim"] == 1280
    X, y, split, classes, meta, _ = read_embeddings("s3://maps/emb-ms")
    assert meta["bands"] == [4, 3, 2] and classes == ["Forest", "Industrial", "SeaLake"]
    assert np.isfinite(X).all() and X.std(0).max() > 0


def test_embed_patches_cut_from_label_raster_with_group_split(ray_session, tmp_path):
    nc = DATA / "labelled-scenes" / "nc-wake-landsat7-landclass96"
    names = {1: "developed", 2: "agriculture", 3: "herbaceous", 4: "shrubland", 5: "forest", 6: "water",
             7: "sediment"}
    cfg = EmbedConfig(data=str(nc / "image_landsat7_2000.tif"), labels=str(nc / "label_landclass96.tif"),
                      patch_size=32, out=str(tmp_path / "nc"), input_size=64, split="group", bands=[3, 2, 1],
                      classes=names)
    summary = run_embed(cfg)
    # the folder's README: 36 of 195 windows at 32 px pass the 85 % label rule; 7 of those touch the
    # image's fill border (R, G and B all 0) and are dropped as nodata
    assert summary["rows"] == 29
    X, y, split, classes, meta, table = read_embeddings(str(tmp_path / "nc"))
    assert len(classes) >= 2 and set(classes) <= set(names.values())
    groups = np.array(table["group"].to_pylist())
    assert not set(groups[split == "train"]) & set(groups[split == "test"])  # no area leaks
    assert (split == "test").any() and (split == "train").any()
    assert all("#r" in s for s in table["source"].to_pylist())


def test_single_class_label_raster_is_explained(ray_session, tmp_path):
    cfg = EmbedConfig(data=str(CHES / "image_naip.tif"), labels=str(CHES / "label_lc.tif"), patch_size=32,
                      out=str(tmp_path / "ches"), bands="naip")
    with pytest.raises(InputError, match="a head needs at least 2 classes"):
        run_embed(cfg)
    assert not (tmp_path / "ches").exists()


def test_label_raster_off_grid_is_refused(ray_session, tmp_path):
    nc = DATA / "labelled-scenes" / "nc-wake-landsat7-landclass96"
    cfg = EmbedConfig(data=str(nc / "image_landsat7_2000.tif"), labels=str(nc / "landclass96_native_grid.tif"),
                      out=str(tmp_path / "x"))
    with pytest.raises(InputError, match="not on the grid"):
        run_embed(cfg)

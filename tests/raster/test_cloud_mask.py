"""Quality assets as cloud, shadow and snow shares: Sentinel-2 SCL classes, Landsat
QA_PIXEL bits, the STAC classification extension, and assets the program cannot read."""

import numpy as np
import pytest

from raylib.errors import InputError
from raylib.raster import cloud_mask, scenes, tiling, windows


def _item(**assets):
    return {"id": "it", "assets": {k: {"href": f"{k}.tif", "type": "image/tiff", **a} for k, a in assets.items()}}


def test_scl_by_key_and_classes_named_by_the_classification_extension():
    dec = cloud_mask.decoder(_item(), "SCL", {})
    assert dec["classes"]["cloud"] == [8, 9, 10] and dec["classes"]["shadow"] == [3]
    classes = [{"value": 0, "name": "no_data"}, {"value": 3, "name": "cloud_shadows"}, {"value": 4, "name": "vegetation"},
               {"value": 5, "name": "not_vegetated"}, {"value": 8, "name": "cloud_medium_probability"},
               {"value": 10, "name": "thin_cirrus"}, {"value": 11, "name": "snow"}]
    item = _item(mask={"classification:classes": classes})
    key, asset = cloud_mask.find(item)
    dec = cloud_mask.decoder(item, key, asset)
    assert dec["classes"] == {"cloud": [8, 10], "shadow": [3], "snow": [11], "nodata": [0]}
    assert dec["known"] == [0, 3, 4, 5, 8, 10, 11]
    v = np.array([[[8, 8], [4, 0]], [[3, 11], [5, 7]]])  # tile 2 holds 7: no class of the asset
    fr = cloud_mask.fractions(v, np.ones(v.shape, bool), dec)
    np.testing.assert_allclose(fr["cloud"], [2 / 3, 0.0])  # the nodata pixel is not counted
    np.testing.assert_allclose(fr["shadow"], [0.0, 0.25])
    assert fr["unknown"].tolist() == [-1, 7]


def test_landsat_qa_pixel_bits_by_key_and_by_bitfields():
    dec = cloud_mask.decoder(_item(), "qa_pixel", {})
    bits = [{"name": "fill", "offset": 0, "length": 1}, {"name": "dilated_cloud", "offset": 1, "length": 1},
            {"name": "cirrus", "offset": 2, "length": 1}, {"name": "cloud", "offset": 3, "length": 1},
            {"name": "cloud_shadow", "offset": 4, "length": 1}, {"name": "snow", "offset": 5, "length": 1},
            {"name": "clear", "offset": 6, "length": 1}, {"name": "cloud_confidence", "offset": 8, "length": 2}]
    item = _item(qa={"classification:bitfields": bits})
    assert cloud_mask.find(item)[0] == "qa"
    assert cloud_mask.decoder(item, "qa", item["assets"]["qa"])["bits"] == dec["bits"]
    # 21824: clear, low confidences; 22280: cloud; 23888: cloud shadow; 30048: snow; 1: fill
    v = np.array([[[21824, 22280], [23888, 30048]], [[1, 1], [1, 21824]]])
    fr = cloud_mask.fractions(v, np.ones(v.shape, bool), dec)
    np.testing.assert_allclose(fr["cloud"], [0.25, 0.0])
    np.testing.assert_allclose(fr["shadow"], [0.25, 0.0])
    np.testing.assert_allclose(fr["snow"], [0.25, 0.0])
    assert fr["unknown"].tolist() == [-1, -1]


def test_assets_that_do_not_say_what_is_cloud_are_clear_errors():
    item = _item(mask={"classification:classes": [{"value": 1, "name": "water"}, {"value": 2, "name": "land"}]})
    with pytest.raises(InputError, match="cloud asset 'mask' has classes water, land, none of them a cloud") as e:
        cloud_mask.decoder(item, "mask", item["assets"]["mask"])
    assert e.value.reason == "cloud_mask" and "cloud_asset" in e.value.fix
    with pytest.raises(InputError, match="no classification:classes") as e:
        cloud_mask.decoder(item, "quality", {})
    with pytest.raises(InputError, match="has no asset 'fmask'"):
        cloud_mask.find(_item(scl={}), "fmask")
    assert cloud_mask.find(_item(red={}), "auto") is None and cloud_mask.find(_item(scl={}), "none") is None


def test_a_categorical_band_is_read_nearest_when_the_others_are_resampled(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (40, 40)).astype(np.uint16)
    mask = np.where(rng.random((40, 40)) < 0.5, 9, 4).astype(np.uint16)
    path = tmp_path / "two.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=2, dtype="uint16", crs="EPSG:32618",
                       transform=from_origin(0, 0, 10, 10)) as ds:
        ds.write(np.stack([data, mask]))
    wins = tiling.layout(scenes.open_scene(str(path)), tiling.GridSpec(tile_size=16, stride=16, gsd=25.0)).windows()
    with rasterio.open(path) as ds:
        row = wins[wins["grid_row"] == 0]
        px, _ = windows.read_row(ds, row, (40, 40), 16, [1, 2], categorical=1)
        plain, _ = windows.read_row(ds, row, (40, 40), 16, [1, 2])
    assert set(np.unique(px[:, 1])) <= {4, 9}  # class codes, never averaged
    assert len(set(np.unique(plain[:, 1])) - {4, 9}) > 0  # bilinear would have made new values
    np.testing.assert_array_equal(px[:, 0], plain[:, 0])

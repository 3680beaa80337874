"""A STAC item as one scene: band assets picked by common name or key, stacked into a VRT
that reads back the assets' pixels (resampled where an asset is coarser), with
raster:bands scale/offset as the bands' scale/offset and reflectance from them."""

import json

import numpy as np
import pytest
import rasterio

from raylib.errors import InputError
from raylib.raster import radiometry, scene_source, stac_vrt

from .. import stac_catalog as sc


@pytest.fixture(scope="module")
def window():
    return sc.window_profile()


def _item_file(folder, item):
    item = sc.absolute([item], folder)[0]
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return str(path), item


def test_bands_are_picked_by_common_name_or_key_and_a_missing_one_is_named():
    item = {"id": "x", "assets": {
        "visual": {"href": "v.tif", "type": "image/tiff; application=geotiff",
                   "eo:bands": [{"common_name": "red"}, {"common_name": "green"}, {"common_name": "blue"}]},
        "B04": {"href": "b4.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "eo:bands": [{"name": "B04", "common_name": "red"}], "raster:bands": [{"scale": 1e-4, "offset": -0.1}]},
        "B03": {"href": "b3.jp2", "type": "image/jp2", "bands": [{"name": "B03", "eo:common_name": "green",
                                                                   "raster:scale": 2e-4, "nodata": 0}]},
        "thumbnail": {"href": "t.png", "type": "image/png", "roles": ["thumbnail"]},
        "scl": {"href": "scl.tif", "type": "image/tiff"}}}
    red, green, blue, scl = stac_vrt.pick_bands(item, ["red", "green", "blue", "SCL"])
    assert (red.asset, red.band, red.scale, red.offset) == ("B04", 1, 1e-4, -0.1)  # a single-band COG, not visual
    assert (green.asset, green.scale, green.nodata) == ("B03", 2e-4, 0.0)  # STAC 1.1 bands
    assert (blue.asset, blue.band) == ("visual", 3)  # only the visual asset has it
    assert scl.asset == "scl"  # by key, case-insensitive
    with pytest.raises(InputError, match="no asset or band 'swir16'.*B03.*red") as e:
        stac_vrt.pick_bands(item, ["swir16"])
    assert e.value.reason == "band_mismatch"


def test_the_vrt_reads_back_the_assets_pixels(tmp_path, window):
    data, _ = window
    uri, _ = _item_file(tmp_path, sc.item(tmp_path))
    path = scene_source.gdal_path(uri, ("red", "green", "blue"))
    with rasterio.open(path) as ds:
        assert ds.descriptions == ("red", "green", "blue")
        assert np.array_equal(ds.read(), data[[2, 1, 0]])  # byte for byte, in the model's order
        assert ds.scales == (1.0, 1.0, 1.0)
    assert scene_source.gdal_path("/x/scene.tif") == "/x/scene.tif"


def test_a_coarser_asset_is_resampled_to_the_finest_grid(tmp_path, window):
    data, prof = window
    uri, _ = _item_file(tmp_path, sc.item(tmp_path, coarse_red=True))
    with rasterio.open(scene_source.gdal_path(uri, ("red", "green", "blue"))) as ds:
        assert (ds.width, ds.height) == (prof["width"], prof["height"])
        assert ds.transform == prof["transform"]
        red, green = ds.read(1).astype(float), ds.read(2)
    assert np.array_equal(green, data[1])
    # the 60 m red (2x2 block means), bilinear back to 30 m: close to the 30 m original
    truth = data[2].astype(float)
    inner = (slice(4, -4), slice(4, -4))
    assert np.corrcoef(red[inner].ravel(), truth[inner].ravel())[0, 1] > 0.9
    assert abs(red[inner].mean() - truth[inner].mean()) < 0.01 * truth[inner].mean()


def test_raster_bands_scale_and_offset_become_reflectance(tmp_path, window):
    data, _ = window
    uri, _ = _item_file(tmp_path, sc.item(tmp_path, item_id="L2-test", scale=2.75e-5, offset=-0.2))
    with rasterio.open(scene_source.gdal_path(uri, ("red", "green", "blue"))) as ds:
        assert ds.scales == (2.75e-5,) * 3 and ds.offsets == (-0.2,) * 3
        assert np.array_equal(ds.read(1), data[2])  # values stay digital numbers
        fs = radiometry.file_scale(ds.scales, ds.offsets)
    tf = radiometry.transform(radiometry.FILE_SCALE, uri, [1, 3], None, 3, "uint16", file_scales=fs)
    assert np.allclose(tf.a, 2.75e-5) and np.allclose(tf.c, -0.2)
    assert radiometry.file_scale((1.0, 1.0), (0.0, 0.0)) is None


def test_an_item_without_a_band_is_a_band_mismatch(tmp_path):
    uri, _ = _item_file(tmp_path, sc.item(tmp_path, bands={"red": 3, "green": 2}))
    with pytest.raises(InputError, match="no asset or band 'blue'") as e:
        scene_source.gdal_path(uri, ("red", "green", "blue"))
    assert e.value.reason == "band_mismatch"

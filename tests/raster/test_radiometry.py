"""Sensor presets (DN -> reflectance), the EuroSAT RGB stretch, and the scaling choice."""

import datetime as dt
import math
import shutil

import numpy as np
import pytest
import rasterio
from PIL import Image

from raylib.errors import ConfigError
from raylib.models.model_dir import ModelManifest
from raylib.pipelines.common.planning import scaling_mode
from raylib.raster import bands, radiometry, scenes

from ..conftest import DATA, LANDSAT, NAIP

NC_IMAGE = DATA / "labelled-scenes" / "nc-wake-landsat7-landclass96" / "image_landsat7_2000.tif"


@pytest.mark.parametrize("name, sensor", [
    ("LC08_L1TP_224078_20200518_20200518_01_RT.TIF", "landsat-oli-l1"),
    ("LC09_L1TP_015033_20230101_20230101_02_T1_B4.TIF", "landsat-oli-l1"),
    ("LE07_L1TP_016035_20000524_20200918_02_T1.tif", "landsat-etm-l1"),
    ("LT05_L1TP_016035_19950524_20200918_02_T1.tif", "landsat-tm-l1"),
    ("LC08_L2SP_224078_20200518_20200820_02_T1_SR_B4.TIF", "landsat-c2-l2"),
    ("S2A_MSIL2A_20230601T101601_N0509_R065_T32TQM_20230601T160000.tif", "sentinel2-l2a"),
    ("S2B_MSIL1C_20200601T101559_N0209_R065_T32TQM_20200601T122222.tif", "sentinel2-l1c-pre04"),
    ("m_4709963_se_14_1_20150926.tif", "naip"),
    ("image_landsat7_2000.tif", None),
])
def test_sensor_from_the_file_name(name, sensor):
    assert radiometry.detect_sensor(f"s3://bucket/x/{name}") == sensor


def test_oli_defaults_and_the_sun_from_the_product_id():
    info = scenes.open_scene(str(LANDSAT))
    t = radiometry.transform("landsat-oli-l1", str(LANDSAT), [3, 2, 1], (None,) * 3, 3, "uint16",
                             scenes.centre_lonlat(info))
    elev = radiometry.solar_elevation(dt.date(2020, 5, 18), scenes.centre_lonlat(info)[1], scenes.centre_lonlat(info)[0])
    assert 30 < elev < 45  # late autumn, 25 degrees south, mid-morning
    assert t.notes["sun_elevation"] == pytest.approx(elev, abs=0.01)
    s = math.sin(math.radians(elev))
    np.testing.assert_allclose(t.a, 2e-5 / s, rtol=1e-9)
    np.testing.assert_allclose(t.c, -0.1 / s, rtol=1e-9)


def test_oli_reads_the_mtl_beside_the_scene(tmp_path):
    scene = tmp_path / LANDSAT.name
    shutil.copy(LANDSAT, scene)
    (tmp_path / "LC08_L1TP_224078_20200518_20200518_01_RT_MTL.txt").write_text(
        'GROUP = IMAGE_ATTRIBUTES\n    SUN_ELEVATION = 30.0\n    REFLECTANCE_MULT_BAND_4 = 2.5E-05\n'
        '    REFLECTANCE_ADD_BAND_4 = -0.2\nEND_GROUP = IMAGE_ATTRIBUTES\n')
    t = radiometry.transform("landsat-oli-l1", str(scene), [3], (None, None, "B4 red"), 3, "uint16", None)
    assert t.notes["metadata"] == "MTL" and t.notes["sun_elevation_source"] == "MTL"
    assert t.a[0] == pytest.approx(2.5e-5 / 0.5) and t.c[0] == pytest.approx(-0.2 / 0.5)


def test_etm_dn_to_toa_reflectance_by_the_handbook():
    with rasterio.open(NC_IMAGE) as ds:
        desc = ds.descriptions
    t = radiometry.transform("landsat-etm-l1", str(NC_IMAGE), [3, 2, 1], desc, 6, "uint8", None, sun_elevation=60)
    assert t.notes["sensor_bands"] == [3, 2, 1]  # from the descriptions 'B3 red', ...
    lmin, _, lmax, esun = radiometry.ETM[3]  # band 3, high gain
    dn = 61
    radiance = (lmax - lmin) / 254 * (dn - 1) + lmin
    rho = math.pi * radiance / (esun * math.sin(math.radians(60)))
    assert t.a[0] * dn + t.c[0] == pytest.approx(rho)
    assert 0.05 < rho < 0.15  # a forest pixel of the NC scene: plausible TOA reflectance
    with pytest.raises(ConfigError, match="is uint16, but sensor landsat-etm-l1 is uint8"):
        radiometry.transform("landsat-etm-l1", "x.tif", [1], None, 1, "uint16", None)


def test_no_sun_information_means_no_correction_and_says_so():
    t = radiometry.transform("landsat-etm-l1", str(NC_IMAGE), [1], ("B1 blue",), 6, "uint8", None)
    assert t.notes["sun_elevation"] is None and "no sun-angle correction" in t.notes["sun_elevation_source"]


def test_sentinel2_offsets_and_landsat_level2():
    t = radiometry.transform("sentinel2-l2a", "x.tif", [4, 3, 2], None, 13, "uint16")
    assert t.a[0] * 2000 + t.c[0] == pytest.approx(0.1)  # (2000 - 1000) / 10000
    t = radiometry.transform("sentinel2-l1c-pre04", "x.tif", [4], None, 13, "uint16")
    assert t.a[0] * 2000 + t.c[0] == pytest.approx(0.2)
    t = radiometry.transform("landsat-c2-l2", "x.tif", [4], None, 7, "uint16")
    assert t.a[0] * 10000 + t.c[0] == pytest.approx(0.075)
    with pytest.raises(ConfigError, match="Unknown sensor 'sentinel3'"):
        radiometry.transform("sentinel3", "x.tif", [1], None, 1, "uint16")


def test_the_eurosat_rgb_stretch_is_recovered_from_the_ms_sample():
    """EuroSAT RGB JPEGs are L1C reflectance stretched linearly: the fitted stretch maps an
    MS patch's bands 4, 3, 2 onto its JPEG within a few grey levels."""
    fit = radiometry.eurosat_rgb_stretch(str(DATA / "eurosat-ms-sample"), str(DATA / "eurosat-rgb"))
    assert fit["pairs"] == 270
    for g, o in zip(fit["gain"], fit["offset"]):
        assert 1 / g + 0 == pytest.approx(0.275, abs=0.01) and abs(o) < 0.02  # 255 at about 0.275 reflectance
    np.testing.assert_allclose(fit["gain"], radiometry.EUROSAT_RGB_STRETCH["gain"], atol=1e-3)
    with rasterio.open(DATA / "eurosat-ms-sample" / "Forest" / "Forest_1031.tif") as ds:
        ms = ds.read([4, 3, 2]).astype(np.float64) / 1e4
    jpg = np.asarray(Image.open(DATA / "eurosat-rgb" / "Forest" / "Forest_1031.jpg"), np.float64).transpose(2, 0, 1)
    pred = np.clip(ms * np.array(fit["gain"])[:, None, None] + np.array(fit["offset"])[:, None, None], 0, 1) * 255
    assert np.abs(pred - jpg).mean() < 4


def _manifest(reflectance=None):
    b = {"channels": ["red", "green", "blue"], "mean": [0.3] * 3, "std": [0.1] * 3}
    if reflectance:
        b["reflectance"] = reflectance
    return ModelManifest(id="m@0", kind="head", backbone={}, head={}, classes=["a", "b"], bands=b, tile_size=64,
                         gsd=10.0, metrics={}, created_by="")


def test_scaling_auto_follows_the_measurements():
    stretch = dict(radiometry.EUROSAT_RGB_STRETCH)
    assert scaling_mode("auto", "landsat-oli-l1", _manifest(stretch), "x") == "reflectance"
    assert scaling_mode("auto", "landsat-etm-l1", _manifest(stretch), "x") == "match"  # NC: match mapped better
    assert scaling_mode("auto", "landsat-oli-l1", _manifest(), "x") == "match"  # the model has no stretch
    assert scaling_mode("auto", "naip", _manifest(), "x") == "reflectance"  # NAIP: its 8-bit values as they are
    assert scaling_mode("auto", None, _manifest(stretch), "x") == "match"
    with pytest.raises(ConfigError, match="needs the sensor of x.tif"):
        scaling_mode("reflectance", None, _manifest(stretch), "x.tif")
    with pytest.raises(ConfigError, match="records none"):
        scaling_mode("reflectance", "landsat-oli-l1", _manifest(), "x.tif")


def test_reflectance_scaler_composes_sensor_and_model():
    t = radiometry.SensorTransform(np.full(3, 2e-5), np.full(3, -0.1), "landsat-oli-l1")
    st = radiometry.EUROSAT_RGB_STRETCH
    sc = bands.make_scaler("reflectance", None, "uint16", 0, [0.3] * 3, [0.1] * 3, sensor=t, model_reflectance=st)
    dn = 10000
    np.testing.assert_allclose(sc.gain * dn + sc.offset,
                               (2e-5 * dn - 0.1) * np.array(st["gain"]) + np.array(st["offset"]), rtol=1e-6)
    naip = radiometry.transform("naip", str(NAIP), [1, 2, 3], None, 4, "uint8")
    sc = bands.make_scaler("reflectance", None, "uint8", None, [0.3] * 3, [0.1] * 3, sensor=naip, model_reflectance=None)
    np.testing.assert_allclose(sc.gain, 1 / 255, rtol=1e-6) and np.testing.assert_allclose(sc.offset, 0)

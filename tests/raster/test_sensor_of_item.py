"""radiometry.sensor_of_item: the sensor preset a STAC item names for itself, and the rule."""

from raylib.raster.radiometry import sensor_of_item


def _item(**props):
    collection = props.pop("collection", None)
    item_id = props.pop("id", "x")
    return {"id": item_id, "collection": collection, "properties": {"datetime": "2020-07-01T10:00:00Z", **props}}


def test_sentinel2_l2a_items_without_a_product_id_are_recognised():
    sensor, rule = sensor_of_item(_item(id="S2A_36QWD_20200701_0_L2A", collection="sentinel-2-l2a",
                                        platform="sentinel-2a", constellation="sentinel-2", instruments=["msi"]))
    assert sensor == "sentinel2-l2a-pre04"  # 2020: before baseline 04.00 (no -1000 offset)
    assert "Sentinel-2 L2A" in rule and "platform=sentinel-2a" in rule and "acquired 2020-07-01" in rule
    sensor, rule = sensor_of_item(_item(collection="sentinel-2-l2a", platform="sentinel-2b",
                                        **{"s2:processing_baseline": "05.09"}))
    assert sensor == "sentinel2-l2a" and "processing baseline 05.09" in rule
    assert sensor_of_item(_item(platform="sentinel-2a", **{"s2:product_uri": "S2A_MSIL1C_20230101T000000_N0509_R1"}
                                ))[0] == "sentinel2-l1c"
    assert sensor_of_item(_item(platform="sentinel-2a", datetime="2023-05-01T00:00:00Z",
                                **{"processing:level": "L2A"}))[0] == "sentinel2-l2a"


def test_landsat_items_need_their_level_and_unknown_ones_say_why():
    assert sensor_of_item(_item(collection="landsat-c2-l2", platform="landsat-8", instruments=["oli", "tirs"]))[0] \
        == "landsat-c2-l2"
    assert sensor_of_item(_item(collection="landsat-c2-l1", platform="landsat-9"))[0] == "landsat-oli-l1"
    sensor, why = sensor_of_item(_item(collection="landsat-test", platform="landsat-8"))
    assert sensor is None and "unknown processing level" in why
    sensor, why = sensor_of_item(_item(platform="sentinel-2a"))
    assert sensor is None and "unknown processing level" in why
    assert sensor_of_item(_item(platform="worldview-3"))[0] is None

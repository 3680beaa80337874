"""STAC in: a static catalog (local and on the S3 server), a stac-geoparquet file, and a
real STAC API on 127.0.0.1 (``rustac serve``), searched with the same filters."""

import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from raylib.errors import ConfigError, InputError, StorageError
from raylib.io import stac

from .. import stac_catalog as sc
from ..conftest import _free_port, background_server


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Three items of two collections: May 2020 (5 % cloud), June 2020 (60 %), and May 2021
    in collection 'other'; each a folder of band COGs beside its JSON."""
    root = tmp_path_factory.mktemp("stac")
    cat = root / "cat"
    a = sc.item(cat / "landsat-test" / "a", item_id="a", datetime="2020-05-18T13:30:00Z", cloud=5.0)
    b = sc.item(cat / "landsat-test" / "b", item_id="b", datetime="2020-06-19T13:30:00Z", cloud=60.0)
    c = sc.item(cat / "other" / "c", item_id="c", datetime="2021-05-02T00:00:00Z", collection="other")
    path = sc.static_catalog(cat, {"landsat-test": [a, b], "other": [c]})
    flat = [sc.absolute([it], cat / col / it["id"])[0] for it, col in ((a, "landsat-test"), (b, "landsat-test"),
                                                                         (c, "other"))]
    gpq = sc.geoparquet(flat, root / "items.parquet")
    return {"root": root, "catalog": path, "parquet": gpq, "items": flat}


def ids(items):
    return [it["id"] for it in items]


def test_datetime_and_bbox_are_parsed_or_refused_with_the_field_named():
    lo, hi = stac.parse_interval("2020-05-01/2020-09-30")
    assert (lo.isoformat(), hi.date().isoformat()) == ("2020-05-01T00:00:00+00:00", "2020-09-30")
    lo, hi = stac.parse_interval("2020")
    assert (lo.month, hi.month, hi.day) == (1, 12, 31)
    assert stac.parse_interval("2020-05-01/..")[1] is None
    assert stac.parse_interval("2020-02")[1].day == 29
    for bad in ("2020-13-01", "yesterday", "2020-05-01/2020-04-01", "a/b/c", "../.."):
        with pytest.raises(ConfigError, match="datetime"):
            stac.parse_interval(bad)
    assert stac.parse_bbox("-78.9,35.7,-78.6,35.9") == (-78.9, 35.7, -78.6, 35.9)
    for bad in ("1,2,3", "10,0,5,1", "0,80,1,95", "a,b,c,d"):
        with pytest.raises(ConfigError, match="bbox"):
            stac.parse_bbox(bad)


def test_a_static_catalog_is_walked_and_filtered(catalog):
    src = str(catalog["catalog"])
    assert ids(stac.search(stac.StacQuery(src))) == ["a", "b", "c"]  # by date
    assert ids(stac.search(stac.StacQuery(src, collections=("landsat-test",)))) == ["a", "b"]
    assert ids(stac.search(stac.StacQuery(src, datetime="2020-05-01/2020-05-31"))) == ["a"]
    assert ids(stac.search(stac.StacQuery(src, max_cloud=20))) == ["a", "c"]
    assert ids(stac.search(stac.StacQuery(src, max_items=2))) == ["a", "b"]  # the first by date
    a = stac.search(stac.StacQuery(src, max_items=1))[0]
    w, s, e, n = a["bbox"]
    assert ids(stac.search(stac.StacQuery(src, bbox=(w - 1, s - 1, w + 0.001, s + 0.001)))) == ["a", "b", "c"]
    assert ids(stac.search(stac.StacQuery(src, bbox=(w - 2, s - 2, w - 1, s - 1)))) == []
    # relative asset hrefs come back absolute, beside the item's JSON
    assert Path(a["assets"]["red"]["href"]).is_file()
    # a collection, or one item, works too
    col = catalog["root"] / "cat" / "landsat-test" / "collection.json"
    assert ids(stac.search(stac.StacQuery(str(col)))) == ["a", "b"]


def test_a_static_catalog_on_s3(catalog, s3_server, bucket):
    client = s3_server["client"]
    root = catalog["root"] / "cat"
    for p in root.rglob("*"):
        if p.is_file():
            client.upload_file(str(p), bucket, f"stac/{p.relative_to(root)}")
    items = stac.search(stac.StacQuery(f"s3://{bucket}/stac/catalog.json", datetime="2020"))
    assert ids(items) == ["a", "b"]
    assert items[0]["assets"]["red"]["href"] == f"s3://{bucket}/stac/landsat-test/a/a_red.tif"


def test_a_stac_geoparquet_file(catalog):
    items = stac.search(stac.StacQuery(str(catalog["parquet"]), datetime="2020-06", collections=("landsat-test",)))
    assert ids(items) == ["b"]
    assert items[0]["properties"]["eo:cloud_cover"] == 60.0
    assert items[0]["assets"]["green"]["eo:bands"][0]["common_name"] == "green"


@pytest.fixture(scope="module")
def stac_api(catalog):
    """``rustac serve`` (in-memory backend) on 127.0.0.1 with the three items."""
    port = _free_port()
    exe = str(Path(sys.executable).parent / "rustac")
    url = f"http://127.0.0.1:{port}"

    def ready():
        with urllib.request.urlopen(url + "/", timeout=2) as r:
            return r.status == 200

    cmd = [exe, "serve", "--use-duckdb", "false", "--create-collections", "--addr", f"127.0.0.1:{port}",
           str(catalog["parquet"])]
    with background_server(cmd, dict(os.environ), str(catalog["root"]), "rustac", ready, timeout=60):
        yield url


def test_a_stac_api_is_searched_on_the_server(stac_api, catalog):
    a = catalog["items"][0]
    w, s, e, n = a["bbox"]
    items = stac.search(stac.StacQuery(stac_api, bbox=(w, s, e, n), datetime="2020-05-01/2020-06-30"))
    assert ids(items) == ["a", "b"]
    assert ids(stac.search(stac.StacQuery(stac_api, datetime="2020-05-01/2020-06-30", max_cloud=20))) == ["a"]
    assert ids(stac.search(stac.StacQuery(stac_api, collections=("other",)))) == ["c"]
    assert items[0]["assets"]["red"]["href"] == a["assets"]["red"]["href"]
    # an AOI: the server searches its box, the footprints are tested against its polygons here
    import shapely

    frame = shapely.box(w - 1, s - 1, e + 1, n + 1).difference(shapely.box(w - 0.01, s - 0.01, e + 0.01, n + 0.01))
    area = json.loads(shapely.to_geojson(frame))
    assert ids(stac.search(stac.StacQuery(stac_api, bbox=frame.bounds))) == ["a", "b", "c"]
    assert ids(stac.search(stac.StacQuery(stac_api, bbox=frame.bounds, intersects=area))) == []
    filled = json.loads(shapely.to_geojson(shapely.Polygon(frame.exterior)))
    assert ids(stac.search(stac.StacQuery(stac_api, bbox=frame.bounds, intersects=filled))) == ["a", "b", "c"]


def test_bad_sources_are_clear_errors(stac_api, catalog, tmp_path):
    with pytest.raises(StorageError, match="cannot be reached"):
        stac.search(stac.StacQuery(f"http://127.0.0.1:{_free_port()}"))
    with pytest.raises(ConfigError, match="query extension"):  # rustac's memory backend has none
        stac.search(stac.StacQuery(stac_api, query={"platform": {"eq": "landsat-8"}}))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        stac.search(stac.StacQuery(str(bad)))
    bad.write_text(json.dumps({"type": "Thing"}))
    with pytest.raises(InputError, match="not a STAC catalog"):
        stac.search(stac.StacQuery(str(bad)))
    with pytest.raises(InputError, match="does not exist"):
        stac.search(stac.StacQuery(str(tmp_path / "missing.parquet")))

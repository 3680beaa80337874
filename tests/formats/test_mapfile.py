"""formats.mapfile: the map's GeoParquet schema, built from an in-memory raster's tile grid."""

import json

import numpy as np
import pyarrow.parquet as pq
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from raylib.formats import mapfile
from raylib.raster import scenes, tiling


def _scene(mf: MemoryFile, width=40, height=30):
    ds = mf.open(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs="EPSG:32618",
                 transform=from_origin(500000, 4400000, 10, 10))
    ds.write(np.full((3, height, width), 100, np.uint8))
    ds.close()
    return scenes.open_scene(mf.name)


def test_a_part_holds_every_tile_with_its_prediction_or_its_error(tmp_path):
    with MemoryFile() as mf:
        info = _scene(mf)
        grid = tiling.GridSpec(tile_size=16, stride=16, gsd=None)
        rows = tiling.tile_table(info, grid)
    n = rows.num_rows
    assert n == 3 * 2  # 40 x 30 px in tiles of 16: 3 columns, 2 rows (edge tiles clipped)
    probs = np.tile(np.array([[0.7, 0.3]], np.float32), (n, 1))
    probs[1] = [0.45, 0.55]
    status = np.array(["ok", "ok", "ok", "error", "ok", "ok"], object)
    error = np.array(["", "", "", "timeout: the read did not answer", "", ""], object)
    probs[3] = np.nan
    t = mapfile.build_table(rows, probs, status, error, np.zeros(n, np.float32), ["forest", "water"], "m@1",
                            unknown_below=0.6)
    assert t.schema == mapfile.MAP_SCHEMA
    assert t["label"].to_pylist() == ["forest", mapfile.UNKNOWN, "forest", None, "forest", "forest"]
    assert t["label_index"].to_pylist() == [0, None, 0, None, 0, 0]
    assert t["reason"].to_pylist() == [None, None, None, "timeout", None, None]
    assert t["probs"].to_pylist()[3] is None and abs(t["confidence"].to_pylist()[1] - 0.55) < 1e-6
    assert t["edge"].to_pylist() == [False, False, True, True, True, True]
    uri = str(tmp_path / "part-00000.parquet")
    mapfile.write_part(t, uri, ["forest", "water"], "m@1", {"grid": {"tile_size": 16}})
    back = pq.read_table(uri)
    assert back.num_rows == n and back.column_names == t.column_names
    geo = json.loads(back.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    lon0, lat0, lon1, lat1 = geo["columns"]["geometry"]["bbox"]
    assert -76 < lon0 < lon1 < -74 and 39 < lat0 < lat1 < 40.5  # UTM 18N at 4,400 km north: near 39.7 N, 75 W
    meta = json.loads(back.schema.metadata[b"landcover"])
    assert meta["classes"] == ["forest", "water"] and meta["model_id"] == "m@1" and meta["grid"] == {"tile_size": 16}
    # an ok row's error is null, as its reason; the area is the footprint's, less the fill
    assert t["error"].to_pylist() == [None, None, None, "timeout: the read did not answer", None, None]
    w = t["width"].to_numpy().astype(float) * 10
    h = t["height"].to_numpy().astype(float) * 10
    np.testing.assert_allclose(t["area_ha"].to_numpy(), w * h / 1e4, rtol=2e-3)  # (UTM's scale near its centre)
    # what each column holds, in the file: the fields' metadata and a key every Parquet reader shows
    docs = json.loads(back.schema.metadata[b"landcover_columns"])
    assert set(docs) == set(back.column_names) and "hectares" in docs["area_ha"]
    assert back.schema.field("label_index").metadata[b"description"].decode() == docs["label_index"]
    # pandas (GeoPandas) reads label_index as its nullable Int16, not float64 with NaN
    import geopandas

    gdf = geopandas.read_parquet(uri)
    assert str(gdf["label_index"].dtype) == "Int16" and gdf["label_index"].isna().tolist() == [
        False, True, False, True, False, False]


def test_mapped_area_reads_the_column_or_computes_it_for_older_parts():
    """``mapped_area_ha``: a part's ``area_ha``; for a part written before the column, the
    footprint less its fill, computed alike (vectorised: pyproj's geodesic area to 1e-5)."""
    import pyarrow as pa
    import shapely
    from pyproj import Geod

    with MemoryFile() as mf:
        rows = tiling.tile_table(_scene(mf), tiling.GridSpec(tile_size=16, stride=16, gsd=None))
    n = rows.num_rows
    fill = np.linspace(0, 0.5, n).astype(np.float32)
    t = mapfile.build_table(rows, np.tile([[0.6, 0.4]], (n, 1)).astype(np.float32), np.full(n, "ok", object),
                            np.full(n, "", object), fill, ["forest", "water"], "m@1")
    geod = Geod(ellps="WGS84")
    want = np.array([abs(geod.geometry_area_perimeter(shapely.from_wkb(g))[0]) / 1e4
                     for g in t["geometry"].to_pylist()]) * (1 - fill)
    np.testing.assert_allclose(mapfile.mapped_area_ha(t), want, rtol=1e-5)
    older = t.drop_columns(["area_ha"])
    np.testing.assert_allclose(mapfile.mapped_area_ha(older), want, rtol=1e-5)
    nulls = t.set_column(t.schema.get_field_index("area_ha"), "area_ha", pa.nulls(n, pa.float64()))
    np.testing.assert_allclose(mapfile.mapped_area_ha(nulls), want, rtol=1e-5)


def test_a_map_spanning_versions_reads_the_newer_columns_as_nulls(tmp_path):
    """An incremental map whose first part was written before the cloud and item columns
    existed: reading the folder gives every column, null in the older part, whichever part
    a reader meets first."""
    with MemoryFile() as mf:
        rows = tiling.tile_table(_scene(mf), tiling.GridSpec(tile_size=16, stride=16, gsd=None))
    n = rows.num_rows
    probs = np.tile(np.array([[0.7, 0.3]], np.float32), (n, 1))
    status, error = np.full(n, "ok", object), np.full(n, "", object)
    new = mapfile.build_table(rows, probs, status, error, np.zeros(n, np.float32), ["forest", "water"], "m@1",
                              stats={"band_mean": np.zeros((n, 0)), "band_std": np.zeros((n, 0)),
                                     "n_stats": np.zeros(n, np.int8), "ndvi": np.full(n, np.nan),
                                     "ndwi": np.full(n, np.nan), "cloud_fraction": np.full(n, 0.25)})
    old = new.drop_columns([*mapfile.ITEM_COLUMNS, *mapfile.CLOUD_COLUMNS])
    for name, t in (("part-00000.parquet", old), ("part-00001.parquet", new)):
        mapfile.write_part(t, str(tmp_path / name), ["forest", "water"], "m@1", {})
    back = mapfile.read_map(str(tmp_path))
    assert back.num_rows == 2 * n and back.schema.names == mapfile.MAP_SCHEMA.names
    clouds = back["cloud_fraction"].to_pylist()
    assert sorted(clouds, key=lambda v: v is None) == [0.25] * n + [None] * n
    assert back["item_id"].null_count == 2 * n and back["label"].to_pylist() == ["forest"] * (2 * n)

"""Reference land cover for the tiles of a map: a crosswalk of classes into groups, and
the reference group of each tile from a class raster or from points/polygons.

* Raster: the reference pixels inside each tile's footprint (the raster is reprojected,
  nearest neighbour, onto a grid in the tile's scene CRS at the reference's own pixel
  size), nodata excluded. The tile's reference group is the majority group when it covers
  at least ``purity`` of the labelled pixels; otherwise the tile is not assessed (counted).
* Vector: a point is assessed against every tile holding it; a polygon against every tile
  it covers by at least ``purity`` of the tile's area, or, when it covers no tile that much
  (a polygon smaller than a tile), against the tile holding its representative point.

Tiles are identified by their row in the map table. Nothing here knows Ray or models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from raylib.errors import InputError
from raylib.io import storage
from raylib.raster import aoi
from raylib.raster.footprints import footprints

# why a tile got no reference group
NO_REFERENCE = "no_reference"  # no labelled reference pixel (outside the raster, or nodata)
IMPURE = "impure"  # the majority group covers less than purity of the labelled pixels
UNMAPPED = "reference_code_not_in_crosswalk"  # the majority of the pixels have a code the crosswalk leaves out


@dataclass
class Crosswalk:
    """Map classes and reference codes (or names) -> assessment groups."""

    map: dict[str, str]
    reference: dict[str, str]
    groups: list[str] = field(default_factory=list)
    source: str = "crosswalk"

    def __post_init__(self):
        if not self.groups:
            seen: dict[str, None] = {}
            for g in list(self.map.values()) + list(self.reference.values()):
                seen.setdefault(g, None)
            self.groups = list(seen)
        for g in self.groups:  # a map class named like a group is that group (heads trained on a store)
            self.map.setdefault(g, g)

    def check_map_classes(self, classes) -> None:
        """Every class the map uses must be in the crosswalk (else the map's area is lost)."""
        missing = sorted({str(c) for c in classes} - set(self.map))
        if missing:
            raise InputError(f"Map class(es) {missing} are not in the 'map' section of {self.source}.",
                             f"add each of them to 'map:' with the group it belongs to (groups: {self.groups}).")

    def reference_group(self, code) -> str | None:
        """The group of a reference code or name, or None when the crosswalk leaves it out."""
        key = str(code)
        if key in self.reference:
            return self.reference[key]
        try:  # 5.0 from a float raster is code 5
            f = float(key)
            if f.is_integer() and str(int(f)) in self.reference:
                return self.reference[str(int(f))]
        except ValueError:
            pass
        return None

    @classmethod
    def identity(cls, classes: list[str]) -> "Crosswalk":
        return cls({c: c for c in classes}, {c: c for c in classes}, source="the map's own classes")


def load_crosswalk(uri: str, need_reference: bool = True) -> Crosswalk:
    """``map: {class: group}`` and ``reference: {code or name: group}`` from a YAML file
    (``need_reference`` False: the ``map`` section alone will do, as for comparing maps)."""
    import yaml

    try:
        text = storage.read_bytes(uri).decode()
    except Exception as exc:
        raise InputError(f"Cannot read the crosswalk {uri}: {exc}", "check the path.") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"The crosswalk {uri} is not valid YAML: {exc}", "fix the YAML syntax.") from None
    keys = {"map", "reference"} if need_reference else {"map"}
    if not isinstance(doc, dict) or set(doc) - {"map", "reference"} or not keys <= set(doc):
        if need_reference:
            raise InputError(f"The crosswalk {uri} must be a mapping with exactly the keys 'map' and 'reference'.",
                             "write map: {<map class>: <group>} and reference: {<code or name>: <group>}.")
        raise InputError(f"The crosswalk {uri} must be a mapping with a 'map' section.",
                         "write map: {<class of any of the maps>: <group>, ...}.")
    parts = {"reference": {}}
    for key in ("map", "reference") if "reference" in doc else ("map",):
        section = doc[key]
        if not isinstance(section, dict) or not section or \
                not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in section.values()):
            raise InputError(f"The '{key}' section of the crosswalk {uri} must map names to group names.",
                             f"write {key}: {{<name>: <group>, ...}}.")
        parts[key] = {str(k): str(v) for k, v in section.items()}
    return Crosswalk(parts["map"], parts["reference"], source=uri)


def read_table(uri: str, what: str, columns: list[str], text: list[str] | None = None):
    """A CSV or Parquet table that must have ``columns`` (``text``, default all of them, read
    as strings from a CSV: codes like 01 stay codes); one clear error naming it otherwise."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        fs, path = storage.arrow_filesystem(uri)
        if uri.lower().endswith((".parquet", ".geoparquet")):
            table = pq.read_table(path, filesystem=fs)
        else:
            with fs.open_input_stream(path) as f:
                table = pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in (columns if text is None else text)}))
    except Exception as exc:
        raise InputError(f"Cannot read the {what} {uri}: {exc}", "give a CSV or Parquet file.") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"The {what} {uri} has no column(s) {missing} (it has {table.column_names}).",
                         f"give a table with the columns {columns}.")
    return table


MAP_CLASS = "map_class"  # a sample unit's map class (``landcover sample``)
LEGACY_MAP_CLASS = "map"  # its name in samples drawn before (it hid GeoDataFrame.map)


def labelled_sample(uri: str, columns: tuple[str, ...] = ()):
    """A labelled sample table (``map_class``, or ``map`` in samples drawn before it,
    ``reference`` and ``columns``): the table, and each unit's map and reference class; a
    unit without either is refused (dropping it would bias every estimate)."""
    table = read_table(uri, "sample table", [*columns, "reference"],
                       text=[*columns, "reference", MAP_CLASS, LEGACY_MAP_CLASS])
    name = next((c for c in (MAP_CLASS, LEGACY_MAP_CLASS) if c in table.column_names), None)
    if name is None:
        raise InputError(f"The sample table {uri} has no column {MAP_CLASS} (each unit's map class; it has "
                         f"{table.column_names}).", f"give a table with the columns {[MAP_CLASS, 'reference']}, as "
                                                    "landcover sample writes it.")
    m = [str(v) if v is not None else None for v in table.column(name).to_pylist()]
    r = [str(v) if v is not None else None for v in table.column("reference").to_pylist()]
    blank = [i for i, (a, b) in enumerate(zip(m, r)) if not a or not b]
    if blank:
        raise InputError(f"The sample table {uri} has {len(blank)} row(s) without a map or reference class "
                         f"(first at row {blank[0] + 1}).", "label every sample unit, or drop the unlabelled rows.")
    return table, m, r


# --------------------------------------------------------------------------- raster reference


@dataclass
class TileReference:
    """The reference group of each assessed tile, and why the others got none."""

    rows: np.ndarray  # map table rows
    group: np.ndarray  # index into crosswalk.groups
    purity: np.ndarray  # share of the tile's labelled pixels (raster) or of its area (polygons) in the group
    not_assessed: dict[str, int]
    reference_codes: dict[str, int]  # labelled pixels (or features) per reference code, crosswalked or not


def raster_reference(table, uri: str, crosswalk: Crosswalk, purity: float = 0.5) -> TileReference:
    """Reference group per tile from a class raster in any CRS and grid."""
    import rasterio
    from rasterio.warp import Resampling, reproject, transform_bounds

    fp = footprints(table)
    try:
        with storage.rasterio_env(), rasterio.open(storage.parse(uri).gdal_path) as src:
            if src.crs is None:
                raise InputError(f"The reference raster {uri} has no CRS.", "give a georeferenced class raster.")
            if src.count != 1:
                raise InputError(f"The reference raster {uri} has {src.count} bands; a class raster has one.",
                                 "give a single-band class raster.")
            ref_nodata = src.nodata
            codes_seen: dict[str, int] = {}
            out_rows, out_group, out_purity = [], [], []
            reasons = {NO_REFERENCE: 0, IMPURE: 0, UNMAPPED: 0}
            overlap = False
            for c in sorted(set(fp.crs)):
                ks = np.array([k for k, cc in enumerate(fp.crs) if cc == c])
                box = fp.box[ks]
                xmin, ymin, xmax, ymax = box[:, 0].min(), box[:, 1].min(), box[:, 2].max(), box[:, 3].max()
                rb = transform_bounds(src.crs, c, *src.bounds, densify_pts=21)
                if rb[0] >= xmax or rb[2] <= xmin or rb[1] >= ymax or rb[3] <= ymin:
                    reasons[NO_REFERENCE] += len(ks)
                    continue
                # the reference's pixel size, expressed in this CRS
                res = _pixel_size_in(src, c)
                w = int(np.ceil((xmax - xmin) / res))
                h = int(np.ceil((ymax - ymin) / res))
                if w * h > 400_000_000:
                    raise InputError(f"Reading the reference {uri} at its own resolution over the map's extent "
                                     f"would take {w}x{h} pixels.", "clip the reference to the mapped area.")
                dst = np.full((h, w), np.nan)
                dst_tf = rasterio.Affine(res, 0, xmin, 0, -res, ymax)
                band = rasterio.band(src, 1)
                reproject(band, dst, dst_transform=dst_tf, dst_crs=c, resampling=Resampling.nearest,
                          src_nodata=ref_nodata, dst_nodata=np.nan)
                valid = np.isfinite(dst)
                if ref_nodata is not None:
                    valid &= dst != ref_nodata
                if not valid.any():
                    reasons[NO_REFERENCE] += len(ks)
                    continue
                codes = np.unique(dst[valid])
                group_of = {float(v): crosswalk.reference_group(_code_str(v)) for v in codes}
                gidx = {g: i for i, g in enumerate(crosswalk.groups)}
                lut_codes = np.array(sorted(group_of))
                lut_group = np.array([gidx[group_of[v]] if group_of[v] is not None else -1 for v in lut_codes])
                for k, b in zip(ks, box):
                    c0 = int(round((b[0] - xmin) / res))
                    c1 = int(round((b[2] - xmin) / res))
                    r0 = int(round((ymax - b[3]) / res))
                    r1 = int(round((ymax - b[1]) / res))
                    win = dst[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)]
                    vals = win[valid[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)]]
                    if vals.size == 0:
                        reasons[NO_REFERENCE] += 1
                        continue
                    overlap = True
                    u, n = np.unique(vals, return_counts=True)
                    for v, m in zip(u, n):
                        key = _code_str(v)
                        codes_seen[key] = codes_seen.get(key, 0) + int(m)
                    g = lut_group[np.searchsorted(lut_codes, u)]
                    counts = np.bincount(g + 1, weights=n, minlength=len(crosswalk.groups) + 1)
                    top = int(np.argmax(counts))
                    share = counts[top] / vals.size
                    if top == 0:
                        reasons[UNMAPPED] += 1
                    elif share < purity:
                        reasons[IMPURE] += 1
                    else:
                        out_rows.append(fp.rows[k])
                        out_group.append(top - 1)
                        out_purity.append(share)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Cannot read the reference raster {uri}: {exc}", "check the path and the file.") from None
    if not overlap:
        raise InputError(f"The reference {uri} does not overlap the map: no tile has a labelled reference pixel.",
                         "give a reference that covers the mapped area (check its CRS and extent).")
    return TileReference(np.asarray(out_rows, np.int64), np.asarray(out_group, np.int64),
                         np.asarray(out_purity, np.float64), reasons, dict(sorted(codes_seen.items())))


def raster_pixel_groups(uri: str, crosswalk: Crosswalk, grids: list[dict], shape: tuple[int, int]) -> np.ndarray:
    """The reference group of every pixel of some tiles' own grids: ``grids`` one
    ``{"crs", "transform"}`` per tile (``shape`` pixels each), the class raster reprojected
    onto each (nearest neighbour) -> (N, H, W) group index, -1 for nodata, outside the
    raster, or a code the crosswalk leaves out (a pixel classifier's training labels)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    out = np.full((len(grids), *shape), -1, np.int64)
    gidx = {g: i for i, g in enumerate(crosswalk.groups)}
    with storage.rasterio_env(), rasterio.open(storage.parse(uri).gdal_path) as src:
        nodata = src.nodata
        lut: dict[float, int] = {}
        for i, g in enumerate(grids):
            dst = np.full(shape, np.nan)
            reproject(rasterio.band(src, 1), dst, dst_transform=rasterio.Affine(*g["transform"]), dst_crs=g["crs"],
                      resampling=Resampling.nearest, src_nodata=nodata, dst_nodata=np.nan)
            valid = np.isfinite(dst) & ((dst != nodata) if nodata is not None else True)
            for v in np.unique(dst[valid]):
                if float(v) not in lut:
                    grp = crosswalk.reference_group(_code_str(v))
                    lut[float(v)] = gidx[grp] if grp is not None else -1
                out[i][valid & (dst == v)] = lut[float(v)]
    return out


def _code_str(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _pixel_size_in(src, crs: str) -> float:
    """The reference raster's pixel size (the smaller side) in the units of ``crs``."""
    from rasterio.warp import calculate_default_transform

    if str(src.crs) == str(crs) or src.crs.to_string() == crs:
        return float(min(abs(src.transform.a), abs(src.transform.e)))
    tf, _, _ = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
    return float(min(abs(tf.a), abs(tf.e)))


# --------------------------------------------------------------------------- vector reference


VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".parquet", ".geoparquet", ".shp", ".fgb")


def read_vector(uri: str, class_column: str | None):
    """Points/polygons (with a class column unless ``class_column`` is None), in EPSG:4326
    (GeoJSON, GPKG, GeoParquet, ...)."""
    gdf = aoi.read_features(uri, "reference")
    if class_column is not None and class_column not in gdf.columns:
        raise InputError(f"The reference {uri} has no column {class_column!r} (columns: "
                         f"{[c for c in gdf.columns if c != gdf.geometry.name]}).",
                         "name the class column with --class-column.")
    return gdf


def vector_reference(table, uri: str, crosswalk: Crosswalk, class_column: str = "class",
                     purity: float = 0.5) -> TileReference:
    """Reference group per (tile, feature) pair from points/polygons."""
    import shapely

    gdf = read_vector(uri, class_column)
    geoms = table.column("geometry").to_pylist()
    has = np.array([g is not None for g in geoms])
    tile_rows = np.flatnonzero(has)
    tiles = shapely.from_wkb([geoms[r] for r in tile_rows])
    tree = shapely.STRtree(tiles)
    codes_seen: dict[str, int] = {}
    reasons = {NO_REFERENCE: 0, IMPURE: 0, UNMAPPED: 0}
    gidx = {g: i for i, g in enumerate(crosswalk.groups)}
    out_rows, out_group, out_purity = [], [], []
    hit_any = False
    for geom, code in zip(gdf.geometry.values, gdf[class_column].values):
        key = _code_str(code) if isinstance(code, (int, float, np.integer, np.floating)) else str(code)
        codes_seen[key] = codes_seen.get(key, 0) + 1
        group = crosswalk.reference_group(key)
        cand = tree.query(geom, predicate="intersects")
        if len(cand):
            hit_any = True
        if group is None:
            reasons[UNMAPPED] += 1
            continue
        if geom.geom_type in ("Point", "MultiPoint"):
            chosen = [(int(c), 1.0) for c in cand]
        else:
            shares = [(int(c), float(shapely.area(shapely.intersection(tiles[c], geom)) / max(shapely.area(tiles[c]), 1e-30)))
                      for c in cand]
            chosen = [(c, s) for c, s in shares if s >= purity]
            if not chosen and len(cand):
                inside = tree.query(shapely.point_on_surface(geom), predicate="intersects")
                chosen = [(int(c), dict(shares).get(int(c), 0.0)) for c in inside]
        if not chosen:
            reasons[NO_REFERENCE] += 1
            continue
        for c, s in chosen:
            out_rows.append(tile_rows[c])
            out_group.append(gidx[group])
            out_purity.append(s)
    if not hit_any:
        raise InputError(f"The reference {uri} does not overlap the map: none of its {len(gdf)} feature(s) "
                         "falls in a mapped tile.", "give points/polygons inside the mapped area (check the CRS).")
    return TileReference(np.asarray(out_rows, np.int64), np.asarray(out_group, np.int64),
                         np.asarray(out_purity, np.float64), reasons, dict(sorted(codes_seen.items())))


def is_vector(uri: str) -> bool:
    return storage.parse(uri).uri.lower().endswith(VECTOR_SUFFIXES)

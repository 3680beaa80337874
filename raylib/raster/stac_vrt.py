"""A STAC item as one multiband scene: its band assets (one COG per band, or bands of a
multiband asset) picked by common name or asset key, stacked into a GDAL VRT on one grid.

The VRT is what the map reads, exactly like a GeoTIFF the user lists: one windowed read
per row of tiles, which GDAL turns into windowed reads of each asset, resampling assets of
a coarser resolution (Sentinel-2's 20 m bands beside its 10 m ones) to the VRT's grid.
``raster:bands`` scale and offset (STAC 1.0's raster extension, or 1.1's ``raster:scale`` /
``raster:offset`` on ``bands``) become each VRT band's scale and offset, which planning
turns into reflectance like a sensor preset; nodata is kept per band."""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape

from raylib.errors import InputError
from raylib.io import storage

GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
              "int32": "Int32", "float32": "Float32", "float64": "Float64"}


@dataclass(frozen=True)
class BandAsset:
    """One band of the scene: where it is and how its values become physical units."""

    name: str  # the name asked for (common name or asset key)
    asset: str  # the asset's key
    href: str
    band: int  # 1-based band within the asset
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None
    categorical: bool = False  # class codes (a cloud mask): resampled nearest, never averaged
    color: str | None = None  # GDAL colour interpretation (a file's bands: Red, Green, ...)


def _bands_of(asset: dict) -> list[dict]:
    """An asset's band descriptions, STAC 1.1 ``bands`` or 1.0 ``eo:bands`` (merged with
    ``raster:bands`` by position)."""
    if asset.get("bands"):
        return [dict(b) for b in asset["bands"]]
    eo = asset.get("eo:bands") or []
    raster = asset.get("raster:bands") or []
    n = max(len(eo), len(raster))
    out = []
    for i in range(n):
        b = dict(eo[i]) if i < len(eo) else {}
        r = raster[i] if i < len(raster) else {}
        if "common_name" in b:
            b["eo:common_name"] = b["common_name"]
        for k in ("scale", "offset", "nodata"):
            if k in r:
                b["raster:" + k if k != "nodata" else k] = r[k]
        out.append(b)
    return out


def _is_raster(asset: dict) -> bool:
    t = str(asset.get("type") or "").lower()
    roles = asset.get("roles") or []
    return ("tiff" in t or "jp2" in t or t == "" or "geotiff" in t) and "thumbnail" not in roles \
        and "overview" not in roles and not str(asset.get("href", "")).lower().endswith((".xml", ".json", ".png",
                                                                                          ".jpg", ".html"))


def pick_bands(item: dict, names: list[str]) -> list[BandAsset]:
    """The asset band of each name: an asset keyed so (case-insensitive), else a band whose
    common name or name it is (single-band assets first: a true-colour ``visual`` asset also
    lists red, green and blue). An item missing one raises ``InputError`` (reason
    ``band_mismatch``) naming what it has."""
    assets = item.get("assets") or {}
    out = []
    for name in names:
        want = name.lower()
        found = None
        for key, a in assets.items():
            if key.lower() == want and _is_raster(a):
                bands = _bands_of(a)
                found = (key, a, 1, bands[0] if bands else {})
                break
        if found is None:
            candidates = []
            for key, a in assets.items():
                if not _is_raster(a):
                    continue
                bands = _bands_of(a)
                for i, b in enumerate(bands):
                    names_b = {str(b.get("eo:common_name", "")).lower(), str(b.get("name", "")).lower()}
                    if want in names_b:
                        cog = "cloud-optimized" in str(a.get("type", "")).lower()
                        candidates.append((len(bands) > 1, not cog, key, a, i + 1, b))
            if candidates:
                candidates.sort(key=lambda c: (c[0], c[1], c[2]))
                _, _, key, a, i, b = candidates[0]
                found = (key, a, i, b)
        if found is None:
            have = sorted({str(b.get("eo:common_name") or b.get("name")) for a in assets.values() if _is_raster(a)
                           for b in _bands_of(a) if b.get("eo:common_name") or b.get("name")} | set(assets))
            raise InputError(f"STAC item {item.get('id')} has no asset or band {name!r} (it has: {', '.join(have)}).",
                             "set stac_bands to names the collection's items have (common names such as red, "
                             "green, blue, nir, or asset keys).", reason="band_mismatch")
        key, a, i, b = found
        out.append(BandAsset(name=name, asset=key, href=a["href"], band=i,
                             scale=_num(b.get("raster:scale")), offset=_num(b.get("raster:offset")),
                             nodata=_num(b.get("nodata"))))
    return out


def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def gdal_path(href: str) -> str:
    """A GDAL path for an asset href: ``s3://`` -> ``/vsis3/``, ``http(s)://`` -> ``/vsicurl/``."""
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    return storage.parse(href).gdal_path


@dataclass(frozen=True)
class AssetGrid:
    width: int
    height: int
    transform: tuple[float, ...]  # a, b, c, d, e, f
    crs_wkt: str
    dtype: str
    nodata: float | None


def asset_grids(bands: list[BandAsset]) -> list[AssetGrid]:
    """Each band's grid, from its asset's header (one read per asset, a range request for a
    COG, whatever the number of bands taken from it)."""
    import rasterio

    heads: dict[str, tuple] = {}
    out = []
    for band in bands:
        if band.href not in heads:
            try:
                with storage.rasterio_env(), rasterio.open(gdal_path(band.href)) as ds:
                    heads[band.href] = (ds.width, ds.height, tuple(ds.transform)[:6],
                                        ds.crs.to_wkt() if ds.crs else "", ds.dtypes, ds.nodata)
            except Exception as exc:
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InputError(f"Asset {band.asset} ({band.href}) cannot be read ({msg}).",
                                 "check the asset's href and access to it.", reason="read_error") from None
        w, h, tf, crs, dtypes, nodata = heads[band.href]
        out.append(AssetGrid(w, h, tf, crs, dtypes[band.band - 1] if band.band <= len(dtypes) else dtypes[0], nodata))
    return out


def union_bounds(grids: list[AssetGrid]) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1, in the assets' CRS) that holds every asset's grid."""
    xs, ys = [], []
    for g in grids:
        a, _, c, _, e, f = g.transform
        xs += [c, c + a * g.width]
        ys += [f, f + e * g.height]
    return min(xs), min(ys), max(xs), max(ys)


def item_vrt(item: dict, bands: list[BandAsset], grids: list[AssetGrid],
             bounds: tuple[float, float, float, float] | None = None, res: float | None = None,
             fill: float | None = None) -> str:
    """The VRT XML of ``bands`` on the finest of their grids (``bounds``: a window, x0, y0,
    x1, y1 in its CRS, default the union of the assets; ``res``: another pixel size). Pixels
    stay the assets' values (an asset of another grid is resampled bilinearly; a categorical
    asset such as a cloud mask, nearest); each band's ``raster:bands`` scale and offset become
    the VRT band's scale and offset, which planning turns into reflectance (``radiometry``).
    Outside the assets the VRT holds their nodata, else ``fill``."""
    fine = min(range(len(grids)), key=lambda i: abs(grids[i].transform[0]))
    g = grids[fine]
    res_x, res_y = (res, -res) if res else (g.transform[0], g.transform[4])
    for b, gr in zip(bands, grids):
        if gr.transform[1] or gr.transform[3]:
            raise InputError(f"STAC item {item.get('id')}: asset {b.asset} is rotated.", "give north-up assets.",
                             reason="unsupported")
    x0, y0, x1, y1 = bounds or union_bounds(grids)
    width = max(1, round((x1 - x0) / res_x))
    height = max(1, round((y1 - y0) / abs(res_y)))
    dtype = _vrt_dtype(bands, grids)
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{escape(g.crs_wkt)}</SRS>'
             f"<GeoTransform>{x0!r}, {res_x!r}, 0, {y1!r}, 0, {res_y!r}</GeoTransform>"]
    for k, (b, gr) in enumerate(zip(bands, grids), start=1):
        a, _, c, _, e, f = gr.transform
        # the VRT's window in this asset's pixels (fractional where the grids differ: GDAL resamples)
        sx, sy = (x0 - c) / a, (f - y1) / -e
        sw, sh = (x1 - x0) / a, (y1 - y0) / -e
        nodata = b.nodata if b.nodata is not None else (gr.nodata if gr.nodata is not None else fill)
        src = (f'<SourceFilename relativeToVRT="0">{escape(gdal_path(b.href))}</SourceFilename>'
               f"<SourceBand>{b.band}</SourceBand>"
               f'<SrcRect xOff="{_num_text(sx)}" yOff="{_num_text(sy)}" xSize="{_num_text(sw)}" '
               f'ySize="{_num_text(sh)}"/><DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>')
        resampling = "nearest" if b.categorical else "bilinear"
        body = (f'<ComplexSource resampling="{resampling}">{src}'
                + (f"<NODATA>{_num_text(nodata)}</NODATA>" if nodata is not None else "") + "</ComplexSource>")
        parts.append(f'<VRTRasterBand dataType="{dtype}" band="{k}">'
                     + (f"<NoDataValue>{_num_text(nodata)}</NoDataValue>" if nodata is not None else "")
                     + (f"<Description>{escape(b.name)}</Description>" if b.name else "")
                     + (f"<ColorInterp>{b.color}</ColorInterp>" if b.color else "")
                     + (f"<Offset>{b.offset!r}</Offset>" if b.offset is not None else "")
                     + (f"<Scale>{b.scale!r}</Scale>" if b.scale is not None else "")
                     + f"{body}</VRTRasterBand>")
    parts.append("</VRTDataset>")
    return "".join(parts)


def _vrt_dtype(bands: list[BandAsset], grids: list[AssetGrid]) -> str:
    """One GDAL type for the VRT: the data bands' own type when they share one and a
    categorical band's values (a uint8 cloud mask beside uint16 reflectance) fit in it,
    else Float32."""
    import numpy as np

    data = {g.dtype for b, g in zip(bands, grids) if not b.categorical}
    cats = {g.dtype for b, g in zip(bands, grids) if b.categorical}
    if len(data) == 1:
        d = next(iter(data))
        if all(np.can_cast(c, d, "safe") for c in cats):
            return GDAL_TYPES.get(d, "Float32")
    every = data | cats
    return GDAL_TYPES.get(every.pop(), "Float32") if len(every) == 1 else "Float32"


def _num_text(v: float) -> str:
    """A number as GDAL reads it back exactly: integers without a fraction."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)

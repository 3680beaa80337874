"""Cloud-optimised GeoTIFFs of a map (``landcover export``): 512-pixel internal tiles, ZSTD,
overviews that keep a class raster's values (``MODE``) and average a continuous one, a palette
on class rasters, written through GDAL's COG driver and checked with rio-cogeo.

A class raster's pixel values: 0 no data (error rows), ``1..k`` the map's classes (its
``label_index`` + 1), ``k + 1`` ``unknown``; uint8 up to 254 classes, else uint16. A
percentage raster (confidence, class probabilities): 0-100, 255 no data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from raylib.io import storage

NODATA_CLASS = 0
NODATA_PERCENT = 255
PROFILE = {"BLOCKSIZE": 512, "COMPRESS": "ZSTD", "LEVEL": 9, "OVERVIEWS": "AUTO", "BIGTIFF": "IF_SAFER"}


def class_values(k: int) -> tuple[str, int]:
    """The dtype of a class raster of ``k`` classes, and the value of ``unknown``."""
    return ("uint8" if k + 1 <= 254 else "uint16"), k + 1


def write_cog(uri: str, bands: np.ndarray, transform, crs: str, nodata: int, *, classes: bool,
              colormap: dict[int, tuple] | None = None, descriptions: list[str] | None = None,
              tags: dict | None = None) -> dict:
    """Write ``bands`` (b, h, w) as a COG at ``uri`` (local or ``s3://``); overviews by
    ``MODE`` for a class raster, ``AVERAGE`` otherwise. Returns its size and SHA-256."""
    import rasterio.shutil
    from rasterio.io import MemoryFile

    b, h, w = bands.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.tif")
        with MemoryFile() as mf:
            with mf.open(driver="GTiff", width=w, height=h, count=b, dtype=bands.dtype.name, crs=crs,
                         transform=transform, nodata=nodata) as ds:
                ds.write(bands)
                if colormap:
                    ds.write_colormap(1, colormap)
                for i, d in enumerate(descriptions or []):
                    ds.set_band_description(i + 1, d)
                if tags:
                    ds.update_tags(**{k: str(v) for k, v in tags.items()})
                rasterio.shutil.copy(ds, path, driver="COG", **PROFILE,
                                     OVERVIEW_RESAMPLING="MODE" if classes else "AVERAGE",
                                     RESAMPLING="NEAREST" if classes else "AVERAGE")
        data = open(path, "rb").read()
    storage.write_bytes(uri, data)
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def validate(uri: str) -> list[str]:
    """rio-cogeo's verdict on a COG: its errors (none: valid)."""
    from rio_cogeo.cogeo import cog_validate

    loc = storage.parse(uri)
    valid, errors, _ = cog_validate(loc.gdal_path if loc.is_s3 else loc.uri, quiet=True)
    return [] if valid else list(errors) or ["not a valid COG"]


def write_vrt(uri: str, blocks: list[dict], width: int, height: int, transform, crs: str, dtype: str, bands: int,
              nodata: int, colormap: dict[int, tuple] | None = None) -> None:
    """A VRT mosaic of block COGs (``blocks``: ``name`` beside the VRT, ``row0``, ``rows``),
    each a band of rows of the whole ``width`` x ``height`` raster."""
    from xml.sax.saxutils import escape

    from rasterio.crs import CRS

    gdal_type = {"uint8": "Byte", "uint16": "UInt16"}[dtype]
    a, b, c, d, e, f = list(transform)[:6]
    out = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
           f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(CRS.from_user_input(crs).to_wkt())}</SRS>',
           f"  <GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>"]
    for band in range(1, bands + 1):
        out.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{band}">')
        out.append(f"    <NoDataValue>{nodata}</NoDataValue>")
        if colormap and band == 1:
            out.append("    <ColorInterp>Palette</ColorInterp>\n    <ColorTable>")
            for v in range(max(colormap) + 1):
                r, g, bl, al = colormap.get(v, (0, 0, 0, 0))
                out.append(f'      <Entry c1="{r}" c2="{g}" c3="{bl}" c4="{al}"/>')
            out.append("    </ColorTable>")
        for blk in blocks:
            out.append(f'    <SimpleSource><SourceFilename relativeToVRT="1">{escape(blk["name"])}</SourceFilename>'
                       f"<SourceBand>{band}</SourceBand>"
                       f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{blk["rows"]}"/>'
                       f'<DstRect xOff="0" yOff="{blk["row0"]}" xSize="{width}" ySize="{blk["rows"]}"/></SimpleSource>')
        out.append("  </VRTRasterBand>")
    out.append("</VRTDataset>")
    storage.write_bytes(uri, ("\n".join(out) + "\n").encode())

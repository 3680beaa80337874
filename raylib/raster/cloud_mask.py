"""A STAC item's quality asset as per-tile cloud, shadow and snow fractions.

The asset is found by key (``cloud_asset``; by default Sentinel-2 L2A's ``scl`` or Landsat
Collection 2's ``qa_pixel``, or any asset whose classification names cloud), and decoded
by what it says of itself, the STAC classification extension, else by its well-known layout:

- **classes** (``classification:classes``; Sentinel-2 SCL by default): each pixel value is
  one class; classes named cloud / cirrus are cloud, cloud shadow is shadow, snow / ice is
  snow, no data / fill is nodata. A value that is no class of the asset makes the tile an
  error row (reason ``cloud_mask``): the asset is not what its item says.
- **bit fields** (``classification:bitfields``; Landsat Collection 2 QA_PIXEL by default):
  one-bit fields named cloud, dilated cloud, cirrus, cloud shadow, snow and fill.

The decoder is a small JSON-able dict that travels in the read spec; ``fractions`` applies
it to a block of tiles."""

from __future__ import annotations

import numpy as np

from raylib.errors import InputError
from raylib.raster import stac_vrt

CATEGORIES = ("cloud", "shadow", "snow", "nodata")
AUTO_KEYS = ("scl", "qa_pixel", "cloud_mask", "cloud")

# Sentinel-2 L2A scene classification (ESA's product specification)
SCL = {"cloud": [8, 9, 10], "shadow": [3], "snow": [11], "nodata": [0], "known": list(range(12))}
# Landsat Collection 2 QA_PIXEL (USGS): bit 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow, 5 snow
QA_PIXEL = {"cloud": (1 << 1) | (1 << 2) | (1 << 3), "shadow": 1 << 4, "snow": 1 << 5, "nodata": 1 << 0}

_FIX = ("set cloud_asset to an asset whose classification:classes or classification:bitfields name cloud, "
        "to scl / qa_pixel, or to none (no cloud screening)")


def _category(name: str) -> str | None:
    """What a class or bit field called ``name`` is (None: clear or not screened)."""
    n = name.lower().replace("-", "_").replace(" ", "_")
    if n.startswith(("not_", "no_cloud", "clear")) or "confidence" in n or "probability" in n and "cloud" not in n:
        return None
    if n in ("nodata", "no_data", "fill", "missing") or n.endswith("_fill"):
        return "nodata"
    if "shadow" in n:
        return "shadow"
    if "cloud" in n or "cirrus" in n:
        return "cloud"
    if "snow" in n or n == "ice":
        return "snow"
    return None


def find(item: dict, key: str = "auto") -> tuple[str, dict] | None:
    """The item's quality asset, ``(key, asset)``: the one keyed ``key``, or with ``auto``
    the first of ``AUTO_KEYS`` or an asset whose classes or bit fields name cloud (None when
    the item has none; an asked-for key it lacks raises ``InputError``)."""
    assets = item.get("assets") or {}
    if key == "none":
        return None
    if key != "auto":
        for k, a in assets.items():
            if k.lower() == key.lower():
                return k, a
        raise InputError(f"STAC item {item.get('id')} has no asset {key!r} (cloud_asset; it has: "
                         f"{', '.join(sorted(assets))}).", _FIX, reason="band_mismatch")
    lower = {k.lower(): k for k in assets}
    for k in AUTO_KEYS:
        if k in lower and stac_vrt._is_raster(assets[lower[k]]):
            return lower[k], assets[lower[k]]
    for k, a in assets.items():
        names = [c.get("name", "") for c in a.get("classification:classes") or []]
        names += [f.get("name", "") for f in a.get("classification:bitfields") or []]
        if stac_vrt._is_raster(a) and any(_category(n) == "cloud" for n in names):
            return k, a
    return None


def decoder(item: dict, key: str, asset: dict) -> dict:
    """How to read the asset's values: ``{"asset", "classes": {category: [values]}, "known":
    [values]}`` or ``{"asset", "bits": {category: mask}}``. Raises ``InputError`` (reason
    ``cloud_mask``) for an asset whose classes name no cloud, or that says nothing and is
    not a known layout."""
    classes = asset.get("classification:classes")
    bitfields = asset.get("classification:bitfields")
    if classes:
        out: dict = {c: [] for c in CATEGORIES}
        known = []
        for c in classes:
            try:
                v = int(c["value"])
            except (KeyError, TypeError, ValueError):
                raise InputError(f"STAC item {item.get('id')}: a class of cloud asset {key!r} has no integer value "
                                 f"({c}).", _FIX, reason="cloud_mask") from None
            known.append(v)
            cat = _category(str(c.get("name") or c.get("description") or ""))
            if cat:
                out[cat].append(v)
        nodata = asset.get("nodata", (asset.get("raster:bands") or [{}])[0].get("nodata"))
        if nodata is not None and int(nodata) not in out["nodata"]:
            out["nodata"].append(int(nodata))
            known.append(int(nodata))
        if not out["cloud"]:
            names = ", ".join(str(c.get("name")) for c in classes)
            raise InputError(f"STAC item {item.get('id')}: cloud asset {key!r} has classes {names}, none of them a "
                             "cloud.", _FIX, reason="cloud_mask")
        return {"asset": key, "classes": out, "known": sorted(set(known))}
    if bitfields:
        masks = {c: 0 for c in CATEGORIES}
        for f in bitfields:
            cat = _category(str(f.get("name", "")))
            if cat and int(f.get("length", 1)) == 1:
                masks[cat] |= 1 << int(f["offset"])
        if not masks["cloud"]:
            names = ", ".join(str(f.get("name")) for f in bitfields)
            raise InputError(f"STAC item {item.get('id')}: cloud asset {key!r} has bit fields {names}, no one-bit "
                             "field of them a cloud.", _FIX, reason="cloud_mask")
        return {"asset": key, "bits": masks}
    if key.lower() == "scl":
        return {"asset": key, "classes": {c: SCL[c] for c in CATEGORIES}, "known": SCL["known"]}
    if key.lower() == "qa_pixel":
        return {"asset": key, "bits": dict(QA_PIXEL)}
    raise InputError(f"STAC item {item.get('id')}: cloud asset {key!r} has no classification:classes or "
                     "classification:bitfields, and is not a layout this program knows (scl, qa_pixel).", _FIX,
                     reason="cloud_mask")


def band(item: dict, key: str = "auto") -> tuple[stac_vrt.BandAsset, dict] | None:
    """The quality asset as a categorical VRT band (resampled nearest, never averaged) and
    its decoder; None when the item has none (``key`` auto) or with ``key`` none."""
    found = find(item, key)
    if found is None:
        return None
    k, a = found
    dec = decoder(item, k, a)
    return stac_vrt.BandAsset(name=f"cloud mask ({k})", asset=k, href=a["href"], band=1, categorical=True), dec


def fractions(values: np.ndarray, valid: np.ndarray, dec: dict) -> dict:
    """Per tile, the shares of its valid pixels (``valid``; ``values`` (N, T, T), the asset's
    values) that are cloud, shadow and snow (NaN where a tile has no valid pixel of the
    mask), and ``unknown``: per tile the first value that is no class of the asset (-1:
    none)."""
    v = values.astype(np.int64)
    n = len(v)
    if "bits" in dec:
        hit = {c: (v & int(dec["bits"][c])) != 0 if dec["bits"][c] else np.zeros(v.shape, bool) for c in CATEGORIES}
        unknown = np.full(n, -1, np.int64)
    else:
        hit = {c: np.isin(v, dec["classes"][c]) for c in CATEGORIES}
        bad = ~np.isin(v, dec["known"]) & valid
        unknown = np.where(bad.any(axis=(1, 2)), np.where(bad, v, np.iinfo(np.int64).max).min(axis=(1, 2)), -1)
    counted = valid & ~hit["nodata"]
    total = counted.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {c: np.where(total > 0, (hit[c] & counted).sum(axis=(1, 2)) / total, np.nan).astype(np.float32)
               for c in ("cloud", "shadow", "snow")}
    out["unknown"] = unknown
    return out

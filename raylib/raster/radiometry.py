"""Sensor presets: digital numbers -> reflectance, as one linear map per band.

A preset turns a scene's pixel values into top-of-atmosphere (Level-1) or surface
(Level-2) reflectance, ``rho = a * DN + c`` per band, from the scene's metadata when it is
found beside the file and from the published defaults otherwise:

* ``landsat-oli-l1`` (Landsat 8/9 OLI, Level-1 DN): ``rho = (M * DN + A) / sin(sun elevation)``
  with ``M = 2e-5``, ``A = -0.1`` (the same for every reflective OLI band) or the MTL's
  ``REFLECTANCE_MULT/ADD_BAND_n``.
* ``landsat-etm-l1`` / ``landsat-tm-l1`` (Landsat 7 ETM+ / 4-5 TM, Level-1 DN): radiance
  ``L = G * DN + B`` (MTL ``RADIANCE_MULT/ADD_BAND_n``, else the handbook's LMIN/LMAX,
  ETM+ in the usual gain setting: high gain except band 4), then
  ``rho = pi * L * d^2 / (ESUN * sin(sun elevation))``.
* ``landsat-c2-l2`` (Collection 2 Level-2 surface reflectance): ``rho = 2.75e-5 * DN - 0.2``.
* ``sentinel2-l1c`` / ``sentinel2-l2a``: ``rho = (DN - 1000) / 10000`` (processing baseline
  04.00 and later); ``sentinel2-l1c-pre04`` / ``sentinel2-l2a-pre04``: ``DN / 10000``.
* ``naip``: NAIP is not radiometrically calibrated; it is an 8-bit display product like the
  EuroSAT RGB JPEGs, so it goes to the model as ``DN / 255`` (no reflectance).

The sun elevation comes from the MTL, else from the acquisition date in a Landsat product
id (``LC08_L1TP_224078_20200518_...``) and the scene centre at the WRS-2 overpass time
(about 10:00 local solar time), else from ``sun_elevation`` in the config; with none of
them no sun-angle correction is made (recorded in the run summary).

A model records how its training images relate to reflectance (``bands.reflectance``:
``x = rho * gain + offset`` per channel): EuroSAT RGB JPEGs are Sentinel-2 L1C reflectance
stretched linearly to 8 bits (``eurosat_rgb_stretch`` recovers it from the EuroSAT MS
sample), so ``scaling: reflectance`` brings a scene to the model the way its training
patches were made.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from dataclasses import dataclass, field

import numpy as np

from raylib.errors import ConfigError
from raylib.io import storage

log = logging.getLogger(__name__)

# Landsat 7 ETM+ (Handbook table 11.2, LMIN/LMAX after July 2000; Chander et al. 2009 ESUN)
ETM = {  # band: (LMIN, LMAX low gain, LMAX high gain, ESUN)
    1: (-6.2, 293.7, 191.6, 1997.0), 2: (-6.4, 300.9, 196.5, 1812.0), 3: (-5.0, 234.4, 152.9, 1533.0),
    4: (-5.1, 241.1, 157.4, 1039.0), 5: (-1.0, 47.57, 31.06, 230.8), 7: (-0.35, 16.54, 10.80, 84.90),
}
ETM_LOW_GAIN = {4}  # the usual setting over land: high gain, band 4 low (bright vegetation)
# Landsat 5 TM (Chander et al. 2009, after 2003), also used for Landsat 4
TM = {1: (-1.52, 193.0, 1983.0), 2: (-2.84, 365.0, 1796.0), 3: (-1.17, 264.0, 1536.0),
      4: (-1.51, 221.0, 1031.0), 5: (-0.37, 30.2, 220.0), 7: (-0.15, 16.5, 83.44)}
STACK_ORDER = {"landsat-etm-l1": [1, 2, 3, 4, 5, 7], "landsat-tm-l1": [1, 2, 3, 4, 5, 7]}

# the scene's own band scale and offset give reflectance (a STAC item's raster:bands, a
# GeoTIFF's scale/offset tags): chosen when the file name names no sensor and a band has them
FILE_SCALE = "file-scale"
SENSORS = ("landsat-oli-l1", "landsat-etm-l1", "landsat-tm-l1", "landsat-c2-l2", "sentinel2-l1c", "sentinel2-l2a",
           "sentinel2-l1c-pre04", "sentinel2-l2a-pre04", "naip", FILE_SCALE)
# sensors whose scenes ``scaling: auto`` brings in as reflectance (BENCHMARKS.md "Map accuracy"):
# NAIP maps better as its 8-bit display values than matched (Chesapeake), OLI and the
# calibrated products go as reflectance; Landsat 7/4-5 DN (uncertain gains and sun angle
# without an MTL) mapped better with per-scene match on NC Wake.
AUTO_REFLECTANCE = ("naip", "landsat-oli-l1", "landsat-c2-l2", "sentinel2-l1c", "sentinel2-l2a",
                    "sentinel2-l1c-pre04", "sentinel2-l2a-pre04", FILE_SCALE)
# 8-bit display products (colour-balanced for viewing, not calibrated): their DN go to the model as
# they are, and a quick-look stretches their three bands together (eval.reports.stretch)
DISPLAY_SENSORS = ("naip",)
# the pixel type each preset is made for (a scene of another type is refused with a message)
SENSOR_DTYPES = {"landsat-etm-l1": ("uint8",), "landsat-tm-l1": ("uint8",), "naip": ("uint8",)}
LANDSAT_ID = re.compile(r"\b(L[COTEM]0[4-9])_(L1\w\w|L2\w\w)_\d{6}_(\d{8})_")
SENTINEL2_ID = re.compile(r"\bS2[ABCD]_MSI(L1C|L2A)_(\d{8})T\d{6}_N(\d{4})")


@dataclass
class SensorTransform:
    """``rho = a * DN + c`` for the selected bands of one scene, and how it was found."""

    a: np.ndarray
    c: np.ndarray
    sensor: str
    notes: dict = field(default_factory=dict)
    display: bool = False  # an 8-bit display product (no reflectance): DN / 255 goes to the model

    def select(self, positions: list[int]) -> "SensorTransform":
        """The transform of some of the bands (positions into this one's)."""
        return SensorTransform(self.a[positions], self.c[positions], self.sensor, self.notes, self.display)


def detect_sensor(uri: str) -> str | None:
    """The preset a file name implies (Landsat / Sentinel-2 product ids, NAIP quarter quads)."""
    name = storage.basename(uri)
    m = LANDSAT_ID.search(name)
    if m:
        mission, level = m.group(1), m.group(2)
        if level.startswith("L2"):
            return "landsat-c2-l2"
        return {"LC08": "landsat-oli-l1", "LC09": "landsat-oli-l1", "LO08": "landsat-oli-l1", "LO09": "landsat-oli-l1",
                "LE07": "landsat-etm-l1", "LT05": "landsat-tm-l1", "LT04": "landsat-tm-l1",
                "LM05": None, "LM04": None}.get(mission)
    m = SENTINEL2_ID.search(name)
    if m:
        level = "l1c" if m.group(1) == "L1C" else "l2a"
        return f"sentinel2-{level}" + ("" if int(m.group(3)) >= 400 else "-pre04")
    if re.match(r"^m_\d{7}_[ns][ew]_\d{2}_", name):
        return "naip"
    return None


BAND_PRESET_SENSORS = {"naip": "naip", "landsat8-b234": "landsat-oli-l1", "sentinel2-eurosat": "sentinel2-l1c-pre04"}


# Sentinel-2 processing baseline 04.00 (the -1000 DN offset) began on 2022-01-25
S2_BASELINE_04 = dt.date(2022, 1, 25)


def sensor_of_item(item: dict) -> tuple[str | None, str]:
    """The preset a STAC item names for itself (platform, constellation, instruments,
    collection, processing level, product id, processing baseline), and the rule that
    recognised it; (None, why not) when its properties do not name a known sensor and level."""
    props = item.get("properties") or {}
    words = " ".join(str(v) for v in [item.get("collection"), item.get("id"), props.get("platform"),
                                      props.get("constellation"), props.get("processing:level"),
                                      props.get("s2:product_type"), props.get("s2:product_uri"),
                                      props.get("landsat:correction"), *(props.get("instruments") or [])]
                     if v).lower()
    said = ", ".join(f"{k}={props[k]}" for k in ("platform", "constellation", "instruments", "processing:level")
                     if props.get(k)) + (f", collection={item['collection']}" if item.get("collection") else "")
    if "sentinel-2" in words or "sentinel2" in words or " msi" in f" {words}" or words.startswith("s2"):
        level = "l2a" if "l2a" in words else ("l1c" if "l1c" in words else None)
        if level is None:
            return None, f"a Sentinel-2 item ({said}) of unknown processing level (L1C or L2A)"
        baseline = props.get("s2:processing_baseline")
        m = re.search(r"_N(\d{4})", str(props.get("s2:product_uri") or ""))
        if baseline is not None:
            pre04, how = float(baseline) < 4.0, f"processing baseline {baseline}"
        elif m:
            pre04, how = int(m.group(1)) < 400, f"product id baseline N{m.group(1)}"
        else:
            when = str(props.get("datetime") or props.get("start_datetime") or "")[:10]
            try:
                pre04, how = dt.date.fromisoformat(when) < S2_BASELINE_04, f"acquired {when} (baseline 04.00 from " \
                                                                            f"{S2_BASELINE_04})"
            except ValueError:
                return None, f"a Sentinel-2 {level.upper()} item ({said}) without a date or processing baseline"
        sensor = f"sentinel2-{level}" + ("-pre04" if pre04 else "")
        return sensor, f"STAC item: Sentinel-2 {level.upper()} ({said}; {how})"
    if "landsat" in words and ("oli" in words or "landsat-8" in words or "landsat-9" in words):
        if "l2" in words.replace("l2a", ""):
            return "landsat-c2-l2", f"STAC item: Landsat 8/9 Collection 2 Level-2 ({said})"
        if "l1" in words:
            return "landsat-oli-l1", f"STAC item: Landsat 8/9 OLI Level-1 ({said})"
        return None, f"a Landsat 8/9 item ({said}) of unknown processing level"
    return None, f"no known sensor in the item's properties ({said or 'none'})"


def _mtl(uri: str) -> dict:
    """Key/value pairs of a Landsat MTL (``.txt`` or ``.json``) beside the scene, or {}."""
    base = re.sub(r"(_B\d+|_SR_B\d+|_T1|_T2|_RT)?(\.[^.]+)?$", "", storage.basename(uri))
    folder = uri[: len(uri) - len(storage.basename(uri))]
    m = LANDSAT_ID.search(storage.basename(uri))
    stems = {base, storage.basename(uri).rsplit(".", 1)[0]}
    if m:
        stems.add(storage.basename(uri)[m.start():].split(".")[0].rsplit("_B", 1)[0])
    for stem in sorted(stems):
        for suffix in ("_MTL.txt", "_MTL.json"):
            cand = folder + stem + suffix
            try:
                if not storage.exists(cand):
                    continue
                text = storage.read_bytes(cand).decode(errors="replace")
            except Exception:
                continue
            if suffix.endswith(".json"):
                flat: dict = {}

                def walk(d):
                    for k, v in d.items():
                        walk(v) if isinstance(v, dict) else flat.__setitem__(k, v)

                walk(json.loads(text))
                return {k: str(v) for k, v in flat.items()}
            return {k.strip(): v.strip().strip('"') for k, v in
                    (line.split("=", 1) for line in text.splitlines() if "=" in line)}
    return {}


def solar_elevation(date: dt.date, lat: float, lon: float, solar_hour: float = 10.0) -> float:
    """Sun elevation (degrees) at ``solar_hour`` local solar time (Landsat's WRS-2 overpass is
    near 10:00), from the declination of the day (accurate to about a degree)."""
    doy = date.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(math.radians(360.0 / 365.0 * (284 + doy)))
    hour = math.radians(15.0 * (solar_hour - 12.0))
    phi = math.radians(lat)
    s = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour)
    return math.degrees(math.asin(max(-1.0, min(1.0, s))))


def earth_sun_distance(date: dt.date) -> float:
    """Earth-Sun distance in astronomical units."""
    return 1.0 - 0.01672 * math.cos(math.radians(0.9856 * (date.timetuple().tm_yday - 4)))


def _acquired(uri: str, mtl: dict) -> dt.date | None:
    if mtl.get("DATE_ACQUIRED"):
        try:
            return dt.date.fromisoformat(mtl["DATE_ACQUIRED"][:10])
        except ValueError:
            pass
    m = LANDSAT_ID.search(storage.basename(uri))
    if m:
        return dt.datetime.strptime(m.group(3), "%Y%m%d").date()
    return None


def _sun(uri: str, mtl: dict, centre_lonlat, sun_elevation: float | None, notes: dict) -> tuple[float, float]:
    """(sin of the sun elevation, Earth-Sun distance), recording where they came from."""
    date = _acquired(uri, mtl)
    d = earth_sun_distance(date) if date else 1.0
    notes["earth_sun_distance"] = round(d, 5) if date else "unknown (1 AU)"
    if mtl.get("SUN_ELEVATION"):
        elev, notes["sun_elevation_source"] = float(mtl["SUN_ELEVATION"]), "MTL"
    elif sun_elevation is not None:
        elev, notes["sun_elevation_source"] = float(sun_elevation), "config"
    elif date and centre_lonlat:
        elev = solar_elevation(date, centre_lonlat[1], centre_lonlat[0])
        notes["sun_elevation_source"] = f"computed for {date.isoformat()} at the scene centre, 10:00 local solar time"
    else:
        notes["sun_elevation"], notes["sun_elevation_source"] = None, "unknown: no sun-angle correction"
        return 1.0, d
    notes["sun_elevation"] = round(elev, 2)
    if elev <= 0:
        raise ConfigError(f"The sun elevation of {uri} is {elev:.1f} degrees (night).", "set sun_elevation.")
    return math.sin(math.radians(elev)), d


def sensor_band_numbers(sensor: str, file_bands: list[int], descriptions, count: int) -> list[int]:
    """The sensor's band numbers of the selected 1-based file bands: from band descriptions
    ('B3 red', 'SR_B4'), else the usual stack order of the sensor's reflective bands."""
    nums = []
    for b in file_bands:
        desc = descriptions[b - 1] if descriptions and b - 1 < len(descriptions) else None
        m = re.search(r"\bB(?:AND)?_?(\d+)", str(desc or ""), re.IGNORECASE)
        if m:
            nums.append(int(m.group(1)))
        elif sensor in STACK_ORDER and count <= len(STACK_ORDER[sensor]):
            nums.append(STACK_ORDER[sensor][b - 1])
        else:
            nums.append(b)
    return nums


def file_scale(scales, offsets) -> tuple[np.ndarray, np.ndarray] | None:
    """The file's per-band (scale, offset) (GDAL band metadata; a STAC item's
    ``raster:bands`` in its VRT), or None when every band is 1 and 0 (none given)."""
    a = np.asarray([1.0 if s is None else float(s) for s in scales], float)
    c = np.asarray([0.0 if o is None else float(o) for o in offsets], float)
    if np.all(a == 1.0) and np.all(c == 0.0):
        return None
    return a, c


def transform(sensor: str, uri: str, file_bands: list[int], descriptions, count: int, dtype: str,
              centre_lonlat=None, sun_elevation: float | None = None,
              file_scales: tuple[np.ndarray, np.ndarray] | None = None) -> SensorTransform:
    """The DN -> reflectance map of the selected bands of one scene (``file_scales``: the
    file's own band scale and offset, for ``file-scale``)."""
    if sensor not in SENSORS:
        raise ConfigError(f"Unknown sensor {sensor!r}.", f"use one of {', '.join(SENSORS)}, or leave it unset.")
    if sensor == FILE_SCALE:
        if file_scales is None:
            raise ConfigError(f"sensor {FILE_SCALE}: scene {uri} has no band scale or offset.",
                              "leave sensor unset, or give the scene's sensor.")
        idx = [b - 1 for b in file_bands]
        return SensorTransform(file_scales[0][idx], file_scales[1][idx], sensor,
                               {"sensor": sensor, "source": "the bands' scale and offset (STAC raster:bands)"})
    if sensor in SENSOR_DTYPES and dtype not in SENSOR_DTYPES[sensor]:
        raise ConfigError(f"Scene {uri} is {dtype}, but sensor {sensor} is {SENSOR_DTYPES[sensor][0]}.",
                          "set the right sensor, or scaling: match.")
    k = len(file_bands)
    notes: dict = {"sensor": sensor}
    if sensor in DISPLAY_SENSORS:
        return SensorTransform(np.full(k, 1 / 255.0), np.zeros(k), sensor, notes, display=True)
    if sensor.startswith("sentinel2"):
        off = 0.0 if sensor.endswith("pre04") else -1000.0
        notes["offset"] = off
        return SensorTransform(np.full(k, 1e-4), np.full(k, off * 1e-4), sensor, notes)
    if sensor == "landsat-c2-l2":
        return SensorTransform(np.full(k, 2.75e-5), np.full(k, -0.2), sensor, notes)
    mtl = _mtl(uri)
    notes["metadata"] = "MTL" if mtl else "published defaults"
    sin_e, d = _sun(uri, mtl, centre_lonlat, sun_elevation, notes)
    bands = sensor_band_numbers(sensor, file_bands, descriptions, count)
    if sensor == "landsat-oli-l1":  # reflectance rescaling already holds the Earth-Sun distance
        notes.pop("earth_sun_distance", None)
    else:
        notes["sensor_bands"] = bands
    a, c = np.zeros(k), np.zeros(k)
    for i, b in enumerate(bands):
        if sensor == "landsat-oli-l1":
            m = float(mtl.get(f"REFLECTANCE_MULT_BAND_{b}", 2.0e-5))
            ad = float(mtl.get(f"REFLECTANCE_ADD_BAND_{b}", -0.1))
            a[i], c[i] = m / sin_e, ad / sin_e
            continue
        table = ETM if sensor == "landsat-etm-l1" else TM
        if b not in table:
            raise ConfigError(f"Band {b} of {sensor} has no reflectance calibration (thermal or panchromatic?).",
                              "select reflective bands, or use scaling: match.")
        if f"RADIANCE_MULT_BAND_{b}" in mtl:
            g, bias = float(mtl[f"RADIANCE_MULT_BAND_{b}"]), float(mtl[f"RADIANCE_ADD_BAND_{b}"])
            esun = table[b][-1]
        elif sensor == "landsat-etm-l1":
            lmin, lo, hi, esun = table[b]
            lmax = lo if b in ETM_LOW_GAIN else hi
            g = (lmax - lmin) / 254.0  # QCAL 1..255
            bias = lmin - g
        else:
            lmin, lmax, esun = table[b]
            g, bias = (lmax - lmin) / 255.0, lmin  # QCAL 0..255
        f = math.pi * d * d / (esun * sin_e)
        a[i], c[i] = g * f, bias * f
    return SensorTransform(a, c, sensor, notes)


# --------------------------------------------------------------------------- the model side


EUROSAT_RGB_STRETCH = {  # fitted by eurosat_rgb_stretch on ../shared/data (270 patch pairs); see its docstring
    "gain": [3.5507, 3.6131, 3.6174], "offset": [0.01036, 0.00475, 0.0044],
    "source": "EuroSAT RGB JPEG = Sentinel-2 L1C TOA reflectance stretched linearly (about 0 -> 0, 0.275 -> 255)",
}


def eurosat_rgb_stretch(ms_dir: str, rgb_dir: str, bands=(4, 3, 2)) -> dict:
    """Recover the linear stretch that made the EuroSAT RGB JPEGs from L1C reflectance: a
    least-squares line per channel between the MS patch's band (reflectance x 10^4) and the
    same patch's JPEG channel, over the pixels the JPEG did not clip (2 < v < 253).
    Returns ``{"gain", "offset"}`` such that ``jpeg / 255 = rho * gain + offset``."""
    import glob
    import os

    import rasterio
    from PIL import Image

    xs = [[] for _ in bands]
    ys = [[] for _ in bands]
    for f in sorted(glob.glob(os.path.join(ms_dir, "*", "*.tif"))):
        cls = os.path.basename(os.path.dirname(f))
        jpg = os.path.join(rgb_dir, cls, os.path.basename(f)[:-4] + ".jpg")
        if not os.path.exists(jpg):
            continue
        with rasterio.open(f) as ds:
            ms = ds.read(list(bands)).astype(np.float64)
        rgb = np.asarray(Image.open(jpg).convert("RGB"), np.float64)
        for k in range(len(bands)):
            xs[k].append(ms[k].ravel())
            ys[k].append(rgb[..., k].ravel())
    if not xs[0]:
        raise ConfigError(f"No EuroSAT MS/RGB patch pairs under {ms_dir} and {rgb_dir}.", "check the folders.")
    gain, offset = [], []
    for k in range(len(bands)):
        x, y = np.concatenate(xs[k]), np.concatenate(ys[k])
        m = (y > 2) & (y < 253)
        slope, icept = np.polyfit(x[m], y[m], 1)
        gain.append(round(float(slope * 1e4 / 255.0), 4))
        offset.append(round(float(icept / 255.0), 5))
    return {"gain": gain, "offset": offset, "pairs": len(xs[0]),
            "source": "EuroSAT RGB JPEG vs EuroSAT MS bands (4, 3, 2), least squares on unclipped pixels"}


# --------------------------------------------------------------------------- spectral roles

ROLE_PATTERNS = (  # (role, regex on a band description); nir before red: "near infrared" holds "red"
    ("nir", re.compile(r"\b(nir|near[ _-]?infra[ _-]?red|b0?8a?\b)", re.IGNORECASE)),
    ("swir16", re.compile(r"\b(swir ?1|swir16|swir_1|b11\b)", re.IGNORECASE)),
    ("red", re.compile(r"\bred\b", re.IGNORECASE)),
    ("green", re.compile(r"\bgreen\b", re.IGNORECASE)),
)
STACK_ROLES = {  # the usual file layouts of each sensor: band count -> role -> 1-based band
    "naip": {4: {"red": 1, "green": 2, "nir": 4}},
    "landsat-etm-l1": {6: {"green": 2, "red": 3, "nir": 4, "swir16": 5}, 7: {"green": 2, "red": 3, "nir": 4, "swir16": 5}},
    "landsat-tm-l1": {6: {"green": 2, "red": 3, "nir": 4, "swir16": 5}, 7: {"green": 2, "red": 3, "nir": 4, "swir16": 5}},
    "sentinel2-l1c": {13: {"green": 3, "red": 4, "nir": 8, "swir16": 11}},
    "sentinel2-l2a": {12: {"green": 3, "red": 4, "nir": 8, "swir16": 11}},
}


def spectral_roles(sensor: str | None, descriptions, count: int, colorinterp=None,
                   given: dict[str, int] | None = None) -> dict[str, int]:
    """Which 1-based file band is red, green, nir and swir16: ``given`` (the config), else
    the band descriptions ('B4 NIR', 'SWIR1', 'red'), else colour interpretation, else the
    sensor's usual stack layout for this band count."""
    if given:
        bad = {r: b for r, b in given.items() if r not in ("red", "green", "nir", "swir16") or not 1 <= b <= count}
        if bad:
            raise ConfigError(f"spectral_bands {bad}: roles are red, green, nir, swir16 and bands 1..{count}.",
                              "fix spectral_bands.")
        return dict(given)
    roles: dict[str, int] = {}
    for i, d in enumerate(descriptions or ()):
        for role, pat in ROLE_PATTERNS:
            if d and pat.search(str(d)):
                roles.setdefault(role, i + 1)
                break
    for i, c in enumerate(colorinterp or ()):
        name = str(c).split(".")[-1]
        if name in ("red", "green"):
            roles.setdefault(name, i + 1)
    for role, band in STACK_ROLES.get((sensor or "").replace("-pre04", ""), {}).get(count, {}).items():
        roles.setdefault(role, band)
    return roles

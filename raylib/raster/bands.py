"""Band selection/order per sensor and radiometric scaling into what a model expects.

A model stores, per input channel, the mean and std (in [0, 1] units) of the images it was
trained on.  A scene's bands are selected (1-based indices in the file, in the model's
channel order) and scaled:

* ``match`` (default): each band's valid-pixel mean/std in this scene (from a decimated
  read) is mapped linearly onto the model's stored mean/std.  Works for uint8 imagery,
  uint16 digital numbers and reflectance alike, at the price of making the scaling depend
  on the scene's content.
* ``dtype``: divide by the dtype's maximum (uint8 -> /255, uint16 -> /65535) or by
  ``scale`` when given (e.g. 10000 for reflectance x 10000).

Fill: a pixel whose selected bands all equal the scene's nodata value (or the configured
``fill_value``) is fill, reported as ``fill_fraction`` (of the tile's pixels inside the
scene).  A partial tile (clipped by the scene edge, or with fill inside the scene) is
classified from its valid pixels: fill and padding are replaced by the valid pixels
mirrored across the valid region's border (``mirror_fill``), so that the padding carries
the tile's own colours and texture instead of a flat colour (a flat colour reads as water
to a model trained on EuroSAT).  A tile without any valid pixel is set to the model's mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raylib.config.reading import BAND_PRESETS as PRESETS  # (the settings' own vocabulary, declared with them)
from raylib.errors import ConfigError, InputError


def band_indices(bands, needed: int, colorinterp=None) -> list[int]:
    """1-based band indices (in the model's channel order) that ``bands`` names: a list, a
    preset, or ``None``/``auto`` (colour-interpretation tags, else bands 1..needed)."""
    if bands is None or bands == "auto":
        ci = [str(c).split(".")[-1] for c in (colorinterp or [])]
        if all(k in ci for k in ("red", "green", "blue")) and needed == 3:
            chosen = [ci.index("red") + 1, ci.index("green") + 1, ci.index("blue") + 1]
        else:
            chosen = list(range(1, needed + 1))
    elif isinstance(bands, str):
        if bands not in PRESETS:
            raise ConfigError(f"Unknown band preset {bands!r}.", f"use one of {sorted(PRESETS)} or a list like [3, 2, 1].")
        chosen = PRESETS[bands]
    else:
        chosen = [int(b) for b in bands]
    if len(chosen) != needed:
        raise ConfigError(
            f"bands {chosen} selects {len(chosen)} band(s) but the model takes {needed}.",
            f"give {needed} band indices (1-based), in the model's channel order.",
        )
    return chosen


def resolve_bands(bands, count: int, uri: str, needed: int, colorinterp=None) -> list[int]:
    """The 1-based band indices to read for one scene of ``count`` bands."""
    chosen = band_indices(bands, needed, colorinterp)
    if count < max(chosen) or min(chosen) < 1:
        raise InputError(
            f"Scene {uri} has {count} band(s) but bands {chosen} (1-based) are needed"
            f" for the model's {needed} channel(s).",
            "give a scene with those bands, or set bands to indices that exist in this scene.",
            reason="band_mismatch",
        )
    return chosen


@dataclass
class Scaler:
    """Per-scene linear mapping raw values -> model input in [0, 1]."""

    gain: np.ndarray  # (C,)
    offset: np.ndarray  # (C,)
    fill_value: float | None
    target_mean: np.ndarray  # (C,)

    def fill_many(self, raw: np.ndarray, inside: np.ndarray,
                  out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The tiles in their own type with the pixels that have no valid value (fill, or
        outside the scene) ``mirror_fill``ed from the valid ones: raw (N, C, H, W), inside
        (N, H, W) -> (raw, fill_fraction (N,)), written into ``out`` when given. A tile
        without any valid pixel is left as it is (it is an ``all_nodata`` row, never seen
        by a model). Scaling the result (``scale``) gives ``apply_many``'s pixels exactly:
        mirroring copies values, scaling maps each value alone."""
        x = raw if out is None else out
        if out is not None:
            np.copyto(out, raw, casting="unsafe")
        valid = valid_mask(raw, inside, self.fill_value)
        n_inside = inside.sum(axis=(1, 2))
        n_valid = valid.sum(axis=(1, 2))
        fill_fraction = np.where(n_inside > 0, 1.0 - n_valid / np.maximum(n_inside, 1), 1.0)
        todo = np.flatnonzero((n_valid < valid[0].size) & (n_valid > 0))
        if len(todo) and x is raw:
            x = raw.copy()
        for i in todo:
            mirror_fill(x[i], valid[i])
        return x, fill_fraction.astype(np.float32)

    def scale(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``clip(raw * gain + offset, 0, 1)`` in float32 (N, C, H, W), per band."""
        x = np.empty(raw.shape, np.float32) if out is None else out
        np.multiply(raw, self.gain[None, :, None, None], out=x)  # the cast happens inside the multiply
        x += self.offset[None, :, None, None]
        np.clip(x, 0.0, 1.0, out=x)
        return x

    def apply_many(self, raw: np.ndarray, inside: np.ndarray,
                   out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``apply`` for a stack: raw (N, C, H, W), inside (N, H, W) -> (float32 (N, C, H, W),
        fill_fraction (N,)), in one vectorised pass (written into ``out`` when given); the
        pixels without a valid value (fill, or outside the scene) are ``mirror_fill``ed, and
        a tile without any valid pixel is the model's mean."""
        filled, fill_fraction = self.fill_many(raw, inside)
        x = self.scale(filled, out)
        for i in np.flatnonzero(fill_fraction >= 1.0):
            x[i] = self.target_mean[:, None, None]
        return x, fill_fraction

    def apply(self, raw: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, float]:
        """raw (C, H, W) for one tile: returns (float32 (C, H, W) in [0, 1], fill_fraction)."""
        x, fill_fraction = self.apply_many(raw[None], inside[None])
        return x[0], float(fill_fraction[0])

    def transfer(self, filled: np.ndarray, pixel_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tiles as the model actors take them (``fill_many``'s output -> (pixels in
        ``pixel_type``, gain (C,), offset (C,)), whose ``clip(pixels * gain + offset, 0, 1)``
        is the model's input). Values that ``pixel_type`` holds exactly cross as they are
        (the scene's own type, or a wider one); others are scaled here, and quantised to an
        integer ``pixel_type`` (a scene whose type does not fit the job's, which is the
        first scene's: ``transfer_type``)."""
        dt = np.dtype(pixel_type)
        if filled.dtype == dt or np.can_cast(filled.dtype, dt, "safe"):
            return filled.astype(dt, copy=False), self.gain, self.offset
        x = self.scale(filled)
        one, zero = np.ones_like(self.gain), np.zeros_like(self.offset)
        if dt.kind == "f":
            return x.astype(dt, copy=False), one, zero
        m = float(np.iinfo(dt).max)
        return np.rint(x * m).astype(dt), one / np.float32(m), zero


def transfer_type(dtype: str) -> str:
    """The type a job's tiles cross to the model actors in, from its first scene's pixel
    type: the small types as they are, float32 for the others (the 32- and 64-bit
    integers and float64 are scaled in the read tasks). One per job: Ray Data cannot join
    blocks whose pixels differ in type."""
    return dtype if dtype in ("uint8", "int8", "uint16", "int16", "float32") else "float32"


def scaled(pixels: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Host-side model input of transferred tiles: ``clip(pixels * gain + offset, 0, 1)``
    float32, with ``gain``/``offset`` (N, C) per tile (the float32 arithmetic of
    ``Scaler.scale`` and of ``models.device.TileFeed``)."""
    x = np.empty(pixels.shape, np.float32)
    np.multiply(pixels, np.asarray(gain, np.float32)[:, :, None, None], out=x)
    x += np.asarray(offset, np.float32)[:, :, None, None]
    np.clip(x, 0.0, 1.0, out=x)
    return x


def valid_mask(raw: np.ndarray, inside: np.ndarray, fill_value: float | None) -> np.ndarray:
    """(N, H, W): pixels inside the scene whose bands are not all ``fill_value``."""
    valid = inside.copy()
    if fill_value is not None:
        valid &= ~np.all(raw == _as_pixel(fill_value, raw.dtype), axis=1)
    return valid


SPECTRAL_ROLES = ("red", "green", "nir", "swir16")
MAX_STAT_BANDS = 16  # per-tile statistics cover a scene's first bands, up to this many


def tile_statistics(raw: np.ndarray, valid: np.ndarray, gain: np.ndarray, offset: np.ndarray,
                    roles: dict[str, int], fill_value: float | None = None) -> dict[str, np.ndarray]:
    """Per-tile spectral statistics over the valid pixels of ``raw`` (N, S, H, W), each band
    in physical units ``raw * gain + offset`` (reflectance where the sensor is known):
    ``band_mean``/``band_std`` (N, S), and the mean per-pixel ``ndvi`` = (nir - red) /
    (nir + red) and ``ndwi`` = (green - nir) / (green + nir) (McFeeters) where ``roles``
    (role -> position in the S bands) has those bands; NaN where a tile has no valid pixel
    or an index has no bands. A pixel equal to ``fill_value`` in one band is left out of
    that band's figures (some sensors' bands have fill of their own)."""
    n, s = raw.shape[:2]
    gain, offset = np.asarray(gain, np.float32), np.asarray(offset, np.float32)
    band_valid = valid[:, None] if fill_value is None else valid[:, None] & (raw != _as_pixel(fill_value, raw.dtype))
    x = raw.astype(np.float32)
    # mean and spread in the file's units, then scaled (one multiply per figure, not per pixel);
    # the tiles with every pixel valid (most of them) without the mask's extra passes
    mean_raw, var = np.empty((n, s), np.float32), np.empty((n, s), np.float32)
    full = band_valid.all(axis=(1, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        if full.any():
            xf = x if full.all() else x[full]
            cnt = np.float32(raw.shape[2] * raw.shape[3])
            mf = xf.sum(axis=(2, 3)) / cnt
            d = xf - mf[:, :, None, None]
            mean_raw[full], var[full] = mf, np.einsum("nshw,nshw->ns", d, d) / cnt
        if not full.all():
            part = ~full
            m = np.broadcast_to(band_valid, raw.shape)[part].astype(np.float32)
            xp = x[part]
            cnt = m.sum(axis=(2, 3))
            mp = np.einsum("nshw,nshw->ns", xp, m) / cnt
            d = (xp - mp[:, :, None, None]) * m
            mean_raw[part], var[part] = mp, np.einsum("nshw,nshw->ns", d, d) / cnt
        out = {"band_mean": (mean_raw * gain + offset).astype(np.float32),
               "band_std": (np.sqrt(np.maximum(var, 0.0)) * np.abs(gain)).astype(np.float32)}
        for name, (a, b) in {"ndvi": ("nir", "red"), "ndwi": ("green", "nir")}.items():
            if a in roles and b in roles:
                ia, ib = roles[a], roles[b]
                pa, pb = x[:, ia] * gain[ia] + offset[ia], x[:, ib] * gain[ib] + offset[ib]
                both = band_valid[:, ia] & band_valid[:, ib] if fill_value is not None else valid
                den = pa + pb
                ok = both & (np.abs(den) > 1e-6)
                idx = np.divide(pa - pb, den, out=np.zeros_like(pa), where=ok)
                cnt_i = ok.sum(axis=(1, 2))
                out[name] = np.where(cnt_i > 0, idx.sum(axis=(1, 2)) / np.maximum(cnt_i, 1), np.nan).astype(np.float32)
            else:
                out[name] = np.full(n, np.nan, np.float32)
    return out


def pixel_features(raw: np.ndarray, valid: np.ndarray, gain: np.ndarray, offset: np.ndarray,
                   stride: int = 2, window: int = 0) -> np.ndarray:
    """Per-pixel spectral features of tiles for a pixel classifier: raw (N, S, H, W) in the
    file's units, every ``stride``-th pixel of each side -> float32 (N, P, F): each band in
    physical units ``raw * gain + offset``, the normalised difference ``(a - b) / (a + b)``
    of every pair of bands (NDVI, NDWI, NDBI and their kin, whatever the sensor's band
    order), and with ``window`` > 0 each band's mean and standard deviation over the valid
    pixels of the ``window`` x ``window`` pixels around it (texture: a house among lawns and
    a lawn look alike pixel by pixel): F = S + S (S - 1) / 2 (+ 2 S). Pixels outside
    ``valid`` (N, H, W) are NaN in every feature."""
    gain, offset = np.asarray(gain, np.float32), np.asarray(offset, np.float32)
    full = raw.astype(np.float32) * gain[None, :, None, None] + offset[None, :, None, None]
    x = full[:, :, ::stride, ::stride]
    n, s = x.shape[:2]
    x = x.reshape(n, s, -1).transpose(0, 2, 1)  # (N, P, S)
    i, j = np.triu_indices(s, k=1)
    a, b = x[:, :, i], x[:, :, j]
    den = a + b
    nd = np.divide(a - b, den, out=np.zeros_like(a), where=np.abs(den) > 1e-6)
    parts = [x, nd]
    if window:
        from scipy import ndimage

        m = valid[:, None].astype(np.float32)
        size = (1, 1, window, window)
        cnt = np.maximum(ndimage.uniform_filter(m, size, mode="constant"), 1e-6)
        mean = ndimage.uniform_filter(full * m, size, mode="constant") / cnt
        sq = ndimage.uniform_filter(full * full * m, size, mode="constant") / cnt
        sd = np.sqrt(np.maximum(sq - mean * mean, 0.0))
        for v in (mean, sd):
            parts.append(v[:, :, ::stride, ::stride].reshape(n, s, -1).transpose(0, 2, 1))
    out = np.concatenate(parts, axis=2).astype(np.float32)
    out[~valid[:, ::stride, ::stride].reshape(n, -1)] = np.nan
    return out


def pixel_feature_count(n_bands: int, window: int) -> int:
    """F of ``pixel_features`` for ``n_bands`` bands."""
    return n_bands + n_bands * (n_bands - 1) // 2 + (2 * n_bands if window else 0)


def mirror_fill(x: np.ndarray, valid: np.ndarray, passes: int = 8) -> None:
    """Fill the pixels of ``x`` (C, H, W) where ``valid`` (H, W) is False, in place, with
    valid pixels mirrored across the valid region's border: each empty pixel takes the
    value at its reflection through its nearest valid pixel. For a rectangular valid region
    this is the mirror padding of image processing; repeated passes mirror the already
    filled band again, so a narrow valid strip fills a whole tile. What no reflection
    reaches takes its nearest valid pixel."""
    from scipy import ndimage

    have = valid.copy()
    h, w = have.shape
    ii, jj = np.indices((h, w))
    for _ in range(passes):
        if have.all():
            return
        qi, qj = ndimage.distance_transform_edt(~have, return_distances=False, return_indices=True)
        ri, rj = 2 * qi - ii, 2 * qj - jj
        ok = ~have & (ri >= 0) & (ri < h) & (rj >= 0) & (rj < w)
        ok[ok] = have[ri[ok], rj[ok]]
        if not ok.any():
            break
        x[:, ok] = x[:, ri[ok], rj[ok]]
        have |= ok
    if not have.all():
        qi, qj = ndimage.distance_transform_edt(~have, return_distances=False, return_indices=True)
        x[:, ~have] = x[:, qi[~have], qj[~have]]


def _as_pixel(value: float, dtype: np.dtype):
    """``value`` in the pixels' own type when it fits (a comparison without a float64
    copy of the tiles), else as a float."""
    if dtype.kind in "ui" and float(value).is_integer():
        info = np.iinfo(dtype)
        if info.min <= value <= info.max:
            return dtype.type(int(value))
    return float(value)


def dtype_max(dtype: str) -> float:
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        return float(np.iinfo(dt).max)
    return 1.0


MATCH_MIN_PIXELS = 16 * 64 * 64  # valid pixels (of the decimated read) below which a scene is too small to match
MATCH_MIN_SPREAD = 0.03  # every band's std/mean below this: a scene of one cover, too uniform to match


def match_unfit(sample: np.ndarray, fill_value: float | None) -> str | None:
    """Why ``match`` would mislead on this scene, or None: too few valid pixels (fewer than
    16 tiles of 64 px) to stand for the model's training distribution, or every band nearly
    uniform (its spread under ``MATCH_MIN_SPREAD`` of its mean: open water, one field), which
    matching would stretch into the training set's whole range of covers. The bound is low
    because Level-1 digital numbers carry a large offset: the README scene's bands spread
    4–11 % of their means, a crop of its reservoir 0.2–2 % (tests/raster/test_bands.py)."""
    valid = np.ones(sample.shape[1:], bool)
    if fill_value is not None:
        valid &= ~np.all(sample == _as_pixel(fill_value, sample.dtype), axis=0)
    n = int(valid.sum())
    if n < 16:  # no valid pixels at all: not a matter of scaling (``make_scaler`` refuses the scene, all_nodata)
        return None
    if n < MATCH_MIN_PIXELS:
        return f"only {n:,} valid pixels in its statistics read (fewer than {MATCH_MIN_PIXELS:,}: 16 tiles of 64 px)"
    vals = sample[:, valid].astype(np.float64)
    spread = vals.std(axis=1) / np.maximum(np.abs(vals.mean(axis=1)), 1e-12)
    if spread.max() < MATCH_MIN_SPREAD:
        return (f"it is nearly uniform (each band's spread is at most {spread.max():.1%} of its mean, under "
                f"{MATCH_MIN_SPREAD:.0%}): one cover, which matching would stretch into every cover")
    return None


def make_scaler(mode: str, sample: np.ndarray | None, dtype: str, fill_value: float | None,
                target_mean, target_std, scale: float | None = None, uri: str = "", sensor=None,
                model_reflectance: dict | None = None) -> Scaler:
    """Build the scaler for one scene. ``sample``: (C, h, w) decimated read of the selected
    bands (``match``); ``sensor``: the scene's ``radiometry.SensorTransform`` and
    ``model_reflectance`` the model's stretch (``reflectance``)."""
    tm = np.asarray(target_mean, np.float32)
    ts = np.asarray(target_std, np.float32)
    if mode == "dtype":
        div = float(scale) if scale else dtype_max(dtype)
        return Scaler(np.full(len(tm), 1.0 / div, np.float32), np.zeros(len(tm), np.float32), fill_value, tm)
    if mode == "reflectance":  # DN -> rho = a DN + c (sensor) -> x = rho g + o (the model's stretch)
        if sensor.display:  # an 8-bit display product: as it is, like the model's 8-bit training images
            return Scaler(sensor.a.astype(np.float32), sensor.c.astype(np.float32), fill_value, tm)
        g = np.asarray(model_reflectance["gain"], np.float64)
        o = np.asarray(model_reflectance["offset"], np.float64)
        if len(g) != len(sensor.a):
            raise ConfigError(f"The model's reflectance stretch has {len(g)} channel(s), the scene's bands {len(sensor.a)}.",
                              "select as many bands as the model has channels.")
        return Scaler((sensor.a * g).astype(np.float32), (sensor.c * g + o).astype(np.float32), fill_value, tm)
    if mode != "match":
        raise ConfigError(f"Unknown scaling {mode!r}.", "use 'auto', 'match', 'dtype' or 'reflectance'.")
    assert sample is not None
    valid = np.ones(sample.shape[1:], bool)
    if fill_value is not None:
        valid &= ~np.all(sample == _as_pixel(fill_value, sample.dtype), axis=0)
    if valid.sum() < 16:
        raise InputError(f"Scene {uri} has no valid pixels (all fill/nodata).",
                         "check the scene, or the fill_value setting.", reason="all_nodata")
    vals = sample[:, valid].astype(np.float64)
    mean = vals.mean(axis=1)
    std = vals.std(axis=1)
    std = np.where(std > 0, std, 1.0)
    gain = (ts / std).astype(np.float32)
    offset = (tm - mean * gain).astype(np.float32)
    return Scaler(gain, offset, fill_value, tm)

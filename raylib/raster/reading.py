"""The map job's read stage (CPU tasks, no model): read units of a scene -> scaled tiles.

A read unit is ``read_batch_size`` tiles of one scene in grid order. Each grid row of a
unit is one windowed read (``windows.read_row``) with a time limit and retries; a row that
fails for a non-transient reason is read again tile by tile so that a damaged block loses
only the tiles it touches. Kept apart from ``mapping`` so that read workers import only
numpy, rasterio and this package's light modules (not torch or scikit-learn).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from raylib.io import resilience, storage
from raylib.raster import bands as bandlib, windows
from raylib.raster import tiling
from raylib.raster.read_block import CLOUD_COLUMNS, PIXEL_OUT, PIXELS, PROBS

_WATCHDOG: tuple[dict, resilience.Watchdog] | None = None
# a scene-grid edge tile with more than this share of its footprint outside the scene is an error row
# (reason mostly_outside: data, not a failure), as a tile mostly of fill is: its class would be the padding's
MAX_OUTSIDE = 0.5


def outside_share(wins: np.ndarray, tile: tuple[int, int], box) -> np.ndarray:
    """Each tile's share of its full footprint (``tile``: native rows, cols) outside the
    scene's pixels ``box`` (row0, col0, row1, col1): a scene-grid edge tile's clipped part,
    or on a ground grid the VRT's nodata beyond the scene."""
    r0, c0, r1, c1 = box
    rows = np.clip(np.minimum(wins["row_off"] + tile[0], r1) - np.maximum(wins["row_off"], r0), 0, None)
    cols = np.clip(np.minimum(wins["col_off"] + tile[1], c1) - np.maximum(wins["col_off"], c0), 0, None)
    return 1.0 - rows.astype(float) * cols / float(tile[0] * tile[1])


def _watchdog() -> resilience.Watchdog:
    """The process's read helper, its GDAL settings entered once; a new one when the
    settings changed (a process whose S3 endpoint or region was set after its first read)."""
    global _WATCHDOG
    opts = storage.gdal_options()
    if _WATCHDOG is None or _WATCHDOG[0] != opts:
        if _WATCHDOG is not None:
            _WATCHDOG[1].close()
        _WATCHDOG = (opts, resilience.Watchdog(storage.rasterio_env))
    return _WATCHDOG[1]


@dataclass(frozen=True)
class ReadSpec:
    """What a read task needs to read one scene's tiles (no pixels). It travels as JSON in the
    read units (one dictionary-encoded string per scene) and is typed again on arrival."""

    uri: str
    gdal_path: str
    bands: list[int]  # 1-based file bands, in the model's channel order
    layout: tiling.Layout
    tile_size: int  # output pixels per tile side
    gain: list[float]  # scaling: value * gain + offset, per model band
    offset: list[float]
    fill_value: float | None
    target_mean: list[float]  # what a fill pixel becomes (the model's mean)
    max_fill_fraction: float = 1.0
    stats: dict | None = None  # per-tile statistics: file bands, their gain/offset, spectral roles, units
    cloud: dict | None = None  # a quality asset: its 1-based band and decoder (``cloud_mask``)
    max_tile_cloud: float = 1.0  # cloud + shadow share above which a tile is an error row (cloudy)
    pixel_type: str = "float32"  # the type tiles cross to the model in (``bands.transfer_type``: the job's)
    data_box: list[int] | None = None  # the scene's own pixels (row0, col0, row1, col1; ground grid VRT), else all

    def to_json(self) -> str:
        d = dict(self.__dict__, layout=self.layout.to_dict())
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "ReadSpec":
        d = json.loads(text)
        return cls(**{**d, "layout": tiling.Layout.from_dict(d["layout"])})


class PixelFn:
    """What a read task computes from each tile's pixels beside the model's input: ``fn``
    maps ``bands.pixel_features`` (N, P, F) of the statistics' bands (``n_bands`` bands,
    every ``stride``-th pixel, texture over ``window`` pixels) to ``width`` numbers per
    tile (a pixel classifier's mean class probabilities, or the features themselves),
    written to the ``pixel_out`` column (NaN where a tile has no statistics). A plain
    interface, so that this layer knows no model."""

    def __init__(self, fn, width: int, n_bands: int, stride: int, window: int = 0):
        self.fn, self.width, self.n_bands, self.stride = fn, int(width), int(n_bands), int(stride)
        self.window = int(window)


def empty_rows(n: int, channels: int, tile_size: int, pixel_fn: PixelFn | None = None,
               pixel_type: str = "uint8") -> dict:
    """The columns of ``read_tiles`` for ``n`` tiles, before any is read: zero pixels (in
    ``pixel_type``: the job's transfer type; the smallest by default, which joins any other
    without changing it) with gain 1 and offset 0, fill fraction 1, status ok, statistics
    NaN (and ``pixel_out`` NaN with ``pixel_fn``)."""
    t = tile_size
    out = {"idx": np.zeros(n, np.int64), "pixels": np.zeros((n, channels, t, t), pixel_type),
           # the model's input is clip(pixels * gain + offset, 0, 1), per tile and band (``models.device``)
           "gain": np.ones((n, channels), np.float32), "offset": np.zeros((n, channels), np.float32),
           "fill_fraction": np.ones(n, np.float32), "status": np.full(n, "ok", dtype=object),
           "error": np.full(n, "", dtype=object),
           "retries": np.zeros(n, np.int32),  # retries each tile's read needed (evidence of weathered faults)
           # per-tile spectral statistics (NaN where not computed); a scene uses the first n_stats bands
           "band_mean": np.full((n, bandlib.MAX_STAT_BANDS), np.nan, np.float32),
           "band_std": np.full((n, bandlib.MAX_STAT_BANDS), np.nan, np.float32),
           "n_stats": np.zeros(n, np.int8), "ndvi": np.full(n, np.nan, np.float32), "ndwi": np.full(n, np.nan, np.float32),
           # the statistics are reflectance (a known sensor), not digital numbers or display values: a
           # model's spectral head (``models.spectral``) reads NDVI and NDWI only from these
           "stats_reflectance": np.zeros(n, bool),
           # shares of the tile's pixels a quality asset flags (NaN: the scene has none)
           **{c: np.full(n, np.nan, np.float32) for c in CLOUD_COLUMNS}}
    if pixel_fn is not None:
        out[PIXEL_OUT] = np.full((n, pixel_fn.width), np.nan, np.float32)
    return out


def read_tiles(batch: dict, read_timeout: float, read_retries: int, pixel_fn: PixelFn | None = None) -> dict:
    """CPU stage: each input row is a read unit (tiles ``lo..hi`` of one scene) -> scaled
    float32 pixels, one output row per tile, with an error row for every tile that failed.
    With ``pixel_fn``, also its ``pixel_out`` column (a scene without its ``n_bands``
    statistics bands gives error rows, reason ``band_mismatch``).

    Each grid row of a unit is one read of its bounding window (``windows.read_row``); a
    row whose read fails for a non-transient reason (a damaged block) is read again tile by
    tile, so that one bad block loses only the tiles it touches."""
    units = [(str(s), int(b), int(lo), int(hi))
             for s, b, lo, hi in zip(batch["spec"], batch["base"], batch["lo"], batch["hi"])]
    n = sum(hi - lo for _, _, lo, hi in units)
    first = ReadSpec.from_json(units[0][0])
    out = empty_rows(n, len(first.bands), first.tile_size, pixel_fn, first.pixel_type)
    k, reader = 0, None
    try:
        for spec, base, lo, hi in units:
            if reader is None or reader.key != spec:  # units of one scene share the open dataset
                if reader is not None:
                    reader.close()
                reader = _SceneReader(spec, read_timeout, read_retries, pixel_fn)
            reader.read(lo, hi, base, out, k)
            k += hi - lo
    finally:
        if reader is not None:
            reader.close()
    return out


class _SceneReader:
    """Reads the tiles of read units of one scene (``spec``: a ``ReadSpec`` as JSON) into the
    output arrays of ``read_tiles``; one open dataset for all of them, ``close()`` when done."""

    def __init__(self, spec: str, read_timeout: float, read_retries: int, pixel_fn: PixelFn | None = None):
        self.key, self.spec = spec, ReadSpec.from_json(spec)
        self.pixel_fn = pixel_fn
        self.timeout, self.retries = read_timeout, read_retries
        d = self.spec
        self.layout = d.layout
        self.tile = d.tile_size
        self.stats = d.stats
        model_bands = list(d.bands)
        extra = [b for b in (self.stats["bands"] if self.stats else []) if b not in model_bands]
        self.cloud = d.cloud
        # one read for the model's bands, the statistics' others and a quality asset (last: read nearest)
        self.read_bands = model_bands + extra + ([int(self.cloud["band"])] if self.cloud else [])
        self.categorical = 1 if self.cloud else 0
        self.stat_pos = [self.read_bands.index(b) for b in self.stats["bands"]] if self.stats else []
        self.scaler = bandlib.Scaler(np.asarray(d.gain, np.float32), np.asarray(d.offset, np.float32),
                                     d.fill_value, np.asarray(d.target_mean, np.float32))
        self.wd = _watchdog()
        self.ds = None

    def _dataset(self):
        import rasterio

        if self.ds is None:
            self.ds = self.wd.call(lambda: rasterio.open(self.spec.gdal_path), self.timeout,
                                   f"opening {self.spec.uri}")
        return self.ds

    def close(self, _exc=None) -> None:
        old, self.ds = self.ds, None
        if old is not None:
            try:
                self.wd.call(old.close, self.timeout)
            except Exception:
                pass

    def _read(self, fn, what: str, retried: np.ndarray, k: int):
        """``fn(dataset)`` with the watchdog's time limit, retried on transient faults
        (counted on tile ``k``)."""
        def on_retry(exc):
            retried[k] += 1
            self.close(exc)

        def once():
            ds = self._dataset()
            return self.wd.call(lambda: fn(ds), self.timeout, what)

        return resilience.retrying(once, retries=self.retries, on_retry=on_retry)

    def read(self, lo: int, hi: int, base: int, out: dict, k0: int) -> None:
        lay, t, bands, uri = self.layout, self.tile, self.read_bands, self.spec.uri
        c = len(self.spec.bands)
        status, error = out["status"], out["error"]
        out["idx"][k0:k0 + hi - lo] = np.arange(base + lo, base + hi)
        have = len(self.stats["bands"]) if self.stats else 0
        if self.pixel_fn is not None and have != self.pixel_fn.n_bands:
            status[k0:k0 + hi - lo] = "error"
            error[k0:k0 + hi - lo] = (f"band_mismatch: the model's pixel classifier reads {self.pixel_fn.n_bands} "
                                      f"spectral band(s), {uri} gives {have}")
            return
        raw_all = inside_all = None
        no_stats = np.zeros(hi - lo, bool)  # tiles read with the model's bands alone (no statistics)
        given_up = None  # a transient failure that outlived its retries: the rest of the unit gets it too

        def fail(rows, exc):  # rows: one output index or a slice of them
            nonlocal given_up
            reason, msg = resilience.classify(exc)
            status[rows], error[rows] = "error", f"{reason}: {msg}"
            if reason in resilience.TRANSIENT:
                given_up = f"{reason}: {msg} (an earlier read of this scene in the same batch)"
            self.close()

        def put(k, raw, inside):
            nonlocal raw_all, inside_all
            if raw_all is None:
                raw_all = np.zeros((hi - lo, *raw.shape[1:]), raw.dtype)
                inside_all = np.zeros((hi - lo, *inside.shape[1:]), bool)
            raw_all[k - k0:k - k0 + len(raw)], inside_all[k - k0:k - k0 + len(raw)] = raw, inside

        def tile_by_tile(seg, k):
            for w in seg:
                if given_up:
                    status[k], error[k] = "error", given_up
                else:
                    def window(bs):
                        cat = self.categorical if len(bs) == len(bands) else 0
                        return self._read(lambda ds: windows.read_window(ds, *tiling.window_box(w),
                                                                        tuple(lay.tile), t, bs, cat),
                                          f"reading a window of {uri}", out["retries"], k)

                    try:
                        raw, inside = window(bands)
                        put(k, raw[None], inside[None])
                    except Exception as exc:  # one bad block must not lose the other tiles
                        if len(bands) > c and resilience.classify(exc)[0] not in resilience.TRANSIENT:
                            try:  # a damaged block of a band read only for the statistics: the model's bands alone
                                raw, inside = window(bands[:c])
                                full = np.zeros((len(bands), *raw.shape[1:]), raw.dtype)
                                full[:c] = raw
                                put(k, full[None], inside[None])
                                no_stats[k - k0] = True
                            except Exception as exc2:
                                fail(k, exc2)
                        else:
                            fail(k, exc)
                k += 1

        k = k0
        for seg in windows.row_segments(lay.windows(lo, hi)):
            rows = slice(k, k + len(seg))
            if given_up:
                status[rows], error[rows] = "error", given_up
            elif windows.row_aligned(seg, lay.tile, t):
                try:
                    put(k, *self._read(lambda ds: windows.read_row(ds, seg, lay.tile, t, bands, self.categorical),
                                       f"reading a row of tiles of {uri}", out["retries"], k))
                except Exception as exc:
                    if resilience.classify(exc)[0] in resilience.TRANSIENT:
                        fail(rows, exc)
                    else:  # a damaged block: the tiles that do not touch it are still readable
                        self.close()
                        tile_by_tile(seg, k)
            else:
                tile_by_tile(seg, k)
            k += len(seg)
        if raw_all is not None:  # scale the unit's tiles in one vectorised pass
            sl = slice(k0, k)
            ok = status[sl] == "ok"
            model_raw = raw_all[:, :c] if raw_all.shape[1] > c else raw_all
            # the model's bands in the job's transfer type, with their scaling (applied on the model's device)
            filled, ff = self.scaler.fill_many(model_raw if ok.all() else model_raw[ok],
                                               inside_all if ok.all() else inside_all[ok])
            px, gain, offset = self.scaler.transfer(filled, self.spec.pixel_type)
            if ok.all():
                out["pixels"][sl], out["gain"][sl], out["offset"][sl] = px, gain, offset
            else:
                out["pixels"][sl][ok], out["gain"][sl][ok], out["offset"][sl][ok] = px, gain, offset
            if self.stats:
                with_stats = ok & ~no_stats[:k - k0]
                self._statistics(raw_all[with_stats], inside_all[with_stats], out, np.flatnonzero(with_stats) + k0)
            out["fill_fraction"][sl][ok] = ff
            nodata = np.flatnonzero(ok)[ff >= 1.0] + k0
            status[nodata], error[nodata] = "error", "all_nodata: the tile holds only fill/nodata pixels"
            limit = self.spec.max_fill_fraction
            over = (ff < 1.0) & (ff > limit)
            mostly = np.flatnonzero(ok)[over] + k0
            status[mostly] = "error"
            error[mostly] = [f"mostly_fill: {f:.0%} of the tile's pixels in the scene are fill (more than "
                             f"max_fill_fraction {limit:g})" for f in ff[over]]
            # a tile that lies mostly outside the scene: its class would be the padding's
            outside = outside_share(lay.windows(lo, hi), lay.tile, self.spec.data_box or (0, 0, lay.height, lay.width))
            away = np.flatnonzero((status[sl] == "ok") & (outside > MAX_OUTSIDE)) + k0
            status[away] = "error"
            error[away] = [f"mostly_outside: {outside[i - k0]:.0%} of the tile lies outside the scene (more than "
                           f"{MAX_OUTSIDE:.0%})" for i in away]
            if self.cloud:
                self._clouds(raw_all, inside_all, ok & ~no_stats[:k - k0], out, k0)

    def _clouds(self, raw: np.ndarray, inside: np.ndarray, rows: np.ndarray, out: dict, k0: int) -> None:
        """The quality asset's shares per tile (``rows``: the unit's tiles read with it), and
        error rows for tiles over ``max_tile_cloud`` (cloudy) or holding a value that is no
        class of the asset (cloud_mask)."""
        from raylib.raster import cloud_mask

        sel = np.flatnonzero(rows)
        if not len(sel):
            return
        valid = bandlib.valid_mask(raw[sel, :len(self.spec.bands)], inside[sel], self.scaler.fill_value)
        fr = cloud_mask.fractions(raw[sel, -1], valid, self.cloud)
        at = sel + k0
        for c, col in zip(("cloud", "shadow", "snow"), CLOUD_COLUMNS):
            out[col][at] = fr[c]
        status, error = out["status"], out["error"]
        limit, key = self.spec.max_tile_cloud, self.cloud["asset"]
        for i, k in enumerate(at.tolist()):
            if status[k] != "ok":
                continue
            if fr["unknown"][i] >= 0:
                status[k] = "error"
                error[k] = (f"cloud_mask: value {int(fr['unknown'][i])} of quality asset {key} is none of its classes "
                            f"{self.cloud['known']}")
                continue
            obscured = float(np.nan_to_num(fr["cloud"][i]) + np.nan_to_num(fr["shadow"][i]))
            if obscured > limit:
                status[k] = "error"
                error[k] = (f"cloudy: {obscured:.0%} of the tile is cloud or cloud shadow in {key} (more than "
                            f"max_tile_cloud {limit:g})")

    def _statistics(self, raw: np.ndarray, inside: np.ndarray, out: dict, rows: np.ndarray) -> None:
        st = self.stats
        valid = bandlib.valid_mask(raw[:, :len(self.spec.bands)], inside, self.scaler.fill_value)
        res = bandlib.tile_statistics(raw[:, self.stat_pos], valid, np.asarray(st["gain"], np.float32),
                                      np.asarray(st["offset"], np.float32), st["roles"], self.scaler.fill_value)
        s = len(self.stat_pos)
        out["band_mean"][rows, :s], out["band_std"][rows, :s] = res["band_mean"], res["band_std"]
        out["n_stats"][rows] = s
        out["ndvi"][rows], out["ndwi"][rows] = res["ndvi"], res["ndwi"]
        out["stats_reflectance"][rows] = st.get("units") == "reflectance"
        if self.pixel_fn is not None and len(rows):
            pf = self.pixel_fn
            f = bandlib.pixel_features(raw[:, self.stat_pos], valid, st["gain"], st["offset"], pf.stride, pf.window)
            out[PIXEL_OUT][rows] = self.pixel_fn.fn(f)


def rows_out(batch: dict, probs: np.ndarray) -> dict:
    """What a model actor returns for a read block: every column but the pixels and their
    scaling, and the class probabilities."""
    return {**{k: v for k, v in batch.items() if k not in PIXELS}, PROBS: probs}


def model_batches(batch: dict, batch_size: int):
    """``(rows, pixels, gain, offset)`` of the readable tiles of a block, ``batch_size`` at a
    time (views, not copies, when every tile of the block is readable); the model's input
    is ``clip(pixels * gain + offset, 0, 1)`` (``scaled_pixels``, or on the device)."""
    ok = np.flatnonzero(np.asarray(batch["status"]) == "ok")
    px = batch["pixels"]
    contiguous = len(ok) == len(px)
    for i in range(0, len(ok), batch_size):
        sel = slice(i, i + batch_size) if contiguous else ok[i:i + batch_size]
        yield sel, px[sel], batch["gain"][sel], batch["offset"][sel]


def scaled_pixels(out: dict) -> np.ndarray:
    """The model's input of ``read_tiles``' tiles on the host: float32 (N, C, T, T) in [0, 1]."""
    return bandlib.scaled(out["pixels"], out["gain"], out["offset"])

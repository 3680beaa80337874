"""One partition of a change: the tiles whose ids lie in one range, read from every date,
joined, decided (``eval.change``), written as one part of the change map, and summed up
(transitions in tiles and hectares, counts, flicker) for the driver, which never holds a
tile. A partition runs in a Ray Data task, or in the driver's process when the whole change
is one partition."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from raylib.eval import change
from raylib.formats import embstore, mapfile, parts
from raylib.io import storage
from raylib.pipelines.change.dates import READ, DateSource

ARROW = "->"  # in transitions (forest->cropland; forest->forest: stable) and periods


@dataclass
class ChangeJob:
    """What every partition needs (it travels to the Ray tasks)."""

    dates: list[DateSource]
    mats: list[np.ndarray]  # per date: its classes x groups
    groups: list[str]
    min_p_change: float
    min_confidence: float
    persist: bool
    out: str
    extra: dict = field(default_factory=dict)  # the parts' metadata

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dates]

    @property
    def transitions(self) -> list[str]:
        """Every transition, ``label_index`` order: from-major (``a * k + b``)."""
        return [f"{a}{ARROW}{b}" for a in self.groups for b in self.groups]


def part_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def record_name(k: int) -> str:
    """The partition's sums beside its part under ``_tmp`` (a resumed run reads them)."""
    return f"part-{k:05d}.json"


@dataclass
class Joined:
    """The dates' rows of one partition joined on ``tile_id``: one row per tile of any date."""

    ids: np.ndarray
    rows: np.ndarray  # tiles x dates: the tile's row in each date's table (-1: not mapped)
    labels: np.ndarray  # tiles x dates: group index (-1: no observation)
    probs: list[np.ndarray]  # per date: tiles x groups
    confidence: np.ndarray  # tiles x dates (NaN: no observation)


def join(tables: list[pa.Table], mats: list[np.ndarray]) -> Joined:
    ids_per = [np.asarray(t.column("tile_id").to_pylist(), object).astype(str) for t in tables]
    ids = np.unique(np.concatenate(ids_per)) if ids_per else np.zeros(0, str)
    n, k = len(ids), mats[0].shape[1]
    rows = np.full((n, len(tables)), -1, np.int64)
    labels = np.full((n, len(tables)), -1, np.int64)
    conf = np.full((n, len(tables)), np.nan)
    probs = []
    for j, (t, own, m) in enumerate(zip(tables, ids_per, mats)):
        at = np.searchsorted(ids, own)
        rows[at, j] = np.arange(len(own))
        ok = np.asarray(t.column("status").to_pylist(), object) == "ok"
        p = np.full((n, k), np.nan)
        if ok.any():
            col = t.column("probs").combine_chunks()
            raw = np.asarray(col.filter(pa.array(ok)).flatten().to_numpy(zero_copy_only=False),
                             np.float64).reshape(-1, m.shape[0])
            p[at[ok]] = raw @ m
        seen = np.isfinite(p).all(axis=1)
        labels[seen, j] = np.argmax(p[seen], axis=1)
        conf[seen, j] = p[seen].max(axis=1)
        probs.append(p)
    return Joined(ids, rows, labels, probs, conf)


def _reasons(d: DateSource, t: pa.Table, joined: Joined, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Per tile, why date ``j`` does not observe it (reason, error text; "" where it does)."""
    reason = np.asarray(t.column("reason").to_pylist(), object)
    error = np.asarray(t.column("error").to_pylist(), object)
    r = joined.rows[:, j]
    out_r = np.full(len(r), "", object)
    out_e = np.full(len(r), "", object)
    missing = r < 0
    out_r[missing] = "not_mapped"
    out_e[missing] = f"{d.name} ({d.uri}): not_mapped: the map has no row for this ground tile"
    bad = ~missing & (joined.labels[:, j] < 0)
    out_r[bad] = [str(v) if v else "error" for v in reason[r[bad]]]
    out_e[bad] = [f"{d.name} ({d.uri}): {e}" for e in error[r[bad]]]
    return out_r, out_e


def _place(tables: list[pa.Table], joined: Joined) -> dict[str, pa.Array]:
    """Each tile's place (CRS, footprint) from the first date that has a row for it, and
    the larger fill of its first and last dates' rows."""
    src = np.argmax(joined.rows >= 0, axis=1)
    out = {}
    for c in ("scene_crs", "geometry", "bbox"):
        pieces, order = [], []
        for j, t in enumerate(tables):
            sel = np.flatnonzero(src == j)
            if len(sel):
                pieces.append(t.column(c).take(pa.array(joined.rows[sel, j])).combine_chunks())
                order.append(sel)
        merged = pa.concat_arrays(pieces) if pieces else pa.array([], mapfile.MAP_SCHEMA.field(c).type)
        back = np.argsort(np.concatenate(order)) if order else np.array([], np.int64)
        out[c] = merged.take(pa.array(back))
    fill = np.zeros(len(joined.ids))
    for j in (0, len(tables) - 1):
        r = joined.rows[:, j]
        f = np.nan_to_num(np.asarray(tables[j].column("fill_fraction").to_pylist(), float), nan=0.0)
        if len(f):
            fill = np.maximum(fill, np.where(r >= 0, f[np.maximum(r, 0)], 0.0))
    out["fill_fraction"] = pa.array(fill.astype(np.float32))
    return out


def _duplicate(t: pa.Table) -> str | None:
    """A tile id the table holds twice, if any."""
    ids = np.asarray(t.column("tile_id").to_pylist(), object).astype(str)
    u, c = np.unique(ids, return_counts=True)
    return str(u[np.argmax(c)]) if len(u) and c.max() > 1 else None


def run_partition(job: ChangeJob, k: int, ids: tuple[str, str | None]) -> dict:
    """Partition ``k`` (tile ids in ``ids``): its part of the change map under ``_tmp/``,
    and its sums (also written beside it, for a resumed run)."""
    tables = [d.source.read(READ, ids) for d in job.dates]
    for j, t in enumerate(tables):
        dup = _duplicate(t)
        if dup is not None:
            return {"k": k, "error": {"kind": "several_observations", "date": j, "example": dup}}
    jn = join(tables, job.mats)
    last = len(tables) - 1
    seen = jn.labels >= 0
    shared = [int(((jn.rows[:, j] >= 0) & (jn.rows[:, j + 1] >= 0)).sum()) for j in range(last)]
    dec = change.decide(jn.labels, jn.probs, jn.confidence, job.min_p_change, job.min_confidence, job.persist)
    n, g = len(jn.ids), len(job.groups)
    ok = seen[:, 0] & seen[:, last]
    r0, e0 = _reasons(job.dates[0], tables[0], jn, 0)
    r1, e1 = _reasons(job.dates[last], tables[last], jn, last)
    reason = np.where(r0 != "", r0, r1)
    error = np.where((e0 != "") & (e1 != ""), e0.astype(str) + "; " + e1.astype(str), np.where(e0 != "", e0, e1))
    src, dst = dec.accepted[:, 0], dec.accepted[:, last]
    changed = ok & (src != dst)
    at = np.full(n, -1)
    anyc = dec.changed.any(axis=1)
    at[anyc] = np.argmax(dec.changed[anyc], axis=1) + 1
    names, groups = job.names, job.groups
    index = np.where(ok, src * g + dst, -1)
    place = _place(tables, jn)
    area_ha = mapfile.area_column(place["geometry"], place["fill_fraction"].to_numpy(zero_copy_only=False))
    area = np.nan_to_num(area_ha.fill_null(0.0).to_numpy(zero_copy_only=False))
    cols = {
        "tile_id": pa.array(jn.ids, pa.string()), **{c: place[c] for c in ("scene_crs", "geometry", "bbox")},
        "label": pa.array([job.transitions[i] if i >= 0 else None for i in index], pa.string()),
        "label_index": pa.array(index.astype(np.int16), pa.int16(), mask=index < 0),
        "from": pa.array([groups[v] if o else None for v, o in zip(src, ok)], pa.string()),
        "to": pa.array([groups[v] if o else None for v, o in zip(dst, ok)], pa.string()),
        "changed": pa.array(changed, pa.bool_(), mask=~ok),
        "p_change": mapfile.nullable(np.where(ok, change.p_change(jn.probs[0], jn.probs[last]), np.nan)),
        "confidence_before": mapfile.nullable(np.where(ok, jn.confidence[:, 0], np.nan)),
        "confidence_after": mapfile.nullable(np.where(ok, jn.confidence[:, last], np.nan)),
        "changed_at": pa.array([names[a] if a >= 0 and o else None for a, o in zip(at, ok)], pa.string()),
        "pending": pa.array(dec.pending & ok, pa.bool_(), mask=~ok),
        "labels": pa.array([[groups[v] if v >= 0 else None for v in row] for row in jn.labels],
                           pa.list_(pa.string())),
        "fill_fraction": place["fill_fraction"], "area_ha": area_ha,
        **mapfile.outcome_columns(np.where(ok, "ok", "error"), error, reason),
    }
    table = pa.table({f.name: cols[f.name] for f in mapfile.CHANGE_SCHEMA}, schema=mapfile.CHANGE_SCHEMA)
    name = None
    if n:
        name = part_name(k)
        table = table.take(pa.array(embstore.zorder(table)))
        mapfile.write_part(table, storage.join(job.out, parts.TMP, name), job.transitions,
                           job.extra.get("model_id", "change"), job.extra)
    raw_f, raw_b = change.flicker(jn.labels)
    kept_f, kept_b = change.flicker(np.where(seen, dec.accepted, -1))
    sums = {"k": k, "part": name, "tiles": n, "ok": int(ok.sum()),
            "reasons": {str(a): int(b) for a, b in zip(*np.unique(reason[~ok].astype(str), return_counts=True))},
            "changed_tiles": int(changed.sum()), "changed_hectares": float(area[changed].sum()),
            "candidates": int((dec.candidate.any(axis=1) & ok).sum()), "pending": int((dec.pending & ok).sum()),
            "flicker": [raw_f, raw_b, kept_f, kept_b], "shared": shared,
            "transitions": transition_sums(dec.accepted, seen, area, len(names))}
    storage.write_bytes(storage.join(job.out, parts.TMP, record_name(k)), json.dumps(sums).encode())
    return sums


def transition_sums(acc: np.ndarray, seen: np.ndarray, area: np.ndarray, d: int) -> list[list]:
    """[period, from, to, tiles, hectares] per transition: period i < d - 1 is date i -> i + 1
    (the tiles observed at i + 1 with a class held at i); with three or more dates, period
    d - 1 is the whole span (the tiles observed on the first and last dates)."""
    periods = [(i, acc[:, i], acc[:, i + 1], (acc[:, i] >= 0) & seen[:, i + 1]) for i in range(d - 1)]
    if d > 2:
        periods.append((d - 1, acc[:, 0], acc[:, -1], seen[:, 0] & seen[:, -1]))
    out = []
    for period, a, b, m in periods:
        if not m.any():
            continue
        pairs, inv = np.unique(np.stack([a[m], b[m]], axis=1), axis=0, return_inverse=True)
        inv = np.asarray(inv).reshape(-1)
        tiles = np.bincount(inv, minlength=len(pairs))
        ha = np.bincount(inv, weights=area[m], minlength=len(pairs))
        out += [[period, int(f), int(t), int(c), float(h)] for (f, t), c, h in zip(pairs, tiles, ha)]
    return out

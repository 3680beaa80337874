"""``landcover change``: what changed between maps of one place on the ground grid.

The dates (``--before``/``--after``, or ``--dates`` in order) are maps or composites made on
the ground grid (``--grid ground``), so one place has one ``tile_id`` on every date; they
are joined on it. Each tile's classes and probabilities, date by date, go through
``eval.change.decide`` (``p_change``, confidence on both dates, persistence), and the change
map has one row per tile: ``from`` (the class at the first date that observes it), ``to``
(the class the decisions hold at the last date), ``changed``, ``p_change`` (first and last
observation), ``confidence_before``/``confidence_after``, ``changed_at`` (the date of the
tile's first counted change), ``pending`` (a change into the last date that persistence could
not confirm), ``labels`` (the mapped class per date) and, as a map of transitions,
``label`` = ``from->to`` (``A->A``: stable), so ``landcover sample`` and ``assess`` read it
as a map whose classes are the transitions. A tile that the first or the last date does not
observe is an error row with that date's reason (``cloudy``, ``no_clear_observation``, ...,
``not_mapped``).

Beside it, under names every reader of the map skips: ``_transitions.csv`` (per period and
over the whole span: from, to, tiles, hectares, geodesic as ``assess`` computes them),
``_quicklook/change.png`` (before, after, change) and ``_summary.json`` with the flicker
share; ``_SUCCESS`` last (``formats.map_folder``).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.config import ChangeConfig
from raylib.errors import ConfigError, InputError
from raylib.eval import change, reference, reports
from raylib.formats import embstore, map_folder, mapfile, parts
from raylib.io import storage
from raylib.pipelines.common.map_input import finished_folder, read_map_input

ARROW = "->"  # in transitions (forest->cropland; forest->forest: stable) and periods
# beside the parts, under "_" names that every reader of the map skips
TRANSITIONS, PICTURE = "_transitions.csv", "_quicklook/change.png"
READ = ["tile_id", "scene_crs", "geometry", "bbox", "label", "confidence", "probs", "status", "reason", "error",
        "datetime", "fill_fraction"]


@dataclass
class DateMap:
    """One date: its map's rows (one per ground tile), classes and identity."""

    uri: str
    name: str  # the date (the rows' median acquisition day), else the folder's name
    when: float | None  # median acquisition, epoch seconds
    table: pa.Table
    classes: list[str]
    model_id: str
    grid: dict


def _name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


def read_date(uri: str) -> DateMap:
    """A map (or composite) folder as one date; refused in one line when it is not a finished
    ground-grid map with one row per tile."""
    got = read_map_input(uri, READ)
    if got.kind == "change":
        raise InputError(f"{uri} is a change map, not a map of one date.",
                         "give the maps (or composites) of the dates themselves.")
    grid = got.meta.get("grid") or {}
    if not grid.get("ground"):
        raise InputError(f"{uri} was mapped on its scenes' own grids, whose tiles do not line up across dates.",
                         "map every date with --grid ground (the same --tile-size and --gsd), then compare them.")
    table = got.table
    if table.num_rows and len(table.column("tile_id").unique()) < table.num_rows:
        comp = storage.join(uri.rstrip("/"), mapfile.COMPOSITE)
        has = storage.is_prefix(comp) or storage.exists(comp)
        raise InputError(f"{uri} holds several observations of some ground tiles (overlapping scenes or dates): "
                         "a change compares one class per tile and date.",
                         f"pass its composite, {comp}" if has else
                         "map it again with --composite best (or mean) and pass <map>/_composite.")
    when = table.column("datetime").cast(pa.int64()).drop_null().to_numpy()
    seconds = float(np.median(when)) if len(when) else None
    name = time.strftime("%Y-%m-%d", time.gmtime(seconds)) if seconds is not None else \
        _name(finished_folder(uri))
    return DateMap(uri, name, seconds, table, list(got.meta["classes"]), str(got.meta.get("model_id")), grid)


def _groups(dates: list[DateMap], crosswalk: str | None) -> tuple[list[str], list[np.ndarray]]:
    """The classes the change is told in, and per date a (its classes x groups) 0/1 matrix
    that sums its probabilities into them: its own classes when every date has the same
    model, else a crosswalk's groups."""
    first = dates[0]
    if crosswalk is None:
        for d in dates[1:]:
            if (d.classes, d.model_id) != (first.classes, first.model_id):
                what = "classes" if d.classes != first.classes else "model"
                raise ConfigError(
                    f"{first.uri} (model {first.model_id}, {len(first.classes)} classes) and {d.uri} (model "
                    f"{d.model_id}, {len(d.classes)} classes) were mapped with another {what}: their classes need "
                    "not mean the same.",
                    "map both dates with one model, or give --crosswalk (a YAML 'map:' section naming the common "
                    "group of every class of both).")
        k = len(first.classes)
        return first.classes, [np.eye(k) for _ in dates]
    cw = reference.load_crosswalk(crosswalk, need_reference=False)
    mats = []
    for d in dates:
        cw.check_map_classes(d.classes)
        m = np.zeros((len(d.classes), len(cw.groups)))
        for i, c in enumerate(d.classes):
            m[i, cw.groups.index(cw.map[c])] = 1.0
        mats.append(m)
    return list(cw.groups), mats


def _check(dates: list[DateMap]) -> None:
    """Same grid, dates in order, and each pair of dates sharing ground tiles."""
    first = dates[0]
    for d in dates[1:]:
        if d.grid != first.grid:
            raise ConfigError(f"{first.uri} (grid {first.grid}) and {d.uri} (grid {d.grid}) are on different "
                              "ground grids: their tiles are other places.",
                              "map every date with the same --tile-size, --stride and --gsd.")
    for a, b in zip(dates, dates[1:]):
        if a.when is not None and b.when is not None and b.when <= a.when:
            raise ConfigError(f"The dates are out of order: {a.uri} ({a.name}) comes before {b.uri} ({b.name}) "
                              "but was acquired on or after it.",
                              "give --before the earlier map and --after the later one (--dates in date order).")
        shared = np.intersect1d(np.asarray(a.table.column("tile_id").to_pylist(), object).astype(str),
                                np.asarray(b.table.column("tile_id").to_pylist(), object).astype(str))
        if not len(shared):
            raise InputError(f"{a.uri} and {b.uri} share no ground tile: they map other places (or other CRS "
                             "zones).", "give maps of the same place, made on the same ground grid.")


@dataclass
class Joined:
    """The dates joined on ``tile_id``: one row per tile seen on any date."""

    ids: np.ndarray
    rows: np.ndarray  # tiles x dates: the tile's row in each date's table (-1: not mapped)
    labels: np.ndarray  # tiles x dates: group index (-1: no observation)
    probs: list[np.ndarray]  # per date: tiles x groups
    confidence: np.ndarray  # tiles x dates (NaN: no observation)


def join(dates: list[DateMap], mats: list[np.ndarray]) -> Joined:
    ids_per = [np.asarray(d.table.column("tile_id").to_pylist(), object).astype(str) for d in dates]
    ids = np.unique(np.concatenate(ids_per))
    n, k = len(ids), mats[0].shape[1]
    rows = np.full((n, len(dates)), -1, np.int64)
    labels = np.full((n, len(dates)), -1, np.int64)
    conf = np.full((n, len(dates)), np.nan)
    probs = []
    for j, (d, own, m) in enumerate(zip(dates, ids_per, mats)):
        at = np.searchsorted(ids, own)
        rows[at, j] = np.arange(len(own))
        ok = np.asarray(d.table.column("status").to_pylist(), object) == "ok"
        p = np.full((n, k), np.nan)
        col = d.table.column("probs").combine_chunks()
        if ok.any():
            raw = np.asarray(col.filter(pa.array(ok)).flatten().to_numpy(zero_copy_only=False),
                             np.float64).reshape(-1, m.shape[0])
            p[at[ok]] = raw @ m
        seen = np.isfinite(p).all(axis=1)
        labels[seen, j] = np.argmax(p[seen], axis=1)
        conf[seen, j] = p[seen].max(axis=1)
        probs.append(p)
    return Joined(ids, rows, labels, probs, conf)


def _reasons(dates: list[DateMap], joined: Joined, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Per tile, why date ``j`` does not observe it (reason, error text; "" where it does)."""
    d = dates[j]
    reason = np.asarray(d.table.column("reason").to_pylist(), object)
    error = np.asarray(d.table.column("error").to_pylist(), object)
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


def _tile_columns(dates: list[DateMap], joined: Joined) -> dict[str, pa.Array]:
    """Each tile's place (id, CRS, footprint) from the first date that has a row for it, and
    the larger fill of its first and last rows."""
    n = len(joined.ids)
    src = np.argmax(joined.rows >= 0, axis=1)
    out = {}
    for c in ("scene_crs", "geometry", "bbox"):
        pieces, order = [], []
        for j, d in enumerate(dates):
            sel = np.flatnonzero(src == j)
            if len(sel):
                pieces.append(d.table.column(c).take(pa.array(joined.rows[sel, j])).combine_chunks())
                order.append(sel)
        merged = pa.concat_arrays(pieces) if pieces else pa.array([], mapfile.MAP_SCHEMA.field(c).type)
        back = np.argsort(np.concatenate(order)) if order else np.array([], np.int64)
        out[c] = merged.take(pa.array(back))
    fill = np.zeros(n)
    for j in (0, len(dates) - 1):
        r = joined.rows[:, j]
        f = np.nan_to_num(np.asarray(dates[j].table.column("fill_fraction").to_pylist(), float), nan=0.0)
        fill = np.maximum(fill, np.where(r >= 0, f[np.maximum(r, 0)] if len(f) else 0.0, 0.0))
    out["fill_fraction"] = pa.array(fill.astype(np.float32))
    return out


def _transition_rows(names: list[str], groups: list[str], acc: np.ndarray, seen: np.ndarray,
                     area: np.ndarray) -> list[dict]:
    """The transition table: per period (date i -> i + 1, the tiles observed at i + 1 with a
    class held at i) and over the whole span (the tiles of status ok), from, to, tiles, ha."""
    out = []
    periods = [(f"{names[i]}{ARROW}{names[i + 1]}", acc[:, i], acc[:, i + 1], (acc[:, i] >= 0) & seen[:, i + 1])
               for i in range(len(names) - 1)]
    if len(names) > 2:
        periods.append((f"{names[0]}{ARROW}{names[-1]}", acc[:, 0], acc[:, -1], seen[:, 0] & seen[:, -1]))
    for period, a, b, m in periods:
        pairs, inv = np.unique(np.stack([a[m], b[m]], axis=1), axis=0, return_inverse=True) if m.any() else \
            (np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
        inv = np.asarray(inv).reshape(-1)
        tiles = np.bincount(inv, minlength=len(pairs))
        ha = np.bincount(inv, weights=area[m], minlength=len(pairs))
        for (f, t), c, h in zip(pairs, tiles, ha):
            out.append({"period": period, "from": groups[f], "to": groups[t], "changed": bool(f != t),
                        "tiles": int(c), "hectares": round(float(h), 4)})
    return out


def _csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    buf.write("period,from,to,changed,tiles,hectares\n")
    for r in rows:
        buf.write(f"{r['period']},{r['from']},{r['to']},{str(r['changed']).lower()},{r['tiles']},{r['hectares']}\n")
    return buf.getvalue().encode()


def run_change(cfg: ChangeConfig, argv: list[str] | None = None) -> dict:
    t0 = time.time()
    storage.check_bucket(cfg.out)
    if len(set(u.rstrip("/") for u in cfg.maps)) < len(cfg.maps):
        raise ConfigError("The same map is given for two dates.", "give a map of each date.")
    dates = [read_date(u) for u in cfg.maps]
    _check(dates)
    groups, mats = _groups(dates, cfg.crosswalk)
    joined = join(dates, mats)
    dec = change.decide(joined.labels, joined.probs, joined.confidence, cfg.min_p_change, cfg.min_confidence,
                        cfg.persist)
    job = embstore.preprocessing_hash({"maps": [[d.uri, d.model_id, d.table.num_rows] for d in dates],
                                       "settings": cfg.model_dump(exclude={"overwrite", "out"})})
    map_folder.prepare(cfg.out, job, cfg.overwrite)
    map_folder.mark(cfg.out, job, "change", dates=[d.uri for d in dates])

    n, last = len(joined.ids), len(dates) - 1
    seen = joined.labels >= 0
    ok = seen[:, 0] & seen[:, last]
    r0, e0 = _reasons(dates, joined, 0)
    r1, e1 = _reasons(dates, joined, last)
    reason = np.where(r0 != "", r0, r1)
    error = np.where(e0 != "", e0, e1)
    error = np.where((e0 != "") & (e1 != ""), e0.astype(str) + "; " + e1.astype(str), error)
    src, dst = dec.accepted[:, 0], dec.accepted[:, last]
    changed = ok & (src != dst)
    names = [d.name for d in dates]
    at = np.full(n, -1)
    anyc = dec.changed.any(axis=1)
    at[anyc] = np.argmax(dec.changed[anyc], axis=1) + 1
    transitions = sorted({f"{groups[a]}{ARROW}{groups[b]}" for a, b in zip(src[ok], dst[ok])})
    label = np.array([f"{groups[a]}{ARROW}{groups[b]}" if o else None for a, b, o in zip(src, dst, ok)], object)
    label_index = np.array([transitions.index(v) if v is not None else -1 for v in label], np.int64)
    pfl = change.p_change(joined.probs[0], joined.probs[last])
    place = _tile_columns(dates, joined)
    area = reference.tile_areas_ha(pa.table({"geometry": place["geometry"]})) * \
        (1.0 - place["fill_fraction"].to_numpy(zero_copy_only=False))
    labels_per_date = pa.array([[groups[v] if v >= 0 else None for v in row] for row in joined.labels],
                               pa.list_(pa.string()))
    cols = {
        "tile_id": pa.array(joined.ids, pa.string()), **{c: place[c] for c in ("scene_crs", "geometry", "bbox")},
        "label": pa.array(label, pa.string()),
        "label_index": pa.array(label_index.astype(np.int16), pa.int16(), mask=label_index < 0),
        "from": pa.array([groups[v] if o else None for v, o in zip(src, ok)], pa.string()),
        "to": pa.array([groups[v] if o else None for v, o in zip(dst, ok)], pa.string()),
        "changed": pa.array(changed, pa.bool_(), mask=~ok),
        "p_change": mapfile.nullable(np.where(ok, pfl, np.nan)),
        "confidence_before": mapfile.nullable(np.where(ok, joined.confidence[:, 0], np.nan)),
        "confidence_after": mapfile.nullable(np.where(ok, joined.confidence[:, last], np.nan)),
        "changed_at": pa.array([names[a] if a >= 0 and o else None for a, o in zip(at, ok)], pa.string()),
        "pending": pa.array(dec.pending & ok, pa.bool_(), mask=~ok),
        "labels": labels_per_date,
        "fill_fraction": place["fill_fraction"],
        "status": pa.array(np.where(ok, "ok", "error").astype(str), pa.string()),
        "reason": pa.array([str(v) if not o else None for v, o in zip(reason, ok)], pa.string()),
        "error": pa.array([str(v) if not o else "" for v, o in zip(error, ok)], pa.string()),
    }
    table = pa.table({f.name: cols[f.name] for f in mapfile.CHANGE_SCHEMA}, schema=mapfile.CHANGE_SCHEMA)
    table = table.take(pa.array(embstore.zorder(table)))
    extra = {"kind": "change", "grid": dates[0].grid, "groups": groups,
             "dates": [{"name": d.name, "map": d.uri, "model_id": d.model_id} for d in dates],
             "min_p_change": cfg.min_p_change, "min_confidence": cfg.min_confidence, "persistence": cfg.persist,
             "crosswalk": cfg.crosswalk, "crs_note": "geometry in OGC:CRS84; scene_crs holds each tile's UTM zone"}
    name = "part-00000.parquet"
    mapfile.write_part(table, storage.join(cfg.out, parts.TMP, name), transitions, f"change:{job}", extra)
    map_folder.commit(cfg.out, [name])

    rows = _transition_rows(names, groups, dec.accepted, seen, area)
    storage.write_bytes(storage.join(cfg.out, TRANSITIONS), _csv(rows))
    picture = storage.join(cfg.out, PICTURE)
    storage.write_bytes(picture, change_png(table, groups, names, dates[0].model_id))
    raw_flicker, raw_base = change.flicker(joined.labels)
    kept_flicker, kept_base = change.flicker(np.where(seen, dec.accepted, -1))
    summary = {
        "result": "ok", "out": cfg.out, "dates": names, "maps": [d.uri for d in dates], "tiles": n,
        "counts": {"ok": int(ok.sum()), "error": int((~ok).sum())},
        "reasons": {str(k): int(v) for k, v in zip(*np.unique(reason[~ok].astype(str), return_counts=True))},
        "changed_tiles": int(changed.sum()), "changed_hectares": round(float(area[changed].sum()), 4),
        "stable_tiles": int((ok & ~changed).sum()),
        "candidates": int((dec.candidate.any(axis=1) & ok).sum()),  # tiles whose mapped class differs somewhere
        "pending": int((dec.pending & ok).sum()),
        "flicker_share": round(raw_flicker / raw_base, 4) if raw_base else None,
        "flicker_tiles": raw_flicker,
        "flicker_share_after": round(kept_flicker / kept_base, 4) if kept_base else None,
        "persistence": cfg.persist, "min_p_change": cfg.min_p_change, "min_confidence": cfg.min_confidence,
        "groups": groups, "transitions": rows,
        "files": {"map": cfg.out, "transitions": storage.join(cfg.out, TRANSITIONS), "picture": picture},
        "created_by": " ".join(argv or []), "seconds": round(time.time() - t0, 2),
    }
    map_folder.finish(cfg.out, summary)
    return summary


TRANSITION_COLOURS = [(230, 25, 75), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
                      (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128), (128, 128, 0)]
STABLE = (235, 235, 235)


def change_png(table: pa.Table, groups: list[str], names: list[str], model_id: str) -> bytes:
    """Before, after and change panels per CRS zone: the classes of the first and last dates,
    then each changed tile coloured by its transition (the ten largest; the rest as one),
    stable tiles pale grey, tiles without both dates black."""
    from raylib.pipelines.common.tile_grid import ground_cells

    k = len(groups)
    labels = table.column("labels").to_pylist()
    first = np.array([groups.index(v[0]) if v and v[0] is not None else -1 for v in labels], np.int64)
    last = np.array([groups.index(v[-1]) if v and v[-1] is not None else -1 for v in labels], np.int64)
    lab = np.asarray(table.column("label").to_pylist(), object)
    changed = table.column("changed").fill_null(False).to_numpy(zero_copy_only=False)
    moves, counts = np.unique(lab[changed].astype(str), return_counts=True) if changed.any() else ([], [])
    top = [m for _, m in sorted(zip(-np.asarray(counts), moves))][: len(TRANSITION_COLOURS)]
    other = changed.any() and len(moves) > len(top)
    legend = list(groups) + ["no change"] + top + (["other change"] if other else [])
    colours = reports.palette(groups) + [STABLE] + TRANSITION_COLOURS[: len(top)] + ([(90, 90, 90)] if other else [])
    move = np.full(len(lab), -1, np.int64)
    ok = table.column("status").to_numpy(zero_copy_only=False) == "ok"
    move[ok & ~changed] = k
    for i, m in enumerate(top):
        move[changed & (lab == m)] = k + 1 + i
    if other:
        move[changed & (move < 0)] = len(legend) - 1
    grids, captions = [], []
    for z in ground_cells(table):
        grids += [z.draw(first), z.draw(last), z.draw(move)]
        n_changed = int(changed[z.rows].sum())
        captions += [f"{names[0]} ({z.zone})", names[-1], f"change: {n_changed} of {len(z.rows)} tiles"]
    return reports.side_by_side_png(f"change {names[0]} {ARROW} {names[-1]} | model {model_id}", grids, legend,
                                    captions, none_label="not observed on both dates", colours=colours)

"""``landcover accounts``: the area of each class (of a map or composite) or transition (of a
change map) per region.

Each tile of status ok counts in each zone by its share of area inside it (``--assign
share``; a tile across a border is split) or wholly in the zone holding its centre
(``centre``): ``eval.zones``. A tile's area is its geodesic footprint less its fill, as
``assess`` computes it. With ``--samples`` (a labelled sample of the map, as ``landcover
sample`` draws it) each zone also gets area estimates with 95 % intervals: the stratified
estimator of Olofsson et al. (2014) restricted to the zone (the strata are the map's classes
inside the zone, weighted by their mapped area there, and the units are the sample units
whose tile counts most in the zone). A zone where a stratum with area has fewer than two
units gets no interval, and says which.

The map is read a range of tile ids at a time (about ``--partition-tiles`` tiles), each range
summed by one Ray Data task (in the driver's process when there is one): the driver holds
the sums per zone and class, not the tiles. A range's sums wait under ``_tmp/`` until the
accounts are written, so a killed run, run again, resumes with the ranges not done.

Writes ``accounts.csv`` and ``accounts.parquet`` (zone, class, ``tiles``: whole tiles that
count in the zone, ``tiles_by_share``: tiles weighted by their share in it, hectares, share of
the zone's mapped area; with samples ``estimate_ha``, ``ci95_ha``), ``charts/<zone>.png`` (a bar
per class), ``summary.json`` (per zone and in all: mapped, not observed and outside every
zone), then ``_SUCCESS``.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.config import AccountsConfig
from raylib.errors import InputError
from raylib.eval import accuracy, reference, reports, zones
from raylib.failpoints import failpoint
from raylib.formats import mapfile, out_folder, parts
from raylib.formats.parts import TMP
from raylib.io import storage
from raylib.io.names import safe_name
from raylib.pipelines.common.map_input import MapSource, finished_folder, id_ranges, open_map_input
from raylib.pipelines.common.ray_session import check_shared_paths
from raylib.raster import aoi

COLUMNS = ["tile_id", "label", "status", "geometry", "scene_crs", "fill_fraction", "area_ha"]


def read_zones(cfg: AccountsConfig) -> tuple[list[str], list]:
    """The zones' names and polygons (lon/lat); refused in one line without polygons or the
    named field."""
    gdf = aoi.read_features(cfg.zones, "zones file")
    polys = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if polys.empty:
        kinds = sorted(set(gdf.geometry.geom_type)) or ["nothing"]
        raise InputError(f"The zones file {cfg.zones} holds no polygon (it holds {', '.join(kinds)}).",
                         "give the regions as polygons.")
    if cfg.zone_field not in polys.columns:
        fields = [c for c in polys.columns if c != polys.geometry.name]
        raise InputError(f"The zones file {cfg.zones} has no field {cfg.zone_field!r} (fields: {fields}).",
                         "name the field that names each region with --zone-field.")
    names = polys[cfg.zone_field]
    if names.isna().any():
        raise InputError(f"{int(names.isna().sum())} zone(s) of {cfg.zones} have no {cfg.zone_field!r}.",
                         "give every zone a name, or drop the unnamed ones.")
    import shapely

    out: dict[str, list] = {}
    for name, geom in zip(names.astype(str), polys.geometry.values):  # zones of one name: one region
        out.setdefault(name, []).append(shapely.make_valid(geom))
    return list(out), [shapely.union_all(np.array(g, object)) for g in out.values()]


def _slug(name: str) -> str:
    return safe_name(name, sep="_", default="zone")


def _units(cfg: AccountsConfig) -> tuple[np.ndarray, list, list]:
    """The labelled sample: each unit's tile id, map class and reference class."""
    t, m, r = reference.labelled_sample(cfg.samples, ("tile_id",))
    tid = np.asarray(t.column("tile_id").to_pylist(), object).astype(str)
    return tid, m, r


@dataclass
class AccountsJob:
    """What every partition needs (it travels to the Ray tasks)."""

    source: MapSource
    polys: list
    assign: str
    unit_ids: np.ndarray  # the sample's tile ids (none without --samples)


def _partition_task(k: int, lo: str, hi: str, job: AccountsJob, out: str) -> dict:
    """One range of tile ids as a Ray Data task (``stages.tasks``) -> its sums, also kept under
    ``<out>/_tmp/`` until the accounts are written (a rerun resumes with them)."""
    sums = partition_sums(job, (lo, hi or None))
    storage.write_bytes(storage.join(out, TMP, _sums_name(k)), json.dumps(sums).encode())
    return sums


SUMS_VERSION = 2  # a partition's sums per zone and class: [tiles by share, hectares, tiles] (1: without tiles)


def partition_sums(job: AccountsJob, ids: tuple[str, str | None] | None) -> dict:
    """The tiles with ids in ``ids`` (None: all) summed per zone and class: tiles (by share),
    hectares and tiles (each that counts in the zone, once); hectares not observed per zone and outside every zone; and, for each sample
    unit among them, the zone where its tile counts most and the tile's class."""
    table = job.source.read(COLUMNS, ids)
    status = np.asarray(table.column("status").to_pylist(), object)
    label = np.asarray(table.column("label").to_pylist(), object)
    ok = (status == "ok") & np.array([v is not None for v in label], bool)
    area = mapfile.mapped_area_ha(table)
    mem = zones.memberships(table, job.polys, job.assign)
    cells: dict[str, list] = {}
    unseen = [0.0] * len(job.polys)
    for t, z, sh in zip(mem.tile, mem.zone, mem.share):
        if ok[t]:
            c = cells.setdefault(f"{z}\t{label[t]}", [0.0, 0.0, 0])
            c[0] += float(sh)
            c[1] += float(area[t] * sh)
            c[2] += int(sh > 0)
        else:
            unseen[z] += float(area[t] * sh)
    counted = np.zeros(len(area))
    np.add.at(counted, mem.tile, mem.share)
    best = np.full(len(area), -1)
    most = np.zeros(len(area))
    for t, z, sh in zip(mem.tile, mem.zone, mem.share):
        if sh > most[t]:
            best[t], most[t] = z, sh
    units = []
    if len(job.unit_ids):
        tid = np.asarray(table.column("tile_id").to_pylist(), object).astype(str)
        for row in np.flatnonzero(np.isin(tid, job.unit_ids)):
            units.append([tid[row], int(best[row]), None if label[row] is None else str(label[row])])
    return {"cells": cells, "unseen": unseen, "members": int(len(mem.tile)),
            "map_hectares": float(area[ok].sum()),
            "outside_hectares": float((area[ok] * np.clip(1.0 - counted[ok], 0.0, 1.0)).sum()), "units": units}


def _zone_estimates(counts: np.ndarray, areas: np.ndarray, groups: list[str]) -> tuple[dict | None, str | None]:
    """The stratified estimates of one zone, or why there are none."""
    n_i = counts.sum(axis=1)
    short = [f"{g} ({int(n)})" for g, a, n in zip(groups, areas, n_i) if a > 0 and n < 2]
    if short:
        return None, f"too few sample units for an interval in stratum(s) {', '.join(short)}: at least 2 each"
    return accuracy.stratified_estimates(counts, areas, groups), None


def _resumed(cfg: AccountsConfig, job_id: str, n_parts: int) -> dict[int, dict]:
    """The partitions' sums a killed run of the same accounts left under ``_tmp/`` (those of
    other settings or inputs are cleared)."""
    tmp = storage.join(cfg.out, TMP)
    marker = storage.join(tmp, "job.json")
    if storage.exists(marker) and json.loads(storage.read_bytes(marker)).get("job") == job_id:
        return parts.read_records(tmp, {k: _sums_name(k) for k in range(n_parts)})
    storage.delete_prefix(storage.as_prefix(tmp))
    storage.write_bytes(marker, json.dumps({"job": job_id}).encode())
    return {}


def _sums_name(k: int) -> str:
    return f"sums-{k:05d}.json"


def _sums(cfg: AccountsConfig, job: AccountsJob) -> list[dict]:
    """Every partition's sums: one in this process, several as Ray Data tasks (resumed)."""
    n_parts = max(1, math.ceil(job.source.count() / cfg.partition_tiles))
    if n_parts == 1 and cfg.ray_address is None:
        return [partition_sums(job, None)]
    from raylib.pipelines.common.stages import tasks

    done_marker = out_folder.success_uri(finished_folder(cfg.map))
    job_id = parts.digest({"map": [cfg.map, storage.fingerprint(done_marker)], "rows": job.source.count(),
                           "parts": n_parts,
                           "zones": [cfg.zones, storage.fingerprint(cfg.zones)], "field": cfg.zone_field,
                           "assign": cfg.assign, "sums": SUMS_VERSION,
                           "samples": [cfg.samples, storage.fingerprint(cfg.samples) if cfg.samples else None]})
    done = _resumed(cfg, job_id, n_parts)
    todo = [{"k": k, "lo": lo, "hi": hi or ""} for k, (lo, hi) in enumerate(id_ranges(n_parts)) if k not in done]
    if todo:
        for i, sums in tasks(_partition_task, todo, {"job": job, "out": cfg.out}, cfg.ray_address):
            done[todo[i]["k"]] = sums
            failpoint("accounts_partition_done")
    return [done[k] for k in sorted(done)]


def run_accounts(cfg: AccountsConfig, argv: list[str] | None = None) -> dict:
    t0 = time.time()
    check_shared_paths(cfg.ray_address, {"--out": cfg.out, "--map": cfg.map})
    out_folder.check(cfg.out, "accounts", cfg.overwrite)
    source = open_map_input(cfg.map)
    names, polys = read_zones(cfg)
    tid, m, r = _units(cfg) if cfg.samples else (np.zeros(0, str), [], [])
    sums = _sums(cfg, AccountsJob(source, polys, cfg.assign, np.unique(tid)))
    if not sum(s["members"] for s in sums):
        raise InputError(f"No tile of the map {cfg.map} lies in any zone of {cfg.zones}.",
                         "give zones over the mapped area (in their own CRS, or WGS 84 for GeoJSON).")
    cells: dict[tuple[int, str], list] = {}
    for s in sums:
        for key, (t, h, n) in s["cells"].items():
            z, c = key.split("\t", 1)
            v = cells.setdefault((int(z), c), [0.0, 0.0, 0])
            v[0] += t
            v[1] += h
            v[2] += n
    classes = sorted({c for _, c in cells})
    ci = {c: i for i, c in enumerate(classes)}
    nz, k = len(names), len(classes)
    shares, ha, tiles = np.zeros((nz, k)), np.zeros((nz, k)), np.zeros((nz, k), np.int64)
    for (z, c), (t, h, n) in cells.items():
        shares[z, ci[c]], ha[z, ci[c]], tiles[z, ci[c]] = t, h, n
    unseen_ha = np.sum([s["unseen"] for s in sums], axis=0)
    outside_ha = sum(s["outside_hectares"] for s in sums)
    map_ha = sum(s["map_hectares"] for s in sums)

    estimates: dict[int, dict] = {}
    notes: dict[str, str] = {}
    if cfg.samples:
        where = {u[0]: (u[1], u[2]) for s in sums for u in s["units"]}
        missing = [t for t in tid if t not in where]
        if missing:
            raise InputError(f"{len(missing)} unit(s) of the sample table {cfg.samples} are tiles the map {cfg.map} "
                             f"does not have (first: {missing[0]}).",
                             "give the sample drawn from this map (landcover sample --map).")
        wrong = [i for i, (t, mm) in enumerate(zip(tid, m)) if where[t][1] != mm]
        if wrong:
            i = wrong[0]
            raise InputError(f"{len(wrong)} unit(s) of {cfg.samples} name a map class their tile does not have "
                             f"(first: {tid[i]}: {m[i]} vs {where[tid[i]][1]}).",
                             "give the sample drawn from this map (landcover sample --map).")
        cw = reference.load_crosswalk(cfg.crosswalk) if cfg.crosswalk else \
            reference.Crosswalk.identity(sorted(set(classes) | set(r)))  # (a reference class the map never gives)
        cw.check_map_classes(classes)
        unknown = sorted({v for v in r if cw.reference_group(v) is None})
        if unknown:
            raise InputError(f"Reference class(es) {unknown} of {cfg.samples} are not in the crosswalk "
                             f"({cw.source}).", "add each of them to its 'reference:' section with its group.")
        groups = list(dict.fromkeys([cw.map[c] for c in classes] + [cw.reference_group(v) for v in r]))
        gi = {g: i for i, g in enumerate(groups)}
        for z in range(nz):  # each unit in the zone where its tile counts most
            counts = np.zeros((len(groups), len(groups)), np.int64)
            for t, a, b in zip(tid, m, r):
                if where[t][0] == z:
                    counts[gi[cw.map[a]], gi[cw.reference_group(b)]] += 1
            areas = np.zeros(len(groups))
            for c, i in ci.items():
                areas[gi[cw.map[c]]] += ha[z, i]
            est, why = _zone_estimates(counts, areas, groups)
            if est is not None:
                estimates[z] = est
            else:
                notes[names[z]] = why
        out_classes = groups
    else:
        out_classes = classes

    rows_out = []
    for z, name in enumerate(names):
        total = ha[z].sum()
        est = estimates.get(z)
        for c in out_classes:
            mine = [ci[x] for x in classes if (cw.map[x] if cfg.samples else x) == c]  # a group: its classes
            mapped_h = float(ha[z, mine].sum())
            row = {"zone": name, "class": c, "tiles": int(tiles[z, mine].sum()),
                   "tiles_by_share": round(float(shares[z, mine].sum()), 4), "hectares": round(mapped_h, 4),
                   "share": round(mapped_h / total, 6) if total > 0 else None}
            if cfg.samples:
                a = est["area"][c] if est else None
                row.update(estimate_ha=round(a["estimate"], 4) if a else None, ci95_ha=round(a["ci95"], 4) if a else None)
            rows_out.append(row)

    files = _write(cfg, rows_out, names, out_classes, estimates)
    summary = {
        "result": "ok", "map": cfg.map, "kind": source.kind, "zones": cfg.zones, "zone_field": cfg.zone_field,
        "assign": cfg.assign, "samples": cfg.samples, "classes": out_classes,
        "per_zone": {name: {"mapped_hectares": round(float(ha[z].sum()), 4),
                            "not_observed_hectares": round(float(unseen_ha[z]), 4),
                            **({"estimates": estimates[z]} if z in estimates else {}),
                            **({"no_interval": notes[name]} if name in notes else {})}
                     for z, name in enumerate(names)},
        "map_hectares": round(float(map_ha), 4), "partitions": len(sums),
        "zoned_hectares": round(float(ha.sum()), 4), "outside_hectares": round(outside_ha, 4),
        "files": files, "created_by": " ".join(argv or []), "seconds": round(time.time() - t0, 2),
    }
    storage.write_bytes(storage.join(cfg.out, "summary.json"), json.dumps(summary, indent=2).encode())
    storage.delete_prefix(storage.as_prefix(storage.join(cfg.out, TMP)))
    out_folder.finish(cfg.out)
    return summary


def _write(cfg: AccountsConfig, rows: list[dict], names: list[str], classes: list[str],
           estimates: dict[int, dict]) -> dict:
    import pyarrow.parquet as pq

    out_folder.unfinish(cfg.out)
    storage.delete_prefix(storage.as_prefix(storage.join(cfg.out, "charts")))  # (an earlier run's zones)
    cols = ["zone", "class", "tiles", "tiles_by_share", "hectares", "share"] + (["estimate_ha", "ci95_ha"] if cfg.samples else [])
    csv = io.StringIO()
    csv.write(",".join(cols) + "\n")
    for r in rows:
        csv.write(",".join("" if r[c] is None else (f'"{r[c]}"' if "," in str(r[c]) else str(r[c])) for c in cols)
                  + "\n")
    files = {"csv": storage.join(cfg.out, "accounts.csv"), "parquet": storage.join(cfg.out, "accounts.parquet")}
    storage.write_bytes(files["csv"], csv.getvalue().encode())
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="zstd")
    storage.write_bytes(files["parquet"], buf.getvalue())
    colours = reports.palette(classes)
    charts: dict[str, str] = {}
    slugs: set[str] = set()
    for z, name in enumerate(names):
        slug = _slug(name)
        slug = slug if slug not in slugs else f"{slug}-{z}"
        slugs.add(slug)
        mine = [r for r in rows if r["zone"] == name and (r["hectares"] > 0 or r.get("estimate_ha"))]
        values = [r["estimate_ha"] if cfg.samples and r.get("estimate_ha") is not None else r["hectares"]
                  for r in mine]
        errors = [r.get("ci95_ha") for r in mine] if cfg.samples and z in estimates else None
        what = "estimated area (95 % interval)" if errors else "mapped area"
        uri = storage.join(cfg.out, "charts", f"{slug}.png")
        storage.write_bytes(uri, reports.bars_png(f"{name}: {what}", [r["class"] for r in mine], values,
                                                  [colours[classes.index(r["class"])] for r in mine], "ha", errors))
        charts[name] = uri
    files["charts"] = charts
    return files

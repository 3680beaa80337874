"""``landcover change``: the driver. The dates are opened and checked without reading their
tiles (``dates``); the tile ids are cut into ranges of about ``--partition-tiles`` tiles, and
each range is one partition (``partition.run_partition``: read from every date, joined,
decided, written, summed), run as a Ray Data task (in the driver's process when there is one
partition and no cluster is named). The driver holds the partitions' sums only, so its
memory does not grow with the tiles; a partition's part and sums land under ``_tmp/``, and a
rerun of a killed run resumes with the partitions not done. Then the transition table, the
picture (up to ``PICTURE_TILES`` tiles), the summary and ``_SUCCESS`` (``formats.map_folder``).
"""

from __future__ import annotations

import io
import math
import time

from raylib.config import ChangeConfig
from raylib.errors import ConfigError
from raylib.failpoints import failpoint
from raylib.formats import map_folder, mapfile, parts
from raylib.io import storage
from raylib.pipelines.change import dates as datelib
from raylib.pipelines.change.partition import ChangeJob, record_name, run_partition
from raylib.pipelines.common.map_input import MapSource, id_ranges
from raylib.pipelines.common.run_tail import finish_run
from raylib.pipelines.common.ray_session import check_shared_paths

# beside the parts, under "_" names that every reader of the map skips
TRANSITIONS, PICTURE = "_transitions.csv", f"{mapfile.QUICKLOOKS}/change.png"
PICTURE_TILES = 1_000_000  # a larger change map has no picture (the driver would hold a cell per tile)


def _partition_task(k: int, lo: str, hi: str, job: ChangeJob) -> dict:
    """One partition as a Ray Data task (``stages.tasks``): ``hi`` "" is no end."""
    return run_partition(job, k, (lo, hi or None))


def _run_partitions(cfg: ChangeConfig, job: ChangeJob, todo: list[tuple[int, tuple]], in_process: bool
                    ) -> dict[int, dict]:
    """The partitions ``todo`` (number, id range) -> their sums, in this process or as Ray
    Data tasks."""
    out: dict[int, dict] = {}
    if not todo:
        return out
    if in_process:
        for k, ids in todo:
            out[k] = run_partition(job, k, ids)
            failpoint("change_partition_done")
        return out
    from raylib.pipelines.common.stages import tasks

    items = [{"k": k, "lo": lo, "hi": hi or ""} for k, (lo, hi) in todo]
    for i, sums in tasks(_partition_task, items, {"job": job}, cfg.ray_address):
        out[items[i]["k"]] = sums
        failpoint("change_partition_done")
    return out


def _undo(out: str, existed: bool) -> None:
    """A run refused after it started writing: leave ``out`` as it was."""
    if not existed:
        storage.delete_prefix(storage.as_prefix(out))
    else:
        storage.delete_prefix(storage.as_prefix(storage.join(out, parts.TMP)))
        storage.delete_prefix(storage.join(out, mapfile.MARKER))


def run_change(cfg: ChangeConfig, argv: list[str] | None = None) -> dict:
    t0 = time.time()
    storage.check_bucket(cfg.out)
    check_shared_paths(cfg.ray_address, {"--out": cfg.out, "--dates": cfg.maps})
    if len({u.rstrip("/") for u in cfg.maps}) < len(cfg.maps):
        raise ConfigError("The same map is given for two dates.", "give a map of each date.")
    dates = [datelib.open_date(u) for u in cfg.maps]
    datelib.check_dates(dates)
    groups, mats = datelib.groups(dates, cfg.crosswalk)
    rows = max(d.source.count() for d in dates)
    n_parts = max(1, math.ceil(rows / max(1, cfg.partition_tiles)))
    job_id = parts.digest({"maps": [[d.uri, d.model_id, d.source.count(), d.version] for d in dates],
                           "parts": n_parts,
                           "settings": cfg.model_dump(exclude={"overwrite", "out", "ray_address"})})
    existed = storage.exists(cfg.out) or storage.is_prefix(cfg.out)
    resumed = map_folder.prepare(cfg.out, job_id, cfg.overwrite)
    # the sums of the partitions a killed run of the same job finished
    done = parts.read_records(storage.join(cfg.out, parts.TMP), {k: record_name(k) for k in range(n_parts)}) \
        if resumed else {}
    keep = {record_name(k) for k in done} | {s["part"] for s in done.values() if s.get("part")}
    parts.remove_tmp_debris(cfg.out, keep=keep)
    map_folder.mark(cfg.out, job_id, "change", dates=[d.uri for d in dates])
    extra = {"kind": "change", "model_id": f"change:{job_id}", "grid": dates[0].grid, "groups": groups,
             "dates": [{"name": d.name, "map": d.uri, "model_id": d.model_id} for d in dates],
             "min_p_change": cfg.min_p_change, "min_confidence": cfg.min_confidence, "persistence": cfg.persist,
             "crosswalk": cfg.crosswalk, "crs_note": "geometry in OGC:CRS84; scene_crs holds each tile's UTM zone"}
    job = ChangeJob(dates, mats, groups, cfg.min_p_change, cfg.min_confidence, cfg.persist, cfg.out, extra)
    ranges = id_ranges(n_parts)
    todo = [(k, ranges[k]) for k in range(n_parts) if k not in done]
    sums = {**done, **_run_partitions(cfg, job, todo, in_process=n_parts == 1 and cfg.ray_address is None)}
    errors = [s["error"] for s in sums.values() if "error" in s]
    if errors:
        _undo(cfg.out, existed)
        raise datelib.several_observations(dates[errors[0]["date"]], errors[0]["example"])
    for j in range(len(dates) - 1):
        if not sum(s["shared"][j] for s in sums.values()):
            _undo(cfg.out, existed)
            raise datelib.no_shared_tile(dates[j], dates[j + 1])
    names = sorted(s["part"] for s in sums.values() if s.get("part"))
    map_folder.commit(cfg.out, names)
    summary = _summary(cfg, job, sums, names, argv)
    summary.update(partitions=n_parts, partitions_resumed=len(done), seconds=round(time.time() - t0, 2))
    return finish_run(cfg.out, summary, "change", cfg.cog)


def _summary(cfg: ChangeConfig, job: ChangeJob, sums: dict[int, dict], names: list[str], argv) -> dict:
    """The partitions' sums added up; the transition table and the picture written."""
    d = len(job.dates)
    merged: dict[tuple, list] = {}
    for s in sums.values():
        for period, f, t, tiles, ha in s["transitions"]:
            m = merged.setdefault((period, f, t), [0, 0.0])
            m[0] += tiles
            m[1] += ha
    period_names = [f"{job.names[i]}->{job.names[i + 1]}" for i in range(d - 1)] + \
        ([f"{job.names[0]}->{job.names[-1]}"] if d > 2 else [])
    rows = [{"period": period_names[p], "from": job.groups[f], "to": job.groups[t], "changed": f != t,
             "tiles": v[0], "hectares": round(v[1], 4)} for (p, f, t), v in sorted(merged.items())]
    csv = io.StringIO()
    csv.write("period,from,to,changed,tiles,hectares\n")
    for r in rows:
        csv.write(f"{r['period']},{r['from']},{r['to']},{str(r['changed']).lower()},{r['tiles']},{r['hectares']}\n")
    storage.write_bytes(storage.join(cfg.out, TRANSITIONS), csv.getvalue().encode())
    total = sum(s["tiles"] for s in sums.values())
    ok = sum(s["ok"] for s in sums.values())
    picture = None
    if total <= PICTURE_TILES:
        from raylib.pipelines.change.picture import COLUMNS, change_png
        from raylib.pipelines.common.imagery import zone_imagery

        table = MapSource(cfg.out, "change", {}, mapfile.CHANGE_SCHEMA).read(COLUMNS) if names else None
        if table is not None:
            ends = (job.dates[0].source, job.dates[-1].source)
            picture = storage.join(cfg.out, PICTURE)
            storage.write_bytes(picture, change_png(table, job.groups, job.names, job.dates[0].model_id, job.dates[0].grid,
                                                    lambda j, zone, scale: zone_imagery(ends[j], zone, scale)))
    reasons: dict[str, int] = {}
    for s in sums.values():
        for r, c in s["reasons"].items():
            reasons[r] = reasons.get(r, 0) + c
    flick = [sum(s["flicker"][i] for s in sums.values()) for i in range(4)]
    changed = sum(s["changed_tiles"] for s in sums.values())
    return {
        "result": "ok", "out": cfg.out, "dates": job.names, "maps": [x.uri for x in job.dates], "tiles": total,
        "counts": {"ok": ok, "error": total - ok}, "reasons": dict(sorted(reasons.items())),
        "changed_tiles": changed, "changed_hectares": round(sum(s["changed_hectares"] for s in sums.values()), 4),
        "stable_tiles": ok - changed, "candidates": sum(s["candidates"] for s in sums.values()),
        "pending": sum(s["pending"] for s in sums.values()),
        "flicker_share": round(flick[0] / flick[1], 4) if flick[1] else None, "flicker_tiles": flick[0],
        "flicker_share_after": round(flick[2] / flick[3], 4) if flick[3] else None,
        "persistence": cfg.persist, "min_p_change": cfg.min_p_change, "min_confidence": cfg.min_confidence,
        "groups": job.groups, "transitions": rows, "parts": len(names),
        "files": {"map": cfg.out, "transitions": storage.join(cfg.out, TRANSITIONS), "picture": picture},
        "picture_note": None if picture or not total else f"no picture: {total:,} tiles (more than {PICTURE_TILES:,})",
        "created_by": " ".join(argv or []),
    }

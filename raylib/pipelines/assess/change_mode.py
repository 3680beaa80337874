"""Assessment of a change map against reference rasters of its first and last dates, tile by
tile as a map is assessed: each tile's reference transition is its reference group on the
first date -> on the last (a tile is assessed when it is pure enough on both), the map's
transitions are the strata, weighted by their mapped areas."""

from __future__ import annotations

import numpy as np

from raylib.config import AssessConfig
from raylib.errors import ConfigError, InputError
from raylib.eval import accuracy, reference
from raylib.formats import mapfile
from raylib.pipelines.assess.common import figures
from raylib.pipelines.common.map_input import read_map_input

ARROW = "->"


def assess_change(cfg: AssessConfig):
    got = read_map_input(cfg.map)
    if got.kind != "change":
        raise ConfigError(f"{cfg.map} is a map of one date: --reference-before/--reference-after assess a change map.",
                          "give a landcover change folder, or assess the map with --reference.")
    table = got.table
    groups_in = list(got.meta.get("groups") or [])
    cw = reference.load_crosswalk(cfg.crosswalk) if cfg.crosswalk else reference.Crosswalk.identity(groups_in)
    status = np.asarray(table.column("status").to_pylist(), object)
    ok = status == "ok"
    if not ok.any():
        raise InputError(f"The change map {cfg.map} has no tile observed on both dates.", "assess a change with tiles.")
    src = np.asarray(table.column("from").to_pylist(), object)
    dst = np.asarray(table.column("to").to_pylist(), object)
    cw.check_map_classes(set(src[ok]) | set(dst[ok]))
    rows = np.flatnonzero(ok)
    mapped_table = table.take(rows)
    before = reference.raster_reference(mapped_table, cfg.reference_before, cw, cfg.purity)
    after = reference.raster_reference(mapped_table, cfg.reference_after, cw, cfg.purity)
    groups = cw.groups
    ref_b = np.full(len(rows), -1)
    ref_a = np.full(len(rows), -1)
    ref_b[before.rows] = before.group
    ref_a[after.rows] = after.group
    both = (ref_b >= 0) & (ref_a >= 0)
    g = len(groups)
    gi = {x: i for i, x in enumerate(groups)}
    map_t = np.array([gi[cw.map[a]] * g + gi[cw.map[b]] for a, b in zip(src[rows], dst[rows])])
    ref_t = np.where(both, ref_b * g + ref_a, -1)
    area = mapfile.mapped_area_ha(mapped_table)
    used = sorted(set(map_t) | set(ref_t[both]))  # the transitions the map or the reference holds
    names = [f"{groups[t // g]}{ARROW}{groups[t % g]}" for t in used]
    ui = {t: i for i, t in enumerate(used)}
    counts = np.zeros((len(used), len(used)), np.int64)
    np.add.at(counts, ([ui[t] for t in map_t[both]], [ui[t] for t in ref_t[both]]), 1)
    mapped = np.zeros(len(used))
    np.add.at(mapped, [ui[t] for t in map_t], area)
    not_assessed = {f"before: {k}": v for k, v in before.not_assessed.items()}
    not_assessed.update({f"after: {k}": v for k, v in after.not_assessed.items()})
    not_assessed["pure on one date only"] = int(((ref_b >= 0) ^ (ref_a >= 0)).sum())
    if not both.any():
        raise InputError(f"No tile of {cfg.map} got a reference class on both dates from {cfg.reference_before} "
                         f"and {cfg.reference_after} (not assessed: {not_assessed}).",
                         "check the crosswalk's reference codes and the purity threshold.")
    unreferenced = [names[i] for i in range(len(used)) if mapped[i] > 0 and counts[i].sum() == 0]
    if unreferenced:  # mapped transitions the references say nothing about: no estimate for them
        not_assessed["mapped_transitions_without_reference"] = unreferenced
        mapped = np.where(counts.sum(axis=1) > 0, mapped, 0.0)
    est = accuracy.stratified_estimates(counts, mapped, names)
    result = figures(est, counts, names, "ha")
    result.update(mode="change", map=cfg.map, reference_before=cfg.reference_before,
                  reference_after=cfg.reference_after, crosswalk=cfg.crosswalk, purity=cfg.purity,
                  tiles={"total": int(table.num_rows), "mapped": int(ok.sum()), "assessed": int(both.sum()),
                         "error_rows": int((~ok).sum())},
                  not_assessed=not_assessed, dates=[d.get("name") for d in got.meta.get("dates", [])])
    title = f"Accuracy assessment of the change map {cfg.map} against {cfg.reference_before} and {cfg.reference_after}"
    return result, {}, title

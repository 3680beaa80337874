"""Assessment of a map against a reference raster or points/polygons, tile by tile."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from raylib.config import AssessConfig
from raylib.errors import ConfigError, InputError
from raylib.eval import accuracy, reference, reports
from raylib.eval.reliability import reliability, reliability_png
from raylib.formats import mapfile
from raylib.io import storage
from raylib.models.model_dir import training_tile_ids
from raylib.pipelines.assess.common import read_map, figures


def assess_map(cfg: AssessConfig):
    if cfg.map is None or cfg.reference is None:
        raise ConfigError("assess needs --map and --reference (or --samples and --areas).",
                          "pass --map <map folder> --reference <raster or points/polygons>.")
    table = read_map(cfg.map)
    meta = mapfile.read_metadata(cfg.map)
    classes = meta.get("classes") or sorted({v for v in table.column("label").to_pylist() if v})
    cw = reference.load_crosswalk(cfg.crosswalk) if cfg.crosswalk else reference.Crosswalk.identity(classes)
    status = np.asarray(table.column("status").to_pylist(), dtype=object)
    label = np.asarray(table.column("label").to_pylist(), dtype=object)
    unknown = (status == "ok") & (label == mapfile.UNKNOWN)  # withheld by --unknown-below: not assessed
    ok = (status == "ok") & ~unknown
    if not ok.any():
        raise InputError(f"The map {cfg.map} has no mapped tile with a class (every row is an error row or unknown).",
                         "assess a map with predictions.")
    cw.check_map_classes(set(label[ok]))
    # the reference of the mapped tiles only: what is not assessed among them adds up to mapped - assessed
    ok_rows = np.flatnonzero(ok)
    mapped_table = table.take(pa.array(ok_rows))
    if reference.is_vector(cfg.reference):
        ref = reference.vector_reference(mapped_table, cfg.reference, cw, cfg.class_column, cfg.purity)
    else:
        ref = reference.raster_reference(mapped_table, cfg.reference, cw, cfg.purity)
    ref = dataclasses.replace(ref, rows=ok_rows[ref.rows])
    groups = cw.groups
    gi = {g: i for i, g in enumerate(groups)}
    map_group = np.array([gi[cw.map[v]] if o else -1 for v, o in zip(label, ok)])
    # mapped area per group: each ok tile's footprint less its fill (hectares), scaled for overlapping grids
    grid = meta.get("grid") or {}
    overlap = (grid.get("stride") / grid.get("tile_size")) ** 2 if grid.get("stride") and grid.get("tile_size") else 1.0
    area_ha = mapfile.mapped_area_ha(table) * min(1.0, overlap)
    mapped = np.bincount(map_group[ok], weights=area_ha[ok], minlength=len(groups))
    keep = ok[ref.rows]
    not_assessed = dict(ref.not_assessed)
    if cfg.exclude_training:

        trained = training_tile_ids(cfg.exclude_training)
        ids = np.asarray(table.column("tile_id").to_pylist(), dtype=object)
        is_training = np.isin(ids[ref.rows], list(trained))
        not_assessed["training_tiles"] = int((keep & is_training).sum())
        keep &= ~is_training
    rows, rg = ref.rows[keep], ref.group[keep]
    n_error = int((status != "ok").sum())
    not_assessed["error_tiles"] = n_error  # not mapped: not part of the sum above
    if len(rows) == 0:
        raise InputError(f"No mapped tile of {cfg.map} got a reference class from {cfg.reference} "
                         f"(not assessed: {not_assessed}).",
                         "check the crosswalk's reference codes and the purity threshold.")
    counts = np.zeros((len(groups), len(groups)), np.int64)
    np.add.at(counts, (map_group[rows], rg), 1)
    missing_strata = [groups[i] for i in range(len(groups)) if mapped[i] > 0 and counts[i].sum() == 0]
    if missing_strata:  # mapped classes the reference says nothing about: no estimate possible for them
        not_assessed["mapped_groups_without_reference"] = missing_strata
        mapped = np.where(counts.sum(axis=1) > 0, mapped, 0.0)
    est = accuracy.stratified_estimates(counts, mapped, groups)
    result = figures(est, counts, groups, "ha")
    mapped_not_assessed = {k: v for k, v in not_assessed.items() if k != "error_tiles" and isinstance(v, int)}
    withheld_ha = float(area_ha[unknown].sum())
    result["withheld"] = {"tiles": int(unknown.sum()), "area_ha": withheld_ha,
                          "share_of_mapped_area": withheld_ha / max(withheld_ha + float(mapped.sum()), 1e-12),
                          "note": "tiles labelled unknown (below --unknown-below) are not assessed; the figures "
                                  "above are the accuracy of the rest"}
    conf = np.asarray(table.column("confidence").to_pylist(), dtype=float)[rows]
    rel = reliability(conf, map_group[rows] == rg)
    result["calibration"] = {"ece": rel["ece"], "bins": rel["bins"],
                             "note": "confidence of the map class against agreement of its group with the reference"}
    edge = np.asarray(table.column("edge").to_pylist(), bool) if "edge" in table.column_names else np.zeros(len(ok), bool)
    fill = np.nan_to_num(np.asarray(table.column("fill_fraction").to_pylist(), float), nan=0.0)
    partial = edge | (fill > 0)
    result.update(
        mode="map", map=cfg.map, reference=cfg.reference, crosswalk=cfg.crosswalk, purity=cfg.purity,
        tiles={"total": int(table.num_rows), "mapped": int(ok.sum()), "assessed": int(len(rows)),
               "assessment_units": int(len(rows)), "error_rows": n_error,
               "unknown": int(unknown.sum()), "mapped_not_assessed": int(sum(mapped_not_assessed.values()))},
        not_assessed=not_assessed, reference_codes=ref.reference_codes,
        class_shares={"interior": _shares(label[ok & ~partial]), "partial": _shares(label[ok & partial])},
        model_id=meta.get("model_id"),
    )
    pics = {"comparison.png": _comparison_png(table, ok, map_group, rows, rg, groups, cw, classes),
            "reliability.png": reliability_png(rel, "map confidence vs agreement with the reference")}
    return result, pics, f"Accuracy assessment of {cfg.map} against {cfg.reference}"


def _shares(labels) -> dict:
    u, n = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    tot = max(1, n.sum())
    return {"tiles": int(n.sum()), **{str(k): round(float(v) / tot, 4) for k, v in sorted(zip(u, n), key=lambda t: -t[1])}}


def _comparison_png(table, ok, map_group, rows, rg, groups, cw, classes: list[str]) -> bytes:
    """Map groups beside reference groups, tile by tile, for the largest scene; each group in
    the colour the map's quick-look gives its most frequent map class (``classes``: the map's)."""
    scene = np.asarray(table.column("scene").to_pylist(), dtype=object)
    gr = np.asarray(table.column("grid_row").to_pylist())
    gc = np.asarray(table.column("grid_col").to_pylist())
    good = gr >= 0
    if not good.any():
        return reports.side_by_side_png("no tiles", [], groups, [])
    names, n = np.unique(scene[good], return_counts=True)
    s = names[np.argmax(n)]
    m = (scene == s) & good
    shape = (int(gr[m].max()) + 1, int(gc[m].max()) + 1)
    left = np.full(shape, -1, np.int16)
    right = np.full(shape, -1, np.int16)
    sel = m & ok
    left[gr[sel], gc[sel]] = map_group[sel]
    rs = rows[m[rows]]
    right[gr[rs], gc[rs]] = rg[m[rows]]
    # each group in the colour the map's quick-look gives the group's most frequent map class
    # on this map (its first crosswalk class when the map has none of them)
    li = np.asarray(table.column("label_index").fill_null(-1).to_numpy())[ok]
    seen = np.bincount(li[li >= 0], minlength=len(classes))
    pick = {}
    for c, g in cw.map.items():
        if c in classes and (g not in pick or seen[classes.index(c)] > seen[classes.index(pick[g])]):
            pick[g] = c
    pal, own = reports.palette(classes), reports.palette(groups)
    colours = [pal[classes.index(pick[g])] if g in pick else own[i] for i, g in enumerate(groups)]
    return reports.side_by_side_png(f"{storage.basename(s)}: map vs reference, by group", [left, right], groups,
                                    ["map", "reference"], colours=colours)

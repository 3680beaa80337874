"""``landcover assess`` and ``landcover sample``: map accuracy and area estimates against
reference land cover (Olofsson et al. 2014), and stratified sample designs drawn from a map.

Three ways in, one output (``assessment.json``, ``report.md``, ``confusion.png`` and, for
a map, ``comparison.png``, then ``_SUCCESS``):

* a map and a reference class raster (any CRS and grid): every tile with a pure enough
  reference is assessed, a census of the map's tiles; map classes are the strata, and their
  mapped areas (hectares, from the tiles' footprints less their fill) weight the estimates;
* a map and reference points/polygons: each feature against the tile(s) it falls in;
* a labelled sample table (``map``, ``reference`` columns) and the mapped area of each class.

Every input is checked before anything is written; a run that fails leaves no
``_SUCCESS`` and no ``assessment.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pyarrow as pa

from raylib.config import AssessConfig, SampleConfig
from raylib.errors import ConfigError, InputError
from raylib.eval import accuracy, reference, reports
from raylib.eval.reliability import reliability, reliability_png
from raylib.formats import mapfile
from raylib.formats.mapfile import SUCCESS
from raylib.io import storage
from raylib.models.model_dir import training_tile_ids
from raylib.pipelines.common.map_input import read_map_input



def _read_map(uri: str):
    return read_map_input(uri).table


def _check_out(out: str, overwrite: bool) -> None:
    storage.check_bucket(out)
    if storage.exists(storage.join(out, SUCCESS)) and not overwrite:
        raise ConfigError(f"{out} already holds an assessment.", "pass --overwrite, or choose another --out.")


def _write(out: str, result: dict, pictures: dict[str, bytes], report: str) -> dict:
    storage.delete_prefix(storage.join(out, SUCCESS))
    files = {}
    for name, data in pictures.items():
        files[name] = storage.join(out, name)
        storage.write_bytes(files[name], data)
    files["report.md"] = storage.join(out, "report.md")
    storage.write_bytes(files["report.md"], report.encode())
    files["assessment.json"] = storage.join(out, "assessment.json")
    storage.write_bytes(files["assessment.json"], json.dumps(result, indent=2).encode())
    storage.write_bytes(storage.join(out, SUCCESS), b"")
    return files


def _summary(est: dict, counts: np.ndarray, groups: list[str], unit: str) -> dict:
    """The flat figures users look for first, beside the full estimates."""
    sm = accuracy.sample_metrics(counts)
    recall = dict(zip(groups, sm["recall"]))
    producers = [est["producers_accuracy"][g]["estimate"] for g in groups
                 if recall[g] is not None and est["producers_accuracy"][g] is not None]
    return {
        "overall_accuracy": est["overall_accuracy"]["estimate"],
        "overall_accuracy_ci95": est["overall_accuracy"]["ci95"],
        "balanced_accuracy": sm["balanced_accuracy"],
        "recall_sample_counts": recall,
        "balanced_accuracy_area_weighted": float(np.mean(producers)) if producers else None,
        "kappa": sm["kappa"],
        "sample_accuracy": sm["accuracy"],
        "users_accuracy": est["users_accuracy"],
        "producers_accuracy": est["producers_accuracy"],
        "area": est["area"],
        "area_unit": unit,
        "groups": groups,
        "confusion": {"rows": "map", "columns": "reference", "classes": groups,
                      "counts": est["confusion_counts"],
                      "area_proportions": est["confusion_area_proportions"],
                      "area_proportions_ci95": est["confusion_area_proportions_ci95"]},
        "estimates": est,
    }


def run_assess(cfg: AssessConfig, argv: list[str] | None = None) -> dict:
    t0 = time.time()
    _check_out(cfg.out, cfg.overwrite)
    if cfg.samples is not None:
        result, pics, title = _assess_samples(cfg)
    else:
        result, pics, title = _assess_map(cfg)
    result.update(created_by=" ".join(argv or []), seconds=round(time.time() - t0, 2))
    pics["confusion.png"] = reports.confusion_png(np.asarray(result["confusion"]["counts"]), result["groups"],
                                                  "sample counts (rows: map, columns: reference), as in report.md",
                                                  rows_are="map")
    files = _write(cfg.out, result, pics, assessment_markdown(title, result))
    result["files"] = files
    return result


# --------------------------------------------------------------------------- sample mode


def mapped_areas(table) -> tuple[dict[str, float], dict[str, int]]:
    """Per map class (a change map's: per transition), the hectares of its tiles of status ok
    (footprints less their fill) and their number."""
    status = np.asarray(table.column("status").to_pylist(), dtype=object)
    label = np.asarray(table.column("label").to_pylist(), dtype=object)
    ok = status == "ok"
    fill = np.nan_to_num(np.asarray(table.column("fill_fraction").to_pylist(), float), nan=0.0)
    area_ha = reference.tile_areas_ha(table) * (1.0 - fill)
    classes = sorted(set(label[ok]))
    return ({c: float(area_ha[(label == c) & ok].sum()) for c in classes},
            {c: int(((label == c) & ok).sum()) for c in classes})


def _assess_samples(cfg: AssessConfig):
    if cfg.areas is None and cfg.map is None:
        raise ConfigError("--samples needs the mapped area of each class: --map (the map the sample was drawn from) "
                          "or --areas (CSV with columns class, area).", "pass --map <map folder> or --areas <csv>.")
    samples = reference.read_table(cfg.samples, "sample table", ["map", "reference"])
    if cfg.map is not None:
        by_class, _ = mapped_areas(_read_map(cfg.map))
        areas_t = pa.table({"class": list(by_class), "area": list(by_class.values())})
        source = f"the map {cfg.map}"
    else:
        areas_t = reference.read_table(cfg.areas, "areas table", ["class", "area"], text=["class"])
        source = cfg.areas
    m = [str(v) if v is not None else None for v in samples.column("map").to_pylist()]
    r = [str(v) if v is not None else None for v in samples.column("reference").to_pylist()]
    blank = [i for i, (a, b) in enumerate(zip(m, r)) if not a or not b]
    if blank:
        raise InputError(f"The sample table {cfg.samples} has {len(blank)} row(s) without a map or reference class "
                         f"(first at row {blank[0] + 1}).", "label every sample unit, or drop the unlabelled rows.")
    try:
        area_vals = np.asarray(areas_t.column("area").to_pylist(), float)
    except (TypeError, ValueError):
        raise InputError(f"The 'area' column of {source} must hold numbers.", "fix the areas table.") from None
    area_classes = [str(v) for v in areas_t.column("class").to_pylist()]
    if len(set(area_classes)) != len(area_classes):
        raise InputError(f"The areas table {source} names a class twice.", "give one row per class.")
    if cfg.crosswalk:
        cw = reference.load_crosswalk(cfg.crosswalk)
        cw.check_map_classes(set(m) | set(area_classes))
        m_g = [cw.map[v] for v in m]
        r_g = [cw.reference_group(v) for v in r]
        unknown = sorted({v for v, g in zip(r, r_g) if g is None})
        if unknown:  # a labelled unit left out would bias every estimate: refuse rather than drop
            raise InputError(f"Reference class(es) {unknown} of the sample table {cfg.samples} are not in the "
                             f"'reference' section of {cfg.crosswalk}.",
                             "add each of them to 'reference:' with its group.")
        groups = cw.groups
        area_by = {g: 0.0 for g in groups}
        for c, a in zip(area_classes, area_vals):
            area_by[cw.map[c]] += a
    else:
        unknown = sorted(set(m) - set(area_classes))
        if unknown:
            raise InputError(f"Map class(es) {unknown} of the sample table {cfg.samples} have no area in {source}.",
                             "give the mapped area of every class the sample uses." if cfg.map is None else
                             "give the map the sample was drawn from.")
        groups = list(dict.fromkeys(area_classes + sorted(set(r) - set(area_classes))))
        m_g, r_g = m, r
        area_by = dict(zip(area_classes, area_vals))
    gi = {g: i for i, g in enumerate(groups)}
    counts = np.zeros((len(groups), len(groups)), np.int64)
    for a, b in zip(m_g, r_g):
        if b is not None:
            counts[gi[a], gi[b]] += 1
    est = accuracy.stratified_estimates(counts, [area_by.get(g, 0.0) for g in groups], groups)
    unit = "ha" if cfg.map is not None else cfg.area_unit or "as given in the areas table"
    result = _summary(est, counts, groups, unit)
    result.update(mode="samples", samples=cfg.samples, areas=cfg.areas, map=cfg.map, crosswalk=cfg.crosswalk,
                  not_assessed={})
    return result, {}, f"Accuracy assessment of a sample ({cfg.samples})"


# --------------------------------------------------------------------------- map mode


def _assess_map(cfg: AssessConfig):
    if cfg.map is None or cfg.reference is None:
        raise ConfigError("assess needs --map and --reference (or --samples and --areas).",
                          "pass --map <map folder> --reference <raster or points/polygons>.")
    table = _read_map(cfg.map)
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
    fill = np.nan_to_num(np.asarray(table.column("fill_fraction").to_pylist(), float), nan=0.0)
    area_ha = reference.tile_areas_ha(table) * (1.0 - fill) * min(1.0, overlap)
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
    result = _summary(est, counts, groups, "ha")
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


def _num(v: float) -> str:
    """Areas as people read them: whole units from 100 up, else two significant decimals."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


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


def assessment_markdown(title: str, r: dict) -> str:
    unit = r["area_unit"]
    lines = [f"# {title}", ""]
    if r.get("mode") == "map":
        t = r["tiles"]
        why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["not_assessed"].items()
                        if k != "error_tiles" and isinstance(v, int))
        lines += [f"Tiles: {t['total']} in the map: {t['mapped']} mapped with a class, {t.get('error_rows', 0)} "
                  f"error rows, {t.get('unknown', 0)} withheld as unknown. Of the {t['mapped']} mapped, "
                  f"{t['assessed']} are assessed against the reference (purity ≥ {r['purity']}) and "
                  f"{t.get('mapped_not_assessed', t['mapped'] - t['assessed'])} are not ({why}).", ""]
        if r["not_assessed"].get("mapped_groups_without_reference"):
            lines += ["Mapped groups the reference says nothing about (no estimate): "
                      f"{', '.join(r['not_assessed']['mapped_groups_without_reference'])}.", ""]
    area_bacc = r.get("balanced_accuracy_area_weighted")
    lines += [
        f"- overall accuracy (area-weighted): **{r['overall_accuracy']:.4f} ± {r['overall_accuracy_ci95']:.4f}** (95 %)",
        f"- balanced accuracy (the mean of the recall column below: sample counts, each reference group present "
        f"weighing the same): **{r['balanced_accuracy']:.4f}**"
        + (f"; from the area-weighted producer's accuracies instead: {area_bacc:.4f}" if area_bacc is not None else ""),
        f"- Cohen's kappa: {r['kappa']:.4f}", "",
        f"| group | user's accuracy | producer's accuracy | recall (sample counts) | mapped area ({unit}) | "
        f"estimated area ({unit}) |",
        "|---|---|---|---|---|---|",
    ]

    def fmt(e):
        return "—" if e is None else f"{e['estimate']:.3f} ± {e['ci95']:.3f}"

    recall = r.get("recall_sample_counts") or {}
    for g in r["groups"]:
        a = r["area"][g]
        rc = recall.get(g)
        lines.append(f"| {g} | {fmt(r['users_accuracy'][g])} | {fmt(r['producers_accuracy'][g])} | "
                     f"{'—' if rc is None else f'{rc:.4f}'} | {_num(a['mapped'])} | {_num(a['estimate'])} ± "
                     f"{_num(a['ci95'])} |")
    lines += ["", "Sample counts (rows: map, columns: reference):", "",
              "| map \\ reference | " + " | ".join(r["groups"]) + " |", "|---" * (len(r["groups"]) + 1) + "|"]
    for g, row in zip(r["groups"], r["confusion"]["counts"]):
        lines.append(f"| {g} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "Estimates follow Olofsson et al. (2014), *Good practices for estimating area and assessing "
              "accuracy of land change*, RSE 148: map classes are the strata, weighted by their mapped area; "
              "intervals are 1.96 standard errors.", ""]
    if r.get("withheld", {}).get("tiles"):
        w = r["withheld"]
        lines += [f"Withheld as `unknown`: {w['tiles']} tiles, {_num(w['area_ha'])} ha "
                  f"({w['share_of_mapped_area']:.1%} of the mapped area); the figures above are for the rest.", ""]
    if r.get("calibration"):
        lines += [f"Expected calibration error of the map's confidence: {r['calibration']['ece']:.3f} "
                  "(reliability.png).", ""]
    if r.get("class_shares"):
        lines += ["Class shares of interior vs partial (edge or fill) tiles: "
                  f"`{json.dumps(r['class_shares'])}`", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- landcover sample


def run_sample(cfg: SampleConfig, argv: list[str] | None = None) -> dict:
    """A stratified random sample of a map's tiles (map classes as strata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _read_map(cfg.map)
    if storage.exists(cfg.out) and not cfg.overwrite:
        raise ConfigError(f"{cfg.out} already exists.", "pass --overwrite, or choose another --out.")
    status = np.asarray(table.column("status").to_pylist(), dtype=object)
    label = np.asarray(table.column("label").to_pylist(), dtype=object)
    ok = status == "ok"
    if not ok.any():
        raise InputError(f"The map {cfg.map} has no mapped tile.", "sample a map with predictions.")
    map_area, n_tiles = mapped_areas(table)
    classes = list(map_area)
    if cfg.per_class is not None:
        if isinstance(cfg.per_class, dict):
            unknown = sorted(set(cfg.per_class) - set(classes))
            if unknown:
                raise ConfigError(f"--per-class names class(es) {unknown} that the map does not use.",
                                  f"the map's classes: {classes}.")
            alloc = {c: int(cfg.per_class.get(c, 0)) for c in classes}
        else:
            alloc = {c: int(cfg.per_class) for c in classes}
    elif cfg.n is not None:
        alloc = accuracy.allocate(map_area, cfg.n, cfg.min_per_class)
    else:
        raise ConfigError("sample needs --n (a total, allocated over the classes) or --per-class.", "pass --n 500.")
    rng = np.random.default_rng(cfg.seed)
    picked, stratum, prob = [], [], []
    for c in classes:
        idx = np.flatnonzero((label == c) & ok)
        k = min(alloc.get(c, 0), len(idx))
        chosen = np.sort(rng.choice(idx, size=k, replace=False)) if k else np.array([], np.int64)
        picked += chosen.tolist()
        stratum += [c] * k
        prob += [k / len(idx)] * k
    sub = table.take(pa.array(picked, pa.int64()))
    keep = [c for c in ("tile_id", "scene", "grid_row", "grid_col", "row_off", "col_off", "width", "height",
                        "scene_crs", "geometry", "bbox", "label", "confidence") if c in sub.column_names]
    out = sub.select(keep).rename_columns([("map" if c == "label" else c) for c in keep])
    out = out.append_column("stratum", pa.array(stratum, pa.string()))
    out = out.append_column("inclusion_probability", pa.array(prob, pa.float64()))
    out = out.append_column("reference", pa.array([None] * len(picked), pa.string()))
    bbox = None
    if out.num_rows:
        bb = out.column("bbox").combine_chunks()
        bbox = [float(np.min(bb.field("xmin"))), float(np.min(bb.field("ymin"))),
                float(np.max(bb.field("xmax"))), float(np.max(bb.field("ymax")))]
    meta = {b"geo": json.dumps(mapfile.geo_metadata(bbox)).encode(),
            b"landcover": json.dumps({"kind": "sample", "map": cfg.map, "seed": cfg.seed, "allocation": alloc,
                                      "strata_tiles": n_tiles, "mapped_area_ha": map_area,
                                      "created_by": " ".join(argv or [])}).encode()}
    out = out.replace_schema_metadata(meta)
    import io

    buf = io.BytesIO()
    pq.write_table(out, buf, compression="zstd")
    areas_uri = _areas_uri(cfg.out)
    storage.write_bytes(areas_uri, ("class,area\n" + "".join(f"{c},{map_area[c]:.4f}\n" for c in classes)).encode())
    storage.write_bytes(cfg.out, buf.getvalue())
    return {"out": cfg.out, "areas": areas_uri, "units": int(out.num_rows), "allocation": alloc,
            "strata_tiles": n_tiles}


def _areas_uri(out: str) -> str:
    base = out[: -len(".parquet")] if out.lower().endswith(".parquet") else out
    return base + ".areas.csv"

"""Assessment of a labelled sample (``assess --samples``) and the sample design drawn from a
map (``landcover sample``)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from raylib.config import AssessConfig, SampleConfig
from raylib.errors import ConfigError, InputError
from raylib.eval import accuracy, reference
from raylib.eval.reference import MAP_CLASS
from raylib.formats import mapfile
from raylib.io import storage
from raylib.pipelines.assess.common import read_map, figures


def mapped_areas(table) -> tuple[dict[str, float], dict[str, int]]:
    """Per map class (a change map's: per transition), the hectares of its tiles of status ok
    (footprints less their fill) and their number."""
    status = np.asarray(table.column("status").to_pylist(), dtype=object)
    label = np.asarray(table.column("label").to_pylist(), dtype=object)
    ok = status == "ok"
    area_ha = mapfile.mapped_area_ha(table)
    classes = sorted(set(label[ok]))
    return ({c: float(area_ha[(label == c) & ok].sum()) for c in classes},
            {c: int(((label == c) & ok).sum()) for c in classes})


def assess_samples(cfg: AssessConfig):
    if cfg.areas is None and cfg.map is None:
        raise ConfigError("--samples needs the mapped area of each class: --map (the map the sample was drawn from) "
                          "or --areas (CSV with columns class, area).", "pass --map <map folder> or --areas <csv>.")
    _, m, r = reference.labelled_sample(cfg.samples)
    if cfg.map is not None:
        by_class, _ = mapped_areas(read_map(cfg.map))
        areas_t = pa.table({"class": list(by_class), "area": list(by_class.values())})
        source = f"the map {cfg.map}"
    else:
        areas_t = reference.read_table(cfg.areas, "areas table", ["class", "area"], text=["class"])
        source = cfg.areas
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
    result = figures(est, counts, groups, unit)
    result.update(mode="samples", samples=cfg.samples, areas=cfg.areas, map=cfg.map, crosswalk=cfg.crosswalk,
                  not_assessed={})
    return result, {}, f"Accuracy assessment of a sample ({cfg.samples})"


def run_sample(cfg: SampleConfig, argv: list[str] | None = None) -> dict:
    """A stratified random sample of a map's tiles (map classes as strata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = read_map(cfg.map)
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
    out = sub.select(keep).rename_columns([(MAP_CLASS if c == "label" else c) for c in keep])
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

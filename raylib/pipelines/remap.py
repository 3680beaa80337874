"""``landcover remap``: a head applied to an embedding store -> a map, with no imagery, no
backbone and no GPU.

Ray Data over the store's parts: each read task reads one store part (only the tiles in
``bbox`` when given), applies the head to the stored embeddings and writes the map part of
the same name, in the map schema, with the same every-tile-accounted rules (a store error
row stays an error row, with its reason). Parts are written under ``_tmp/`` and moved into
place at the end, then ``_summary.json`` and ``_SUCCESS``: a killed remap re-run into the
same ``out`` owes only the parts that are absent, like ``landcover map``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from raylib.config import RemapConfig
from raylib.errors import InputError
from raylib.eval import reports
from raylib.failpoints import failpoint
from raylib.formats import embstore, map_folder, mapfile, parts
from raylib.io import storage
from raylib.models.adaptation import predict_scenes
from raylib.models.model_dir import MANIFEST, local_model_folder
from raylib.models.landcover_model import HEAD_STATISTICS, LandcoverModel
from raylib.pipelines.common import centres as centres_of
from raylib.pipelines.common.object_store import shared
from raylib.pipelines.common.run_tail import finish_run
from raylib.pipelines.common.folder_shipping import local_folder, share_folder
from raylib.pipelines.common.ray_session import check_shared_paths, ensure_ray
from raylib.pipelines.common.tile_grid import TileGrid

log = logging.getLogger(__name__)


def check_head(manifest, model_uri: str, meta: dict, store: str) -> None:
    """A head must come from the store's backbone (same weights) and, when it records one,
    the store's preprocessing."""
    if manifest.kind != "head":
        raise InputError(f"Model {model_uri} is a fine-tuned network ({manifest.kind}); remap applies a head to "
                         "stored embeddings.", "use a head model (landcover train-head or tune).")
    if (manifest.head or {}).get("pixels"):
        raise InputError(f"Model {model_uri} has a pixel classifier (train-head --pixels), which needs the tiles' "
                         f"pixels; the store {store} holds their embeddings only.",
                         f"map the scenes with it: landcover map --model {model_uri} (with the store's map settings), "
                         "or train a head without --pixels for remap.")
    bb = manifest.backbone
    mine = bb.get("weights_hash")
    if mine is None:

        folder = local_model_folder(model_uri)
        ref = bb.get("source") or bb.get("ref") or ""
        mine = embstore.weights_hash(str(folder / bb["path"]) if bb.get("path") else None, ref)
    if mine != meta["weights_hash"] or (bb.get("input_size") != meta.get("input_size")):
        raise InputError(f"Model {model_uri} was made with backbone {bb.get('source') or bb.get('ref')} "
                         f"(weights {mine}, {bb.get('input_size')} px), the store {store} with "
                         f"{meta['backbone']} (weights {meta['weights_hash']}, {meta.get('input_size')} px).",
                         "use a head trained on this store's embeddings (landcover train-head --store).")
    pre = bb.get("preprocessing_hash")
    if pre is not None and pre != meta["preprocessing_hash"]:
        raise InputError(f"Model {model_uri} was trained on tiles preprocessed as {pre}, the store {store} holds "
                         f"{meta['preprocessing_hash']} (bands, scaling, GSD, tile or input size differ).",
                         "train the head on this store, or remap the store it was trained on.")


def remap_parts(batch: dict, model_ref, out: str, bbox, unknown_below, extra: dict, centres=None,
                spectral: bool = True) -> dict:
    """Ray Data task: each row names a store part; its map part is written under ``_tmp/``.
    ``centres``: scene URI -> its centre (``models.adaptation``), or None."""
    centres = shared(centres)
    model = LandcoverModel.load(local_folder(model_ref, "ray-models"), with_backbone=False)
    classes, mid = model.classes, model.id
    names, counts = [], []
    for uri in batch["part"]:
        uri = str(uri)
        t = embstore.read_one(uri, bbox)
        n = t.num_rows
        status = np.asarray(t.column("status").to_pylist(), dtype=object)
        error = np.asarray(t.column("error").to_pylist(), dtype=object)
        ok = status == "ok"
        probs = np.full((n, len(classes)), np.nan, np.float32)
        stats = embstore.stats_of(t)
        if ok.any():
            emb = embstore.embeddings_of(t.filter(ok))
            scene = np.asarray(t.column("scene").to_pylist(), dtype=object)[ok].astype(str)
            probs[ok], stats["ood"][ok] = predict_scenes(  # each scene with its centre
                model, emb, {k: stats[k][ok] for k in HEAD_STATISTICS},
                scene, centres, spectral)
        rows = t.select(list(embstore.TILE_COLUMNS) + [c for c in mapfile.ITEM_COLUMNS if c in t.column_names])
        table = mapfile.build_table(rows, probs, status, error,
                                    np.asarray(t.column("fill_fraction").to_numpy(zero_copy_only=False), np.float32),
                                    classes, mid, stats=stats, unknown_below=unknown_below)
        name = storage.basename(uri)
        mapfile.write_part(table, storage.join(out, parts.TMP, name), classes, mid, extra)
        names.append(name)
        counts.append(json.dumps({"tiles": n, "ok": int(ok.sum())}))
    return {"part": np.array(names, dtype=object), "counts": np.array(counts, dtype=object)}


def run_remap(cfg: RemapConfig, argv: list[str] | None = None) -> dict:
    import ray

    t0 = time.time()
    check_shared_paths(cfg.ray_address, {"--out": cfg.out, "--store": cfg.store})
    store = embstore.locate(cfg.store)  # the store's folder, or a map folder holding one
    meta = embstore.read_meta(store)
    files = embstore.part_files(store)
    manifest = LandcoverModel.read_manifest(cfg.model)
    check_head(manifest, cfg.model, meta, store)
    adapting = centres_of.resolve(cfg.adapt, cfg.model, manifest)
    job = parts.digest({"store": sorted(storage.basename(f) for f in files), "store_meta": meta["preprocessing_hash"],
                        "model": manifest.id, "bbox": cfg.bbox, "unknown_below": cfg.unknown_below,
                        **({"adapt": True} if adapting else {}), **({} if cfg.spectral_prior else {"spectral": False})})
    resumed = map_folder.prepare(cfg.out, job, cfg.overwrite)
    done = parts.existing(cfg.out) if resumed else {}
    names = [storage.basename(f) for f in files]
    done = {n: u for n, u in done.items() if n in names}
    parts.remove_tmp_debris(cfg.out, keep=set(done))
    map_folder.mark(cfg.out, job, "remap", model_id=manifest.id, embeddings=store)
    pending = [f for f in files if storage.basename(f) not in done]
    extra = {"grid": meta["preprocessing"].get("grid"), "embeddings": store,
             "crs_note": "geometry in OGC:CRS84; scene_crs holds each scene's native CRS"}
    written = {}
    centres, adapted = (store_centres(store, files, cfg.store, from_store=bool(cfg.adapt))
                        if adapting and pending else (None, {"method": "none"}))
    if pending:
        ensure_ray(cfg.ray_address)
        with tempfile.TemporaryDirectory() as tmp:  # the head alone travels to the workers, not the backbone
            head_dir = _head_only(cfg.model, Path(tmp))
            ref = share_folder(str(head_dir))
        ds = ray.data.from_items([{"part": f} for f in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(remap_parts, batch_size=1, batch_format="numpy", num_cpus=cfg.read_cpus,
                            fn_kwargs={"model_ref": ref, "out": cfg.out, "bbox": cfg.bbox,
                                       "unknown_below": cfg.unknown_below, "extra": extra,
                                       "centres": ray.put(centres) if centres else None,
                                       "spectral": cfg.spectral_prior})
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            for name, c in zip(batch["part"], batch["counts"]):
                written[str(name)] = json.loads(str(c))
                failpoint("remap_part_done")
    missing = [storage.basename(f) for f in pending if storage.basename(f) not in written]
    if missing:
        raise RuntimeError(f"{len(missing)} parts were not remapped ({missing[:3]}); nothing was marked complete")
    map_folder.commit(cfg.out, names)
    table = mapfile.read_map(cfg.out, columns=["scene", "grid_row", "grid_col", "row_off", "col_off", "width",
                                                "height", "label", "label_index", "status", "reason", "confidence",
                                                "ood"])
    st = np.asarray(table.column("status").to_pylist(), dtype=object)
    counts = {str(k): int(v) for k, v in zip(*np.unique(st.astype(str), return_counts=True))}
    rs = np.asarray(table.column("reason").to_pylist(), dtype=object)[st != "ok"]
    reasons = {str(k): int(v) for k, v in zip(*np.unique(rs.astype(str), return_counts=True))} if len(rs) else {}
    quicklooks = _quicklooks(cfg, table, manifest) if cfg.quicklook else []
    seconds = time.time() - t0
    summary = {"out": cfg.out, "embeddings": store, "model": cfg.model, "model_id": manifest.id,
               "tiles": int(table.num_rows), "counts": counts, "error_reasons": reasons, "parts": len(names),
               "parts_resumed": len(done), "parts_written": len(written), "bbox": cfg.bbox, "result": "ok",
               "seconds": round(seconds, 2), "tiles_per_second": round(table.num_rows / max(seconds, 1e-9), 1),
               "quicklooks": quicklooks, "adaptation": adapted, "config": cfg.model_dump()}
    return finish_run(cfg.out, summary, "map", cfg.cog)


def store_centres(store: str, files: list[str], named: str, from_store: bool) -> tuple[dict, dict]:
    """Each scene's centre for a remap: what the map that wrote the store did (its
    ``_adaptation``, beside the store in the map folder: a centre, or none for a display
    product or a scene of too few tiles); for a scene the map did not record, with
    ``from_store`` (``--adapt`` asked), the mean of all its tiles in the store (a first pass
    over the stored embeddings), else none."""
    from raylib.models import adaptation as centring

    parent = store.rstrip("/").rsplit("/", 1)[0] \
        if storage.basename(store.rstrip("/")) in (embstore.FOLDER, embstore.LEGACY_FOLDER) else named
    # what the map recorded stands (a display product it left as trained: re-centred from the store if asked)
    recorded = {u: v for u, v in centres_of.load(parent).items() if not (from_store and v.get("display"))}
    stored = {u: v["centre"] for u, v in recorded.items() if v["centre"] is not None}
    sums = centring.CentreSums()
    for f in (files if from_store else []):
        t = embstore.read_one(f, columns=["scene", "status", "embedding"])
        ok = np.asarray(t.column("status").to_pylist(), dtype=object) == "ok"
        scene = np.asarray(t.column("scene").to_pylist(), dtype=object)[ok]
        if not ok.any() or all(s in recorded for s in set(scene)):
            continue
        emb = embstore.embeddings_of(t.filter(ok))
        for sc in set(scene) - set(recorded):
            sums.add(sc, emb[scene == sc])
    computed = {u: c for u, (c, _) in sums.centres().items() if c is not None}
    info = {"method": centring.METHOD, "scenes": len(stored) + len(computed), "from_map": len(stored),
            "from_store": len(computed)}
    return {**computed, **stored}, info


def _head_only(model_uri: str, tmp: Path) -> Path:

    src = local_model_folder(model_uri)
    dst = tmp / "head"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("backbone", "model"))
    assert (dst / MANIFEST).exists()
    return dst


def _quicklooks(cfg: RemapConfig, table, manifest) -> list[str]:
    """A class map per scene (no imagery to draw beside it: remap reads none)."""
    out = []
    scene = np.asarray(table.column("scene").to_pylist(), dtype=object)
    cells = TileGrid.cells(table)  # paler where the head is less sure, as the map's own pictures
    gr = cells.rows
    r1 = (table.column("row_off").to_numpy() + table.column("height").to_numpy())
    c1 = (table.column("col_off").to_numpy() + table.column("width").to_numpy())
    for i, s in enumerate(sorted(set(scene[gr >= 0]))):
        m = (scene == s) & (gr >= 0)
        look = TileGrid.empty((int(gr[m].max()) + 1, int(cells.cols[m].max()) + 1))
        look.put(cells.take(m))
        tile = (int(table.column("height").to_numpy()[m].max()), int(table.column("width").to_numpy()[m].max()))
        png = reports.quicklook_png(f"{s}  |  remap with {manifest.id}", look.labels, manifest.classes, None,
                                    (int(r1[m].max()), int(c1[m].max())), tile, look.confidence, look.ood)
        uri = mapfile.quicklook_uri(cfg.out, f"{i:03d}", s)
        storage.write_bytes(uri, png)
        out.append(uri)
    return out

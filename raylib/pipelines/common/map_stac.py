"""STAC for the GeoParquet a run writes: an Item per part of a map, embedding store,
composite or change map, and a Collection over them, under the folder's ``_stac/`` (a ``_``
folder every reader of the map skips), rewritten at the end of each run. Each Item carries
the part's footprint (its GeoParquet bbox), acquisition time, row count, size and SHA-256,
the software and model that made it, and (maps, composites, change maps) the classes of its
``label_index`` column with their quick-look colours; all validated offline
(``formats.stac_items``).

A part's facts cost a read of the whole part (its SHA-256); they are kept in
``_stac/_parts.json`` by the part's fingerprint (size and modification time, or S3 ETag,
from the folder's listing), so a run that adds parts to a map (``--incremental``) reads only
the parts that are new or changed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raylib.eval import reports
from raylib.formats import embstore, mapfile, stac_items
from raylib.io import storage
from raylib.io.names import safe_name

FOLDER = "_stac"
FACTS = "_parts.json"  # under FOLDER: each part's facts by its fingerprint
FACTS_VERSION = 1


def _when(times: list[tuple[int, int]]) -> dict:
    def iso(v) -> str:
        return datetime.fromtimestamp(v, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    if not times:
        return {"datetime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    lo, hi = min(t[0] for t in times), max(t[1] for t in times)
    return {"datetime": iso(lo)} if lo == hi else {"datetime": None, "start_datetime": iso(lo), "end_datetime": iso(hi)}


def _part(uri: str) -> dict:
    """A part's footer facts (bbox, rows, metadata, time range) and its size and SHA-256, read
    as a stream (a part is never held whole)."""
    fs, path = storage.arrow_filesystem(uri)
    digest, size = hashlib.sha256(), 0
    with fs.open_input_stream(path) as stream:
        while chunk := stream.read(8 << 20):
            digest.update(chunk)
            size += len(chunk)
    with fs.open_input_file(path) as handle:
        f = pq.ParquetFile(handle)
        meta = f.schema_arrow.metadata or {}
        geo = json.loads(meta.get(b"geo", b"{}"))
        bbox = (geo.get("columns", {}).get("geometry", {}) or {}).get("bbox")
        if not bbox and "bbox" in f.schema_arrow.names:  # a part written as a stream: its footer has no bbox
            bb = f.read(columns=["bbox"]).column(0).combine_chunks()
            vals = [np.asarray(bb.field(k).to_numpy(zero_copy_only=False), float)
                    for k in ("xmin", "ymin", "xmax", "ymax")]
            good = np.isfinite(vals[0]) & np.isfinite(vals[3])
            if good.any():
                bbox = [float(vals[0][good].min()), float(vals[1][good].min()), float(vals[2][good].max()),
                        float(vals[3][good].max())]
        times = []
        if "datetime" in f.schema_arrow.names:
            col = f.read(columns=["datetime"]).column(0)  # (Parquet stores seconds as milliseconds)
            v = col.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).drop_null().to_numpy()
            if len(v):
                times.append((int(v.min()), int(v.max())))
        rows = f.metadata.num_rows
    return {"bbox": bbox, "rows": rows, "landcover": json.loads(meta.get(b"landcover", b"{}")),
            "times": times, "size": size, "sha256": digest.hexdigest()}


def stac_sources(folder: str) -> list[str]:
    """The STAC items a map was made from (``map --stac`` keeps them under the map's
    ``_inputs/stac/``; a store or composite beside it shares them)."""
    root = folder.rstrip("/")
    for sub in (embstore.FOLDER, mapfile.COMPOSITE, embstore.LEGACY_FOLDER):
        root = root.removesuffix("/" + sub)
    try:
        return sorted(u for u in storage.folder_files(storage.join(root, storage.STAC_INPUTS)) if u.endswith(".json"))
    except Exception:
        return []


def describe(folder: str, kind: str, title: str) -> dict | None:
    """Write ``<folder>/_stac/``: an Item per GeoParquet part of ``folder`` (``kind``: map,
    store, composite, change) and a Collection over them; None when it has no part."""
    from raylib import __version__

    folder = storage.join(folder)  # the listing's own form (an absolute path): parts are named relative to it
    stac = storage.join(folder, FOLDER)
    every, read = _facts(folder, embstore.part_files(folder))
    facts = {u: f for u, f in every.items() if f["bbox"]}  # (a part of error rows alone has no footprint)
    storage.delete_prefix(storage.as_prefix(stac))
    if not facts:
        return None
    base = storage.as_prefix(folder)
    name = storage.basename(folder.rstrip("/")) or kind
    sources = stac_sources(folder)
    coll_id = safe_name(f"{name}-{kind}")
    items, hrefs = [], []
    for uri, f in facts.items():
        rel = uri[len(base):]
        meta = f["landcover"]
        classes = meta.get("classes") if kind != "store" else None
        entries = stac_items.class_entries(list(classes), reports.palette(list(classes)), 0) if classes else None
        processing = {"processing:software": {"landcover-ray": __version__},
                      "processing:lineage": f"landcover {kind} (model {meta.get('model_id') or meta.get('backbone')})",
                      "landcover:model_id": meta.get("model_id"), "landcover:kind": kind}
        item_id = safe_name(f"{coll_id}-{rel.removesuffix('.parquet')}")
        links = [{"rel": r, "href": "../collection.json", "type": "application/json"}
                 for r in ("root", "parent", "collection")]
        links += [{"rel": "derived_from", "href": h, "type": "application/geo+json"} for h in sources]
        item = stac_items.part_item(item_id, "../../" + rel, bbox=[float(v) for v in f["bbox"]],
                                    when=_when(f["times"]), title=f"{kind} part {rel}", rows=int(f["rows"]),
                                    size=f["size"], sha256=f["sha256"], processing=processing, classes=entries,
                                    links=links)
        item["collection"] = coll_id
        items.append(item)
        hrefs.append(f"./items/{item_id}.json")
    coll = stac_items.collection(coll_id, f"The GeoParquet parts of the land-cover {kind} {folder}", items, hrefs)
    for obj in items + [coll]:
        problems = stac_items.validate(obj)
        if problems:
            raise RuntimeError(f"the STAC {obj['type']} {obj['id']} does not validate: {problems}")
    for item, href in zip(items, hrefs):
        storage.write_bytes(storage.join(stac, href[2:]), json.dumps(item, indent=2).encode())
    uri = storage.join(stac, "collection.json")
    storage.write_bytes(uri, json.dumps(coll, indent=2).encode())
    storage.write_bytes(storage.join(stac, FACTS), json.dumps({"version": FACTS_VERSION, "parts": {
        u[len(base):]: f for u, f in every.items()}}).encode())
    return {"collection": uri, "items": len(items), "rows": int(np.sum([f["rows"] for f in facts.values()])),
            "parts_read": read}


def _facts(folder: str, files: list[str]) -> tuple[dict[str, dict], int]:
    """Each part's facts (``_part``, with its ``fingerprint``), and how many parts were read:
    those whose fingerprint is not the one ``_stac/_parts.json`` keeps for them."""
    base = storage.as_prefix(folder)
    kept = {}
    uri = storage.join(folder, FOLDER, FACTS)
    if storage.exists(uri):
        try:
            record = json.loads(storage.read_bytes(uri))
            kept = record["parts"] if record.get("version") == FACTS_VERSION else {}
        except (ValueError, KeyError, TypeError):  # a record cut short: every part is read again
            kept = {}
    out, read = {}, 0
    for u in files:
        fp = storage.fingerprint(u)
        old = kept.get(u[len(base):])
        if isinstance(old, dict) and old.get("fingerprint") == fp:
            out[u] = old
        else:
            out[u] = {**_part(u), "fingerprint": fp}
            read += 1
    return out, read


def describe_run(out: str, kind: str, extra: dict[str, str] | None = None) -> dict:
    """The STAC of a finished run: its folder (``kind``) and ``extra`` folders by kind (a
    map's store, its composite). A failure here does not undo the run: it is reported."""
    import logging

    done = {}
    for k, folder in [(kind, out), *((extra or {}).items())]:
        try:
            done[k] = describe(folder, k, f"{k} {folder}")
        except Exception as exc:  # the run's output is complete; its description is not
            logging.getLogger(__name__).warning("STAC for %s not written: %s", folder, exc)
            done[k] = {"error": str(exc)}
    return done

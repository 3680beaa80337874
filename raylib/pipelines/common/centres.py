"""A map's scene centres (``models.adaptation``), stored with it: ``<map>/_adaptation/
centres-*.arrow`` (scene, its version, tiles sampled, centre), read back by a resumed
or incremental map and by ``remap`` of its store; and whether a run adapts at all.

The files are Arrow IPC, not Parquet, so that a recursive Parquet glob of the map folder
(``duckdb "select count(*) from 'maps/x/**/*.parquet'"``) meets the map's parts and its
opt-in datasets (``_embeddings/``, ``_composite/``), not this side table. Maps made before
keep ``centres-*.parquet``, which are still read.
"""

from __future__ import annotations

import io
import time

import numpy as np

from raylib.errors import ConfigError
from raylib.io import storage
from raylib.models.manifest import ModelManifest

FOLDER = "_adaptation"


def resolve(cfg_adapt: bool | None, model_uri: str, manifest: ModelManifest) -> bool:
    """Whether a run adapts: ``cfg_adapt``, else the model's advice (``inference.adapt``);
    asking for it with a model whose head cannot be re-centred is a configuration error."""
    if cfg_adapt is False or (cfg_adapt is None and not manifest.inference.get("adapt")):
        return False  # (decided without loading the model)
    from raylib.models.landcover_model import LandcoverModel

    model = LandcoverModel.load(model_uri, with_backbone=False)
    if cfg_adapt and not model.can_adapt:
        raise ConfigError(f"--adapt: model {manifest.id} has a head that cannot be re-centred on a scene "
                          f"({manifest.kind} {(manifest.head or {}).get('type')}).",
                          "map without --adapt (it applies to logistic and MLP heads on embeddings alone).")
    return model.adapts_by_default if cfg_adapt is None else True


def load(out: str) -> dict[str, dict]:
    """The centres stored under ``out``: scene URI -> {fingerprint, tiles, model_id (whose
    backbone made the embeddings), centre (None: too few tiles)}; the latest file wins for a
    scene stored twice."""

    folder = storage.join(out, FOLDER)
    found: dict[str, dict] = {}
    if not storage.parse(folder).is_s3 and not storage.is_prefix(folder):
        return found
    for uri in sorted(storage.list_files(folder, (".arrow", ".parquet")), key=storage.basename):
        t = read_file(uri)
        model = t.column("model_id").to_pylist() if "model_id" in t.column_names else [None] * t.num_rows
        display = t.column("display").to_pylist() if "display" in t.column_names else [False] * t.num_rows
        for scene, fp, n, c, m, d in zip(*(t.column(k).to_pylist() for k in ("scene", "fingerprint", "tiles", "centre")),
                                         model, display):
            found[scene] = {"fingerprint": fp, "tiles": int(n), "model_id": m, "display": bool(d),
                            "centre": None if c is None else np.asarray(c, np.float32)}
    return found


def read_file(uri: str):
    """One centres file as an Arrow table (``.arrow``, or ``.parquet`` of maps made before)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = storage.read_bytes(uri)
    if uri.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data))
    return pa.ipc.open_file(pa.py_buffer(data)).read_all()


def save(out: str, rows: dict[str, dict]) -> str | None:
    """Write new centres as one Arrow IPC file under ``out/_adaptation`` (before any tile
    of their scenes is mapped)."""
    import pyarrow as pa

    if not rows:
        return None
    scenes = sorted(rows)
    t = pa.table({"scene": scenes, "fingerprint": [rows[s]["fingerprint"] for s in scenes],
                  "model_id": [rows[s]["model_id"] for s in scenes],
                  "display": [bool(rows[s].get("display")) for s in scenes],
                  "tiles": pa.array([rows[s]["tiles"] for s in scenes], pa.int32()),
                  "centre": pa.array([None if rows[s]["centre"] is None else rows[s]["centre"].tolist() for s in scenes],
                                     pa.list_(pa.float32()))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, t.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(t)
    uri = storage.join(out, FOLDER, f"centres-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}.arrow")
    storage.write_bytes(uri, sink.getvalue().to_pybytes())
    return uri


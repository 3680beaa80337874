"""A map's scene centres (``models.adaptation``), stored with it: ``<map>/_adaptation/
centres-*.parquet`` (scene, its version, tiles sampled, centre), read back by a resumed
or incremental map and by ``remap`` of its store; and whether a run adapts at all.
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
    from raylib.models.model_dir import LandcoverModel

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
    import pyarrow.parquet as pq

    folder = storage.join(out, FOLDER)
    found: dict[str, dict] = {}
    if not storage.parse(folder).is_s3 and not storage.is_prefix(folder):
        return found
    for uri in storage.list_files(folder, (".parquet",)):
        t = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
        model = t.column("model_id").to_pylist() if "model_id" in t.column_names else [None] * t.num_rows
        display = t.column("display").to_pylist() if "display" in t.column_names else [False] * t.num_rows
        for scene, fp, n, c, m, d in zip(*(t.column(k).to_pylist() for k in ("scene", "fingerprint", "tiles", "centre")),
                                         model, display):
            found[scene] = {"fingerprint": fp, "tiles": int(n), "model_id": m, "display": bool(d),
                            "centre": None if c is None else np.asarray(c, np.float32)}
    return found


def save(out: str, rows: dict[str, dict]) -> str | None:
    """Write new centres as one Parquet file under ``out/_adaptation`` (before any tile of
    their scenes is mapped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not rows:
        return None
    scenes = sorted(rows)
    t = pa.table({"scene": scenes, "fingerprint": [rows[s]["fingerprint"] for s in scenes],
                  "model_id": [rows[s]["model_id"] for s in scenes],
                  "display": [bool(rows[s].get("display")) for s in scenes],
                  "tiles": pa.array([rows[s]["tiles"] for s in scenes], pa.int32()),
                  "centre": pa.array([None if rows[s]["centre"] is None else rows[s]["centre"].tolist() for s in scenes],
                                     pa.list_(pa.float32()))})
    sink = io.BytesIO()
    pq.write_table(t, sink, compression="zstd")
    uri = storage.join(out, FOLDER, f"centres-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}.parquet")
    storage.write_bytes(uri, sink.getvalue())
    return uri


"""The embedding store a map run writes beside the map (``landcover map --store``) or
alone (``landcover embed --scenes``): its identity (backbone, weights hash, preprocessing)."""

from __future__ import annotations

from dataclasses import dataclass

from raylib.config import MapConfig, SceneRead
from raylib.formats import embstore
from raylib.models.manifest import ModelManifest
from raylib.models.model_dir import local_model_folder


@dataclass
class StoreOutput:
    """Where a run writes its embedding store: ``<out>/_embeddings/`` beside a map, or ``out``
    itself (``landcover embed --scenes``: the store is the output, its parts resume like a
    map's), and the store's metadata."""

    meta: dict
    only: bool = False


def store_meta(cfg: MapConfig, manifest: ModelManifest, model_uri: str, grid: dict) -> dict:
    """The store's identity: backbone, weights hash, preprocessing (and its hash)."""

    bb = manifest.backbone
    folder = local_model_folder(model_uri)
    bb_folder = str(folder / bb["path"]) if bb.get("path") else (
        str(folder / manifest.backbone.get("path", "model")) if manifest.kind == "finetuned" else None)
    ref = bb.get("source") or bb.get("ref") or manifest.id
    pre = {"grid": grid, "input_size": bb.get("input_size"), "model_bands": manifest.bands,
           **SceneRead.of(cfg).model_dump()}
    return {"backbone": ref, "input_size": bb.get("input_size"), "model_id": manifest.id, "model_kind": manifest.kind,
            "model_uri": model_uri,
            "weights_hash": embstore.weights_hash(bb_folder, ref), "preprocessing": pre,
            "preprocessing_hash": embstore.preprocessing_hash(pre), "embedding_dtype": "float16",
            "note": "one row per tile, keyed by the map's tile_id; error tiles have no embedding"}

"""A model directory's manifest (``model.json``): what a model expects and produces. Light
(no torch, scikit-learn or transformers), so that planning and read tasks can use it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from raylib.errors import InputError

SCHEMA_VERSION = 1
MANIFEST = "model.json"


@dataclass
class ModelManifest:
    id: str
    kind: str
    backbone: dict
    head: dict
    classes: list[str]
    bands: dict  # {"channels": [...], "mean": [...], "std": [...]}
    tile_size: int
    gsd: float | None
    metrics: dict
    created_by: str
    schema_version: int = SCHEMA_VERSION
    inference: dict = field(default_factory=dict)  # {"tta": bool} for fine-tuned models
    training: dict = field(default_factory=dict)  # recipe and history of a fine-tuned model

    @classmethod
    def from_json(cls, text: str, where: str) -> "ModelManifest":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc}).", "rewrite the model directory with landcover train-head.") from None
        known = set(cls.__dataclass_fields__)
        missing = sorted(k for k in ("id", "kind", "backbone", "head", "classes", "bands", "tile_size") if k not in raw)
        if missing:
            raise InputError(f"{where} lacks {missing}.", "rewrite the model directory with landcover train-head.")
        if raw.get("schema_version", 1) > SCHEMA_VERSION:
            raise InputError(f"{where} has schema_version {raw['schema_version']}, newer than this landcover-ray "
                             f"understands ({SCHEMA_VERSION}).", "upgrade landcover-ray.")
        raw.setdefault("gsd", None)
        raw.setdefault("metrics", {})
        raw.setdefault("created_by", "")
        return cls(**{k: v for k, v in raw.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)

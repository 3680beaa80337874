"""The state record of an incremental map: which scenes were mapped, in which version
(fingerprint), with which model and grid, into which part files.

``<out>/_state.json``::

    {"model_id": "...", "grid": {...}, "scenes": {
        "<scene uri>": {"fingerprint": "size=...;etag=...", "key": "<12 hex>", "parts": ["part-..."],
                        "tiles": 48, "counts": {"ok": 48}, "quicklook": "...", "mapped_at": 1732...}}}

Rules: a scene is mapped when it is not in the record, its fingerprint changed, or it
failed last time (its error rows are replaced when it maps); a model
or grid other than the record's is refused unless a re-map is asked for. The record lists
every committed part; a ``part-*`` file it does not list is debris of a killed run and is
removed at the start of the next run. The record is rewritten after the new parts are in
place and before the replaced ones are deleted, so a run killed at any point leaves a
map that the next run completes without duplicate rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from raylib.errors import ConfigError
from raylib.io import storage

STATE = "_state.json"


def scene_key(uri: str) -> str:
    """Short stable id of a scene URI, used in its part and quick-look names."""
    return hashlib.sha1(uri.encode()).hexdigest()[:12]


@dataclass
class MapState:
    model_id: str | None = None
    grid: dict | None = None
    scenes: dict = field(default_factory=dict)

    @classmethod
    def load(cls, out: str) -> "MapState":
        uri = storage.join(out, STATE)
        if not storage.exists(uri):
            return cls()
        raw = json.loads(storage.read_bytes(uri))
        return cls(raw.get("model_id"), raw.get("grid"), raw.get("scenes", {}))

    def save(self, out: str) -> None:
        storage.write_bytes(storage.join(out, STATE), json.dumps(
            {"model_id": self.model_id, "grid": self.grid, "scenes": self.scenes}, indent=1).encode())

    def committed_parts(self) -> set[str]:
        return {p for s in self.scenes.values() for p in s["parts"]}


@dataclass
class Plan:
    pending: list[str]  # scenes to map, in input order
    unchanged: list[str]
    reasons: dict  # scene -> "new" | "changed" | "retry" | "remap"
    fingerprints: dict  # pending scene -> its fingerprint now (what the record will hold)


def plan_increment(state: MapState, scenes: list[str], model_id: str, grid: dict, remap: bool, out: str) -> Plan:
    """Which of ``scenes`` to map now."""
    if state.model_id is not None and (state.model_id, state.grid) != (model_id, grid) and not remap:
        what = "model " + state.model_id if state.model_id != model_id else f"grid {state.grid}"
        now = "model " + model_id if state.model_id != model_id else f"grid {grid}"
        raise ConfigError(f"{out} was mapped with {what}; this run uses {now}.",
                          "pass --remap to map every scene again with it, or choose another --out.")
    pending, unchanged, reasons, fingerprints = [], [], {}, {}
    for uri in scenes:
        old = state.scenes.get(uri)
        fp = storage.fingerprint(uri)
        if remap and state.model_id is not None:
            reasons[uri] = "remap"
        elif old is None:
            reasons[uri] = "new"
        elif old["fingerprint"] != fp:
            reasons[uri] = "changed"
        elif old.get("failed"):
            reasons[uri] = "retry"
        else:
            unchanged.append(uri)
            continue
        pending.append(uri)
        fingerprints[uri] = fp
    return Plan(pending, unchanged, reasons, fingerprints)


def remove_debris(state: MapState, out: str, keep: set[str] = frozenset()) -> list[str]:
    """Delete ``part-*`` files neither the record nor ``keep`` (this run's parts, which a
    killed run of the same job may have written) lists."""
    keep = state.committed_parts() | set(keep)
    gone = []
    for uri in storage.folder_files(out):
        rel = uri[len(storage.as_prefix(out)):]
        if "/" not in rel and rel.startswith("part-") and rel not in keep:
            storage.delete_prefix(uri)
            gone.append(rel)
    return gone


def record(state: MapState, uri: str, *, fingerprint: str, parts: list[str], tiles: int, counts: dict | None,
           quicklook: str | None, failed: str | None = None) -> list[str]:
    """Put one freshly mapped scene into the record; returns the parts it replaces. A scene
    that failed (``failed`` = its reason code) keeps its error rows and is tried again by
    the next run."""
    old = state.scenes.get(uri, {}).get("parts", [])
    state.scenes[uri] = {"fingerprint": fingerprint, "key": scene_key(uri), "parts": parts, "tiles": tiles,
                         "counts": counts, "quicklook": quicklook, "mapped_at": time.time()}
    if failed:
        state.scenes[uri]["failed"] = failed
    return [p for p in old if p not in parts]

"""The state record of an incremental map: which scenes were mapped, in which version
(fingerprint), with which model and grid, into which part files.

``<out>/_state/``::

    map.json                         {"model_id": "...", "grid": {...}}
    log-<ns time>-<pid>.parquet      the scene records one run added, one row per scene:
                                     uri, fingerprint, key, parts, tiles, counts (JSON),
                                     quicklook, mapped_at, failed

A scene's record is its latest row over the log files (in name order, which is time
order). A run appends one small file (the scenes it mapped), never rewrites the record, so
a run with nothing new writes nothing and one with a few new scenes writes a few rows,
however many scenes the map holds; past ``COMPACT_AFTER`` files the latest rows are
written to one file and the older files removed (a crash in between leaves duplicates that
loading resolves). Maps made before the log (``_state.json``) are read and carried over.

Rules: a scene is mapped when it is not in the record, its fingerprint changed, or it
failed last time (its error rows are replaced when it maps); a model or grid other than the
record's is refused unless a re-map is asked for. The record lists every committed part; a
``part-*`` file it does not list is debris of a killed run and is removed at the start of
the next run that maps something. The record is written after the new parts are in place
and before the replaced ones are deleted, so a run killed at any point leaves a map that the
next run completes without duplicate rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raylib.errors import ConfigError
from raylib.io import storage

STATE = "_state"
LEGACY = "_state.json"  # the one-document record of earlier versions
COMPACT_AFTER = 32  # log files before they are merged into one
LOG_SCHEMA = pa.schema([("uri", pa.string()), ("fingerprint", pa.string()), ("key", pa.string()),
                        ("parts", pa.list_(pa.string())), ("tiles", pa.int64()), ("counts", pa.string()),
                        ("quicklook", pa.string()), ("mapped_at", pa.float64()), ("failed", pa.string())])


def exists(out: str) -> bool:
    """Whether ``out`` holds the record of an incremental map."""
    return storage.exists(storage.join(out, STATE, "map.json")) or storage.exists(storage.join(out, LEGACY))


def scene_key(uri: str) -> str:
    """Short stable id of a scene URI, used in its part and quick-look names."""
    return hashlib.sha1(uri.encode()).hexdigest()[:12]


@dataclass
class MapState:
    model_id: str | None = None
    grid: dict | None = None
    table: pa.Table = field(default_factory=LOG_SCHEMA.empty_table)  # the latest record of each scene
    new: dict = field(default_factory=dict)  # uri -> record added by this run
    files: list = field(default_factory=list)  # log files read
    _index: dict | None = None

    @classmethod
    def load(cls, out: str) -> "MapState":
        meta_uri = storage.join(out, STATE, "map.json")
        if storage.exists(meta_uri):
            meta = json.loads(storage.read_bytes(meta_uri))
            files = sorted(u for u in storage.folder_files(storage.join(out, STATE))
                           if storage.basename(u).startswith("log-") and u.endswith(".parquet"))
            tables = [_read_log(u) for u in files]
            table = latest(pa.concat_tables(tables)) if tables else LOG_SCHEMA.empty_table()
            return cls(meta.get("model_id"), meta.get("grid"), table, files=files)
        legacy = storage.join(out, LEGACY)
        if storage.exists(legacy):  # carried over on the next save
            raw = json.loads(storage.read_bytes(legacy))
            state = cls(raw.get("model_id"), raw.get("grid"))
            for uri, rec in raw.get("scenes", {}).items():
                state.new[uri] = {**rec, "uri": uri}
            return state
        return cls()

    def save(self, out: str) -> None:
        """Append this run's records (one file), then the map's model and grid."""
        folder = storage.join(out, STATE)
        if self.new:
            rows = _table(list(self.new.values()))
            name = f"log-{time.time_ns():020d}-{os.getpid()}.parquet"
            _write(rows, storage.join(folder, name))
            self.files.append(storage.join(folder, name))
            self.table = latest(pa.concat_tables([self.table, rows]))
            self.new, self._index = {}, None
        storage.write_bytes(storage.join(folder, "map.json"),
                            json.dumps({"model_id": self.model_id, "grid": self.grid}).encode())
        if storage.exists(storage.join(out, LEGACY)):
            storage.delete_prefix(storage.join(out, LEGACY))
        if len(self.files) > COMPACT_AFTER:
            self.compact(out)

    def compact(self, out: str) -> None:
        """The latest records in one file; the older files removed."""
        folder = storage.join(out, STATE)
        name = storage.join(folder, f"log-{time.time_ns():020d}-{os.getpid()}.parquet")
        _write(self.table, name)
        for uri in self.files:
            storage.delete_prefix(uri)
        self.files = [name]

    # ----------------------------------------------------------------- lookups

    def _lookup(self) -> dict:
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self.table.column("uri").to_pylist())}
        return self._index

    def get(self, uri: str) -> dict | None:
        """A scene's record (this run's first), or None."""
        if uri in self.new:
            return self.new[uri]
        i = self._lookup().get(uri)
        if i is None:
            return None
        rec = self.table.slice(i, 1).to_pylist()[0]
        rec["counts"] = json.loads(rec["counts"]) if rec["counts"] else None
        return rec

    def versions(self) -> dict[str, tuple[str, str | None]]:
        """uri -> (fingerprint, failed reason) of every recorded scene."""
        out = dict(zip(self.table.column("uri").to_pylist(),
                       zip(self.table.column("fingerprint").to_pylist(), self.table.column("failed").to_pylist())))
        out.update({u: (r["fingerprint"], r.get("failed")) for u, r in self.new.items()})
        return out

    @property
    def scenes(self) -> dict:
        """Every scene's record (a dictionary: for small maps and tests)."""
        out = {u: self.get(u) for u in self.table.column("uri").to_pylist()}
        out.update(self.new)
        return out

    def n_scenes(self) -> int:
        return len(set(self.table.column("uri").to_pylist()) | set(self.new))

    def n_tiles(self) -> int:
        old = {u: t for u, t in zip(self.table.column("uri").to_pylist(), self.table.column("tiles").to_pylist())}
        old.update({u: r["tiles"] for u, r in self.new.items()})
        return int(sum(old.values()))

    def committed_parts(self) -> set[str]:
        old = {u: p for u, p in zip(self.table.column("uri").to_pylist(), self.table.column("parts").to_pylist())}
        old.update({u: r["parts"] for u, r in self.new.items()})
        return {p for parts in old.values() for p in parts or ()}


def latest(table: pa.Table) -> pa.Table:
    """The last row of each uri (rows in log order)."""
    if not table.num_rows:
        return table
    n = table.num_rows
    t = table.append_column("_row", pa.array(range(n), pa.int64()))
    last = t.group_by("uri").aggregate([("_row", "max")]).column("_row_max")
    return table.take(last.take(pc.sort_indices(last)))


def _table(records: list[dict]) -> pa.Table:
    cols = {f.name: [] for f in LOG_SCHEMA}
    for r in records:
        for k in cols:
            v = r.get(k)
            cols[k].append(json.dumps(v) if k == "counts" and v is not None else v)
    return pa.table(cols, schema=LOG_SCHEMA)


def _read_log(uri: str) -> pa.Table:
    fs, path = storage.arrow_filesystem(uri)
    return pq.read_table(path, filesystem=fs).cast(LOG_SCHEMA)


def _write(table: pa.Table, uri: str) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())


@dataclass
class Plan:
    pending: list[str]  # scenes to map, in input order
    unchanged: list[str]
    reasons: dict  # scene -> "new" | "changed" | "retry" | "refresh"
    fingerprints: dict  # pending scene -> its fingerprint now (what the record will hold)


def plan_increment(state: MapState, scenes: list[str], model_id: str, grid: dict, refresh: bool, out: str) -> Plan:
    """Which of ``scenes`` to map now."""
    if state.model_id is not None and (state.model_id, state.grid) != (model_id, grid) and not refresh:
        what = "model " + state.model_id if state.model_id != model_id else f"grid {state.grid}"
        now = "model " + model_id if state.model_id != model_id else f"grid {grid}"
        raise ConfigError(f"{out} was mapped with {what}; this run uses {now}.",
                          "pass --refresh to map every scene again with it, or choose another --out.")
    known = state.versions()
    pending, unchanged, reasons, fingerprints = [], [], {}, {}
    for uri in scenes:
        old = known.get(uri)
        fp = storage.fingerprint(uri)
        if refresh and state.model_id is not None:
            reasons[uri] = "refresh"
        elif old is None:
            reasons[uri] = "new"
        elif old[0] != fp:
            reasons[uri] = "changed"
        elif old[1]:
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
    for rel, uri in storage.files_by_name(out).items():
        if "/" not in rel and rel.startswith("part-") and rel not in keep:
            storage.delete_prefix(uri)
            gone.append(rel)
    return gone


def record(state: MapState, uri: str, *, fingerprint: str, parts: list[str], tiles: int, counts: dict | None,
           quicklook: str | None, failed: str | None = None) -> list[str]:
    """Put one freshly mapped scene into the record; returns the parts it replaces. A scene
    that failed (``failed`` = its reason code) keeps its error rows and is tried again by
    the next run."""
    old = (state.get(uri) or {}).get("parts") or []
    state.new[uri] = {"uri": uri, "fingerprint": fingerprint, "key": scene_key(uri), "parts": parts, "tiles": tiles,
                      "counts": counts, "quicklook": quicklook, "mapped_at": time.time(), "failed": failed}
    return [p for p in old if p not in parts]

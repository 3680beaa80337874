"""Streaming output parts sized by bytes, with spatially sorted row groups and a record of
what each part holds.

Rows arrive in any order (as the pipeline returns them, scenes interleaved). ``PartWriter``
keeps at most a sort window of them (``SORT_GROUPS`` row groups): when it is full, its rows
are sorted along a Z-order curve of the tile centres and written as row groups of
``row_group_rows``, so each row group covers a compact area and its ``bbox`` column
statistics let readers (DuckDB, pyarrow dataset filters, GDAL) skip the others. The
driver's memory is bounded by the window, whatever the area. A part is closed when its file reaches
``part_bytes`` (or holds ``rows_cap`` rows), written complete under ``_tmp/`` (an atomic
rename, or a single upload) and reported to ``on_part``.

Each part's footer records its contents (key ``landcover_contents``): the tile ranges of
each scene it holds (``[lo, hi)`` in the scene's grid order), the scenes' versions, tile
counts and counts per status, the part's counts per status and reason, and its bbox. (The
GeoParquet ``geo`` metadata lives in the Arrow schema, which is fixed when a streamed file
opens, so it leaves out the optional file bbox; row-group statistics of the ``bbox``
covering column are what readers prune on.) A re-run of the same job reads only
these footers to know which tiles are done (``done_ranges``) and what they counted.

With a store sink (``landcover map --store``), the same rows in the same order go to a
store part of the same name, closed first: a map part on disk means its store part is
there too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raylib.errors import StoppedPartWay
from raylib.formats import embstore, mapfile
from raylib.io import storage

CONTENTS_KEY = b"landcover_contents"
SORT_GROUPS = 2  # row groups sorted together (the window the driver holds)


@dataclass
class Sink:
    """Where one kind of part goes (the map, or its embedding store), and its file metadata."""

    root: str  # folder of committed parts
    stage: str  # folder parts are written to complete (``root/_tmp`` for a map)
    metadata: dict  # key -> JSON-able value, written into every part's footer
    writer: pq.ParquetWriter | None = None
    path: str | None = None  # local file being written
    bbox: list = field(default_factory=lambda: [np.inf, np.inf, -np.inf, -np.inf])


def part_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def ranges_of(t: np.ndarray) -> list[list[int]]:
    """Sorted tile indices -> ``[[lo, hi), ...]`` runs."""
    if not len(t):
        return []
    t = np.sort(t)
    cut = np.flatnonzero(np.diff(t) != 1) + 1
    starts, ends = np.r_[t[:1], t[cut]], np.r_[t[cut - 1], t[-1:]] + 1
    return [[int(a), int(b)] for a, b in zip(starts, ends)]


class PartWriter:
    """Rows in, byte-sized parts out (see the module docstring)."""

    def __init__(self, sinks: list[Sink], *, part_bytes: int, rows_cap: int | None, row_group_rows: int,
                 first_index: int, scene_record, on_part, name_for=None):
        self.sinks = sinks
        self.part_bytes, self.rows_cap = part_bytes, rows_cap
        self.rg_rows = min(row_group_rows, rows_cap) if rows_cap else row_group_rows
        self.next_index = first_index
        self.scene_record = scene_record  # uri -> {"fingerprint", "tiles", "failed"}
        self.on_part = on_part  # (name, contents) after a part is complete under _tmp
        self.name_for = name_for or part_name
        self.pending: list[tuple[list[pa.Table], np.ndarray]] = []  # (tables per sink, tile indices)
        self.n_pending = 0
        self.open_name: str | None = None
        self.rows_in_part = 0
        self.part_scenes: dict[str, dict] = {}  # scene uri -> {"ranges", "counts"} of the open part
        self.part_counts: dict = {}
        self.part_reasons: dict = {}

    def add(self, tables: list[pa.Table], t: np.ndarray) -> None:
        """Rows (one table per sink, the same rows) and their tiles' indices in their scenes."""
        if not tables[0].num_rows:
            return
        self.pending.append((tables, np.asarray(t, np.int64)))
        self.n_pending += tables[0].num_rows
        with self._disk():
            while self.n_pending >= self._room():
                self._write_group(self._room())

    def close(self) -> None:
        """Write what is pending and close the open part."""
        with self._disk():
            while self.n_pending:
                self._write_group(min(self.n_pending, self._room()))
            self._close_part()

    @contextlib.contextmanager
    def _disk(self):
        """No space left where a part is written: one clear error naming the part and where
        it grows; the parts complete so far stay, and the same command resumes after them."""
        try:
            yield
        except OSError as exc:
            if exc.errno != errno.ENOSPC and "No space left on device" not in str(exc):
                raise
            name = self.open_name or self.name_for(self.next_index)
            where = _local_stage(self.sinks[-1].stage)
            for sink in self.sinks:  # the part that did not fit: its growing files go (their space with them)
                if sink.path and os.path.exists(sink.path):
                    os.unlink(sink.path)
                sink.writer, sink.path = None, None
            self.open_name = None
            raise StoppedPartWay(
                f"No space left on the device of {where} while writing part {name} of {self.sinks[-1].root}; "
                f"the parts completed before it are kept.",
                "free space there (or set TMPDIR for an s3:// output) and run the same command again: it maps only "
                "the tiles no complete part holds.") from None

    # ----------------------------------------------------------------- internals

    def _room(self) -> int:
        """Rows the next sort window takes: a window, or what the part's row cap leaves."""
        if self.rows_cap:
            return min(self.rg_rows * SORT_GROUPS, self.rows_cap - self.rows_in_part)
        return self.rg_rows * SORT_GROUPS

    def _take(self, n: int) -> tuple[list[pa.Table], np.ndarray]:
        tabs = [[] for _ in self.sinks]
        ts = []
        got = 0
        while got < n:
            tables, t = self.pending[0]
            k = min(n - got, len(t))
            for i, tb in enumerate(tables):
                tabs[i].append(tb.slice(0, k))
            ts.append(t[:k])
            if k == len(t):
                self.pending.pop(0)
            else:
                self.pending[0] = ([tb.slice(k) for tb in tables], t[k:])
            got += k
        self.n_pending -= n
        return [pa.concat_tables(x) for x in tabs], np.concatenate(ts)

    def _write_group(self, n: int) -> None:
        """Sort ``n`` pending rows (a window) and write them as row groups of the open part."""
        tables, t = self._take(n)
        order = pa.array(embstore.zorder(tables[0]))
        tables = [tb.take(order) for tb in tables]
        t = t[order.to_numpy()]
        if self.open_name is None:
            self._open_part(tables)
        for sink, tb in zip(self.sinks, tables):
            sink.writer.write_table(tb, row_group_size=self.rg_rows)
        _grow_bbox(self.sinks[0].bbox, tables[0])
        self._note(tables[0], t)
        self.rows_in_part += n
        st = tables[0].column("status")
        for v in st.value_counts().to_pylist():
            self.part_counts[v["values"]] = self.part_counts.get(v["values"], 0) + v["counts"]
        reasons = tables[0].column("reason").drop_null()
        for v in reasons.value_counts().to_pylist():
            self.part_reasons[v["values"]] = self.part_reasons.get(v["values"], 0) + v["counts"]
        full = self.rows_cap and self.rows_in_part >= self.rows_cap
        if full or max(os.path.getsize(s.path) for s in self.sinks) >= self.part_bytes:
            self._close_part()

    def _open_part(self, tables: list[pa.Table]) -> None:
        self.open_name = self.name_for(self.next_index)
        self.next_index += 1
        for sink, tb in zip(self.sinks, tables):
            fd, sink.path = storage.temp_file(_local_stage(sink.stage), prefix=".part-", suffix=".parquet")
            os.close(fd)
            # GeoParquet metadata goes into the Arrow schema, fixed when the file opens: its
            # optional file bbox is left out (the part's bbox is in its contents record)
            meta = {k.encode(): json.dumps(v).encode() for k, v in sink.metadata.items()}
            meta.update(mapfile.schema_metadata(tb.schema))
            meta[b"geo"] = json.dumps(mapfile.geo_metadata(None)).encode()
            sink.writer = pq.ParquetWriter(sink.path, mapfile.documented(tb.schema).with_metadata(meta),
                                           compression="zstd")

    def _close_part(self) -> None:
        if self.open_name is None:
            return
        contents = self._contents()
        bb = self.sinks[0].bbox
        contents["bbox"] = [float(v) for v in bb] if np.isfinite(bb).all() else None
        for sink in self.sinks:  # the store part first: the map part is the commit
            sink.writer.add_key_value_metadata({CONTENTS_KEY.decode(): json.dumps(contents)})
            sink.writer.close()
            _publish(sink.path, storage.join(sink.stage, self.open_name))
            sink.writer, sink.path = None, None
        bb[:] = [np.inf, np.inf, -np.inf, -np.inf]
        name = self.open_name
        self.open_name, self.rows_in_part, self.part_scenes = None, 0, {}
        self.part_counts, self.part_reasons = {}, {}
        self.on_part(name, contents)

    def _note(self, table: pa.Table, t: np.ndarray) -> None:
        """What a row group adds to the open part's contents (per scene: tile ranges and
        counts per status; nothing per row is kept)."""
        uris = table.column("scene").to_numpy(zero_copy_only=False).astype(str)
        status = table.column("status").to_numpy(zero_copy_only=False).astype(str)
        order = np.lexsort((t, uris))
        uris, t, status = uris[order], t[order], status[order]
        cut = np.flatnonzero(uris[1:] != uris[:-1]) + 1
        for a, b in zip(np.r_[0, cut], np.r_[cut, len(uris)]):
            d = self.part_scenes.setdefault(str(uris[a]), {"ranges": [], "counts": {}})
            d["ranges"].extend(ranges_of(t[a:b]))
            for k, v in zip(*np.unique(status[a:b], return_counts=True)):
                d["counts"][str(k)] = d["counts"].get(str(k), 0) + int(v)

    def _contents(self) -> dict:
        ranges, scenes = {}, {}
        for uri, d in self.part_scenes.items():
            ranges[uri] = _merge(d["ranges"])
            scenes[uri] = {**self.scene_record(uri), "counts": d["counts"]}
        return {"rows": int(self.rows_in_part), "ranges": ranges, "scenes": scenes, "counts": dict(self.part_counts),
                "reasons": dict(self.part_reasons)}


def _merge(ranges: list) -> list[list[int]]:
    """Sorted ``[lo, hi)`` ranges with touching ones joined."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def _grow_bbox(bbox: list, table: pa.Table) -> None:
    bb = table.column("bbox").combine_chunks()
    if bb.null_count == len(bb):
        return
    vals = [np.asarray(bb.field(k).to_numpy(zero_copy_only=False), float) for k in ("xmin", "ymin", "xmax", "ymax")]
    ok = np.isfinite(vals[0])
    if not ok.any():
        return
    bbox[0], bbox[1] = min(bbox[0], vals[0][ok].min()), min(bbox[1], vals[1][ok].min())
    bbox[2], bbox[3] = max(bbox[2], vals[2][ok].max()), max(bbox[3], vals[3][ok].max())


def remove_growing(stage: str) -> list[str]:
    """Delete the parts a killed run left growing in a local ``stage`` folder (hidden
    ``.part-*.parquet`` files: no reader sees them, but they hold disk). On S3 a part grows
    in a local temporary folder, never under the stage."""
    loc = storage.parse(stage)
    if loc.is_s3 or not os.path.isdir(loc.key):
        return []
    gone = sorted(n for n in os.listdir(loc.key) if n.startswith(".part-") and n.endswith(".parquet"))
    for name in gone:
        os.remove(os.path.join(loc.key, name))
    return gone


def _local_stage(stage: str) -> str:
    """Where a part is written while it grows: beside its final place when that is local (one
    rename makes it complete), else a local temporary folder (one upload)."""
    loc = storage.parse(stage)
    if loc.is_s3:
        return tempfile.gettempdir()
    os.makedirs(loc.key, exist_ok=True)
    return loc.key


def _publish(path: str, uri: str) -> None:
    loc = storage.parse(uri)
    if loc.is_s3:
        try:
            storage.upload_file(path, uri)
        finally:
            os.unlink(path)
    else:
        os.makedirs(os.path.dirname(loc.key), exist_ok=True)
        os.replace(path, loc.key)


def read_contents(uri: str) -> dict | None:
    """A part's contents record (None for a part written before parts recorded them)."""
    fs, path = storage.arrow_filesystem(uri)
    with fs.open_input_file(path) as fh:
        meta = pq.read_metadata(fh).metadata or {}
    raw = meta.get(CONTENTS_KEY)
    return json.loads(raw) if raw else None


def done_scenes(contents: list[dict]) -> dict[str, dict]:
    """Scene URI -> what the parts hold of it, over the contents of several parts:
    ``ranges`` (tiles written), ``counts`` (per status), its record (``fingerprint``,
    ``tiles``, ``failed``)."""
    out: dict[str, dict] = {}
    for c in contents:
        for uri, rs in c["ranges"].items():
            rec = c["scenes"][uri]
            d = out.setdefault(uri, {**{k: v for k, v in rec.items() if k != "counts"}, "ranges": [], "counts": {}})
            d["ranges"].extend(rs)
            for k, v in rec.get("counts", {}).items():
                d["counts"][k] = d["counts"].get(k, 0) + v
    return out

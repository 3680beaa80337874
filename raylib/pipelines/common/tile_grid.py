"""What a quick-look draws of map rows, per grid cell: the label (unknown and cloudy as their
own values), how sure the map is, and how unlike the training tiles (``ood``). The map's
driver fills a ``TileGrid`` per scene as its rows come back; ``remap`` fills one from a
finished map. ``ground_cells`` places the tiles of a ground-grid table (a composite, a
change map) on each CRS zone's grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.eval import reports
from raylib.formats import mapfile
from raylib.raster import tiling

# the map columns a quick-look draws (a resumed scene's picture reads them from its parts)
QUICKLOOK_COLUMNS = ["scene", "label_index", "label", "reason", "grid_row", "grid_col", "confidence", "ood"]


@dataclass
class Cells:
    """Map rows as a quick-look draws them: the label index (``reports.UNKNOWN_INDEX`` for
    unknown, ``CLOUDY_INDEX`` for cloudy, -1 for none), grid row and column (-1: none),
    confidence and ``ood`` (NaN: none)."""

    labels: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    confidence: np.ndarray
    ood: np.ndarray

    def take(self, idx) -> "Cells":
        return Cells(self.labels[idx], self.rows[idx], self.cols[idx], self.confidence[idx], self.ood[idx])


class TileGrid:
    """What a scene's quick-look draws, per grid cell: label index, confidence, ``ood``."""

    def __init__(self, labels: np.ndarray, confidence: np.ndarray, ood: np.ndarray):
        self.labels, self.confidence, self.ood = labels, confidence, ood

    @classmethod
    def empty(cls, shape) -> "TileGrid":
        return cls(np.full(shape, -1, np.int16), np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32))

    @staticmethod
    def cells(table: pa.Table) -> Cells:
        """The cells of map rows (``QUICKLOOK_COLUMNS``), with Arrow compute: no Python
        object per row."""
        import pyarrow.compute as pc

        def where(name: str, value: str) -> np.ndarray:
            return pc.equal(table.column(name), value).fill_null(False).to_numpy(zero_copy_only=False)

        def floats(name: str) -> np.ndarray:
            if name not in table.column_names:
                return np.full(table.num_rows, np.nan, np.float32)
            return table.column(name).cast(pa.float32()).fill_null(np.nan).to_numpy().astype(np.float32)

        labels = table.column("label_index").fill_null(-1).to_numpy().astype(np.int16)
        labels[where("label", mapfile.UNKNOWN)] = reports.UNKNOWN_INDEX
        labels[where("reason", "cloudy")] = reports.CLOUDY_INDEX
        return Cells(labels, table.column("grid_row").fill_null(-1).to_numpy().astype(np.int64),
                     table.column("grid_col").fill_null(-1).to_numpy().astype(np.int64),
                     floats("confidence"), floats("ood"))

    def put(self, cells: Cells) -> None:
        m = cells.rows >= 0
        at = (cells.rows[m], cells.cols[m])
        self.labels[at], self.confidence[at], self.ood[at] = cells.labels[m], cells.confidence[m], cells.ood[m]


@dataclass
class ZoneCells:
    """The tiles of one CRS zone of a ground-grid table: their rows in the table and their
    cells (grid row, column) in a grid of ``shape``."""

    zone: str
    rows: np.ndarray
    row: np.ndarray
    col: np.ndarray
    shape: tuple[int, int]
    origin: tuple[float, float] = (0.0, 0.0)  # the grid's top-left corner in the zone's CRS
    step: float = 1.0  # a cell's side in the zone's CRS units

    def draw(self, values: np.ndarray, none: int = -1) -> np.ndarray:
        """A grid of ``shape`` with each of the zone's tiles' ``values`` (indexed by table
        row) at its cell, ``none`` elsewhere."""
        grid = np.full(self.shape, none, np.int64)
        grid[self.row, self.col] = values[self.rows]
        return grid


def ground_cells(table: pa.Table, grid: dict | None) -> list[ZoneCells]:
    """Each tile of a ground-grid table (``bbox``, ``scene_crs``) at its cell of its CRS
    zone's grid (from its footprint's centre, back in the zone's CRS), zones in order;
    ``grid``: the map's (its step, ``tiling.grid_step``)."""
    from pyproj import Transformer

    bb = table.column("bbox").combine_chunks()
    lon = (np.asarray(bb.field("xmin")) + np.asarray(bb.field("xmax"))) / 2
    lat = (np.asarray(bb.field("ymin")) + np.asarray(bb.field("ymax"))) / 2
    crs = np.asarray(table.column("scene_crs").to_pylist(), object).astype(str)
    out = []
    for zone in sorted(set(crs) - {"None"}):
        sel = np.flatnonzero(crs == zone)
        x, y = Transformer.from_crs("EPSG:4326", str(zone), always_xy=True).transform(lon[sel], lat[sel])
        x, y = np.asarray(x), np.asarray(y)
        inside = np.isfinite(x) & np.isfinite(y)  # (a footprint the zone's projection cannot place: not drawn)
        if not inside.any():
            continue
        sel, x, y = sel[inside], x[inside], y[inside]
        step = tiling.grid_step(grid) or min([s for s in map(tiling.step_of, (x, y)) if s], default=1.0)
        col = np.round((x - x.min()) / step).astype(int)
        row = np.round((y.max() - y) / step).astype(int)
        out.append(ZoneCells(zone, sel, row, col, (int(row.max()) + 1, int(col.max()) + 1),
                             (float(x.min() - step / 2), float(y.max() + step / 2)), step))
    return out

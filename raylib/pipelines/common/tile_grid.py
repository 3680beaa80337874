"""What a quick-look draws of map rows, per grid cell: the label (unknown and cloudy as their
own values), how sure the map is, and how unlike the training tiles (``ood``). The map's
driver fills a ``TileGrid`` per scene as its rows come back; ``remap`` fills one from a
finished map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.eval import reports
from raylib.formats import mapfile

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

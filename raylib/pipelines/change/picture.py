"""The change map's picture: before, after and change panels per CRS zone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raylib.eval import reports
from raylib.pipelines.common.tile_grid import ground_cells

COLUMNS = ["scene_crs", "bbox", "labels", "label", "changed", "status"]
TRANSITION_COLOURS = [(230, 25, 75), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
                      (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128), (128, 128, 0)]
STABLE, OTHER = (235, 235, 235), (90, 90, 90)


def change_png(table: pa.Table, groups: list[str], names: list[str], model_id: str) -> bytes:
    """The first and last dates' classes, then each changed tile coloured by its transition
    (the ten largest; the rest as one), stable tiles pale grey, tiles without both dates
    black (``COLUMNS`` of the change map)."""
    import pyarrow.compute as pc

    k = len(groups)
    labels = table.column("labels")
    n_dates = len(names)

    def date(j: int) -> np.ndarray:  # a date's class index per tile (-1: none), without a Python object per row
        return pc.index_in(pc.list_element(labels, j), value_set=pa.array(groups)).fill_null(-1).to_numpy(
            zero_copy_only=False).astype(np.int64)

    first, last = date(0), date(n_dates - 1)
    lab = np.asarray(table.column("label").fill_null("").to_numpy(zero_copy_only=False), object)
    changed = table.column("changed").fill_null(False).to_numpy(zero_copy_only=False)
    moves, counts = np.unique(lab[changed].astype(str), return_counts=True) if changed.any() else ([], [])
    top = [m for _, m in sorted(zip(-np.asarray(counts), moves))][: len(TRANSITION_COLOURS)]
    other = bool(changed.any()) and len(moves) > len(top)
    legend = list(groups) + ["no change"] + top + (["other change"] if other else [])
    colours = reports.palette(groups) + [STABLE] + TRANSITION_COLOURS[: len(top)] + ([OTHER] if other else [])
    move = np.full(len(lab), -1, np.int64)
    ok = table.column("status").to_numpy(zero_copy_only=False) == "ok"
    move[ok & ~changed] = k
    for i, m in enumerate(top):
        move[changed & (lab == m)] = k + 1 + i
    if other:
        move[changed & (move < 0)] = len(legend) - 1
    grids, captions = [], []
    for z in ground_cells(table):
        grids += [z.draw(first), z.draw(last), z.draw(move)]
        captions += [f"{names[0]} ({z.zone})", names[-1], f"change: {int(changed[z.rows].sum())} of {len(z.rows)} tiles"]
    return reports.side_by_side_png(f"change {names[0]} -> {names[-1]} | model {model_id}", grids, legend, captions,
                                    none_label="not observed on both dates", colours=colours)

"""The change map's picture, per CRS zone: the first and last dates' imagery and classes, and
the changes over the last date's imagery.

Top row: the first date's imagery, the last date's, and the changes; below them each date's
classes. A changed tile is painted in its transition's colour over the last imagery (shown
in grey), the ten largest transitions each in a colour of their own, chosen far from every
class colour of the picture (a transition never reads as a class); the rest of the changes
striped black and white; a pending change (into the last date, not yet confirmed) striped in
dark grey; a tile not observed on both dates black. Without imagery (too many
scenes, or unreadable) the changes are drawn on pale grey.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raylib.eval import reports
from raylib.pipelines.common.tile_grid import ZoneCells, ground_cells

COLUMNS = ["scene_crs", "bbox", "labels", "label", "changed", "pending", "status"]
# candidates for the transitions' colours (Kelly's colours of maximum contrast, and a few more)
CANDIDATES = [(255, 179, 0), (128, 62, 117), (255, 104, 0), (166, 189, 215), (193, 0, 32), (206, 162, 98),
              (0, 125, 52), (246, 118, 142), (0, 83, 138), (255, 122, 92), (83, 55, 122), (255, 142, 0),
              (179, 40, 81), (244, 200, 0), (127, 24, 13), (147, 170, 0), (89, 51, 21), (241, 58, 19),
              (0, 255, 255), (255, 0, 255), (0, 90, 90), (140, 255, 0), (0, 0, 255), (128, 0, 255), (0, 255, 128),
              (170, 255, 255), (255, 255, 160), (100, 0, 60)]
MIN_DISTANCE = 90.0  # RGB distance a transition's colour keeps from every class colour, where it can
# what the change panel shows besides: tiles not observed (black), imagery in grey, other changes' stripes
AVOID = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (200, 200, 200), (60, 60, 60)]
TOP = 10  # transitions with a colour of their own
STRIPE = 4  # px of a stripe


def transition_colours(class_colours: list, k: int) -> list[tuple[int, int, int]]:
    """``k`` colours, each as far as can be from every class colour and from each other
    (greedy: the candidate farthest from those taken, first those at least ``MIN_DISTANCE``
    from every class colour); never a class's own colour."""
    fixed = [np.asarray(c, float) for c in list(class_colours) + AVOID]
    taken = list(fixed)
    out: list[tuple[int, int, int]] = []
    pool = [np.asarray(c, float) for c in CANDIDATES]

    def far(c, among):
        return min((float(np.linalg.norm(c - t)) for t in among), default=1e9)

    for _ in range(k):
        if not pool:
            break
        best = max(pool, key=lambda c: (far(c, fixed) >= MIN_DISTANCE, far(c, taken)))
        pool = [c for c in pool if c is not best]
        taken.append(best)
        out.append(tuple(int(v) for v in best))
    return out


def change_png(table: pa.Table, groups: list[str], names: list[str], model_id: str, grid: dict | None,
               imagery=None) -> bytes:
    """The picture of a change map (``COLUMNS``): ``imagery(date, zone, scale)`` gives the
    first (``date`` 0) or last (1) date's true colour on a zone's grid, or None."""
    import pyarrow.compute as pc

    labels = table.column("labels")

    def date(j: int) -> np.ndarray:  # a date's class index per tile (-1: none), without a Python object per row
        return pc.index_in(pc.list_element(labels, j), value_set=pa.array(groups)).fill_null(-1).to_numpy(
            zero_copy_only=False).astype(np.int64)

    first, last = date(0), date(len(names) - 1)
    lab = np.asarray(table.column("label").fill_null("").to_numpy(zero_copy_only=False), object)
    changed = table.column("changed").fill_null(False).to_numpy(zero_copy_only=False)
    pending = table.column("pending").fill_null(False).to_numpy(zero_copy_only=False) \
        if "pending" in table.column_names else np.zeros(len(lab), bool)
    ok = table.column("status").to_numpy(zero_copy_only=False) == "ok"
    moves, counts = np.unique(lab[changed].astype(str), return_counts=True) if changed.any() else ([], [])
    top = [m for _, m in sorted(zip(-np.asarray(counts), moves))][:TOP]
    other = bool(changed.any()) and len(moves) > len(top)
    shown = sorted(set(first[first >= 0].tolist()) | set(last[last >= 0].tolist()))
    class_colours = reports.palette(groups)
    colours = transition_colours([class_colours[i] for i in shown], len(top))
    # each tile's mark on the change panel: -1 none (stable), 0..TOP-1 a transition, TOP other, TOP+1 pending
    mark = np.full(len(lab), -1, np.int64)
    for i, m in enumerate(top):
        mark[changed & (lab == m)] = i
    if other:
        mark[changed & (mark < 0)] = TOP
    mark[pending & ok & ~changed] = TOP + 1
    panels, captions = [], []
    for z in ground_cells(table, grid):
        scale = reports.panel_scale(z.shape)
        img0, img1 = (imagery(j, z, scale) if imagery else None for j in (0, 1))
        blank = np.full((z.shape[0] * scale, z.shape[1] * scale, 3), 235, np.uint8)
        panels += [img0 if img0 is not None else blank, img1 if img1 is not None else blank,
                   _change_panel(z, scale, img1, mark, ok, colours),
                   reports.class_panel(z.draw(first), class_colours, scale),
                   reports.class_panel(z.draw(last), class_colours, scale)]
        n = int(changed[z.rows].sum())
        captions += [f"{names[0]}: imagery ({z.zone})" + ("" if img0 is not None else ": none"),
                     f"{names[-1]}: imagery" + ("" if img1 is not None else ": none"),
                     f"changes: {n} of {len(z.rows)} tiles" + (f", {int((mark[z.rows] == TOP + 1).sum())} pending"
                                                              if (mark[z.rows] == TOP + 1).any() else ""),
                     f"{names[0]}: classes", f"{names[-1]}: classes"]
    sections = [(f"classes ({names[0]} and {names[-1]})", [(class_colours[i], groups[i]) for i in shown]),
                (f"changes ({names[0]} -> {names[-1]}), over the last date's imagery in grey",
                 [(c, m) for c, m in zip(colours, top)]
                 + ([(reports.HATCHED, "other change")] if other else [])
                 + ([((60, 60, 60), "pending: a change into the last date, not confirmed yet (dark stripes)")]
                    if (mark == TOP + 1).any() else [])
                 + [(reports.NO_DATA, "not observed on both dates")])]
    return reports.panels_png(f"change {names[0]} -> {names[-1]} | model {model_id}", panels, captions, sections,
                              per_row=3)


def _change_panel(z: ZoneCells, scale: int, base: np.ndarray | None, mark: np.ndarray, ok: np.ndarray,
                  colours: list) -> np.ndarray:
    """The changes of zone ``z`` over ``base`` (the last date's imagery) in grey."""
    h, w = z.shape[0] * scale, z.shape[1] * scale
    if base is not None:
        grey = base.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        out = np.repeat((140 + grey * 0.45).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    else:
        out = np.full((h, w, 3), 235, np.uint8)
    cell = z.draw(mark, none=-2)
    seen = z.draw(ok.astype(np.int64), none=0)
    yy, xx = np.mgrid[0:scale, 0:scale]
    stripe = ((yy + xx) // STRIPE) % 2 == 0
    for r, c in zip(*np.nonzero((cell >= 0) | (seen == 0))):
        box = out[r * scale:(r + 1) * scale, c * scale:(c + 1) * scale]
        m = cell[r, c]
        if seen[r, c] == 0:
            box[:] = reports.NO_DATA
        elif m < TOP and m < len(colours):
            box[:] = colours[m]
        elif m == TOP:  # other changes: black and white stripes
            box[:] = 255
            box[stripe] = 0
        else:  # pending: dark stripes over the imagery
            box[stripe] = (60, 60, 60)
    return out

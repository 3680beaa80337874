"""Pictures: quick-look PNG of a scene's class map beside its RGB thumbnail, with a legend."""

from __future__ import annotations

import io

import numpy as np

from raylib.eval import drawing

# Colours a remote-sensing reader expects for EuroSAT's classes; others cycle a palette.
NAMED_COLOURS = {
    "AnnualCrop": (230, 200, 60),
    "Forest": (20, 110, 30),
    "HerbaceousVegetation": (150, 190, 80),
    "Highway": (130, 130, 130),
    "Industrial": (150, 70, 170),
    "Pasture": (120, 230, 120),
    "PermanentCrop": (230, 140, 40),
    "Residential": (220, 40, 40),
    "River": (80, 170, 240),
    "SeaLake": (20, 60, 170),
    # assessment groups (crosswalks)
    "forest": (20, 110, 30),
    "water": (20, 60, 170),
    "developed": (220, 40, 40),
    "agriculture": (230, 200, 60),
    "herbaceous_shrub": (150, 190, 80),
    "low_vegetation": (150, 190, 80),
    "barren": (190, 160, 120),
}
CYCLE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
         (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
NO_DATA = (0, 0, 0)
UNKNOWN = (200, 200, 200)
UNKNOWN_INDEX = -2  # label-grid value of a tile labelled 'unknown' (below --unknown-below)
CLOUDY = (255, 255, 255)
CLOUDY_INDEX = -3  # label-grid value of a tile under cloud (reason cloudy)


def palette(classes: list[str]) -> list[tuple[int, int, int]]:
    """A colour per class: the named ones' own, the rest cycling; a transition (``A->B``, a
    change map's class) in the colour of the class it became, paler when it is no change
    (``A->A``), so the changes stand out among the classes that stayed."""
    ends = [c.split("->")[-1] for c in classes]
    order = list(dict.fromkeys(ends))
    out = [NAMED_COLOURS.get(e, CYCLE[order.index(e) % len(CYCLE)]) for e in ends]
    return [tint(col, STAYED) if c.count("->") == 1 and c.split("->")[0] == c.split("->")[1] else col
            for c, col in zip(classes, out)]


STAYED = 0.35  # how much of its class colour a transition of no change keeps (the rest white)


def tint(colour, keep: float) -> tuple[int, int, int]:
    """``colour`` paled towards white, keeping ``keep`` of it."""
    return tuple(int(round(v * keep + 255 * (1 - keep))) for v in colour)


def stretch(rgb: np.ndarray, valid: np.ndarray | None = None, common: bool = False) -> np.ndarray:
    """(3, H, W) any dtype -> uint8 (H, W, 3) with a 2-98 % stretch of the valid pixels: per
    band (a satellite scene: it takes out the haze that lifts blue), or with ``common`` one
    stretch for the three bands (a display product such as NAIP, whose colours are balanced
    already: a stretch per band turns autumn canopy pink and bright fields cyan)."""
    out = np.zeros(rgb.shape[1:] + (3,), np.uint8)
    sel = valid if valid is not None and valid.any() else np.ones(rgb.shape[1:], bool)
    pooled = np.percentile(rgb[:, sel].astype(np.float32), [2, 98]) if common and sel.any() else None
    for b in range(3):
        band = rgb[b].astype(np.float32)
        vals = band[sel]
        lo, hi = pooled if pooled is not None else (np.percentile(vals, [2, 98]) if vals.size else (0, 1))
        out[..., b] = np.clip((band - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    if valid is not None:
        out[~valid] = 0
    return out


# How sure a quick-look's class colours look: full colour at confidence SURE and above, paler
# down to PALEST of the colour (the rest white) at confidence UNSURE and below; tiles whose
# ``ood`` is above OOD_HATCH (less like the training tiles than 95 % of them) are hatched.
SURE, UNSURE, PALEST, OOD_HATCH = 0.9, 0.4, 0.35, 1.0
HATCH = (60, 60, 60)


def shaded(colours: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Class colours (..., 3) uint8 paled towards white by confidence (NaN: as they are)."""
    w = PALEST + (1 - PALEST) * np.clip((confidence - UNSURE) / (SURE - UNSURE), 0, 1)
    w = np.where(np.isnan(confidence), 1.0, w)[..., None]
    return np.round(colours * w + 255 * (1 - w)).astype(np.uint8)


def quicklook_png(title: str, label_grid: np.ndarray, classes: list[str], rgb_thumb: np.ndarray | None,
                  scene_hw: tuple[int, int], native_tile: tuple[int, int], confidence: np.ndarray | None = None,
                  ood: np.ndarray | None = None) -> bytes:
    """PNG: RGB thumbnail (left) and the per-tile class map (right) at the same scale, legend below.

    ``label_grid``: (rows, cols) class index per tile, -1 for error/no-data tiles,
    ``UNKNOWN_INDEX`` for unknown ones, ``CLOUDY_INDEX`` for cloudy ones. ``confidence``
    and ``ood`` (same grid, NaN: none): a class colour is paler the less sure the tile
    (``shaded``), and a tile unlike the model's training tiles is hatched, so a map does
    not look as sure where it is not.
    """
    from PIL import Image

    pal = np.array(palette(classes) + [NO_DATA, UNKNOWN, CLOUDY], np.uint8)
    H, W = scene_hw
    side = 512
    f = side / max(H, W)
    ph, pw = max(1, round(H * f)), max(1, round(W * f))
    # class map: each tile paints its native footprint, clipped at the scene edge
    th, tw = native_tile
    full_rows = np.minimum((np.arange(ph) / f // th).astype(int), label_grid.shape[0] - 1)
    full_cols = np.minimum((np.arange(pw) / f // tw).astype(int), label_grid.shape[1] - 1)
    cells = np.ix_(full_rows, full_cols)
    lab = label_grid[cells]
    k = len(classes)
    cmap = pal[np.select([lab == UNKNOWN_INDEX, lab == CLOUDY_INDEX, lab < 0], [k + 1, k + 2, k], lab)]
    classed = lab >= 0
    pale = hatched = False
    if confidence is not None:
        conf = np.where(classed, confidence[cells], np.nan)
        cmap = shaded(cmap, conf)
        pale = bool((conf < SURE).any())
    if ood is not None:
        yy, xx = np.mgrid[0:ph, 0:pw]
        far = classed & (np.nan_to_num(ood[cells], nan=0.0) > OOD_HATCH)
        stripe = far & ((yy + xx) % 8 < 2)
        cmap[stripe] = HATCH
        hatched = bool(far.any())
    panels = [Image.fromarray(cmap)]
    if rgb_thumb is not None:
        panels.insert(0, Image.fromarray(rgb_thumb).resize((pw, ph), Image.BILINEAR))
    used = sorted({int(v) for v in np.unique(label_grid) if v >= 0})
    used += [i for i in (UNKNOWN_INDEX, CLOUDY_INDEX) if (label_grid == i).any()]
    special = {UNKNOWN_INDEX: (UNKNOWN, "unknown (low confidence)"), CLOUDY_INDEX: (CLOUDY, "cloud / shadow"),
               -1: (NO_DATA, "no data / error")}
    entries = [(tuple(int(v) for v in pal[ci]), classes[ci]) if ci >= 0 else special[ci] for ci in used + [-1]]
    notes = [f"paler: less sure (full colour at confidence {SURE:g}+, palest at {UNSURE:g} or less)"] * pale \
        + [f"hatched: unlike the training tiles (ood > {OOD_HATCH:g})"] * hatched
    gap = 8
    width = len(panels) * pw + (len(panels) + 1) * gap
    return _with_title_and_legend(title, panels, [(gap + i * (pw + gap), 0) for i in range(len(panels))],
                                  (width, ph), entries, notes)


def _legend_layout(entries: list, inner: int) -> tuple[int, int]:
    """(columns, column width) of a legend of ``entries`` (colour, name) in ``inner`` px."""
    col_w = max([drawing.width(name) for _, name in entries] + [60]) + 30
    return max(1, min(3, inner // col_w)), col_w


def _with_title_and_legend(title: str, panels: list, places: list[tuple[int, int]], body: tuple[int, int],
                           entries: list, notes: list[str], captions: list[str] | None = None,
                           sections: list[tuple[str, list]] | None = None) -> bytes:
    """A picture: ``title`` (wrapped to its width), the ``panels`` (PIL images) at ``places``
    in a body of ``body`` (width, height) px, each under its caption, then a legend of
    ``entries`` (colour, name; or ``sections``: titled groups of them) and ``notes``."""
    from PIL import Image, ImageDraw

    gap, cap_h = 8, drawing.LINE if captions else 0
    groups = sections or [("", entries)]
    every = [e for _, es in groups for e in es]
    width = max(body[0], 3 * 150 + 2 * gap)
    cols, col_w = _legend_layout(every, width - 2 * gap)
    title_lines = drawing.wrap(title, width - 2 * gap, drawing.TITLE)
    note_lines = [ln for n in notes for ln in drawing.wrap(n, width - 2 * gap)]
    head = 6 + len(title_lines) * (drawing.TITLE + 4) + 4
    legend_h = sum((drawing.LINE if name else 0) + -(-len(es) // cols) * drawing.LINE for name, es in groups)
    height = head + body[1] + cap_h + gap + legend_h + len(note_lines) * drawing.LINE + gap
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    drawing.block(draw, (gap, 6), title_lines, drawing.TITLE, drawing.TITLE + 4)
    for i, (p, (x, y)) in enumerate(zip(panels, places)):
        if captions:
            drawing.text(draw, (x, head + y), drawing.wrap(captions[i], p.width)[0])
        img.paste(p, (x, head + cap_h + y))
    y = head + body[1] + cap_h + gap
    for name, es in groups:
        if name:
            drawing.text(draw, (gap, y), name, fill=(90, 90, 90))
            y += drawing.LINE
        for j, (colour, label) in enumerate(es):
            x, yy = gap + (j % cols) * col_w, y + (j // cols) * drawing.LINE
            if colour is HATCHED:
                draw.rectangle([x, yy + 1, x + 12, yy + 13], fill=(255, 255, 255), outline=(0, 0, 0))
                for k in range(0, 13, 4):
                    draw.line([x + k, yy + 13, x + 12, yy + 1 + k], fill=(0, 0, 0))
            else:
                draw.rectangle([x, yy + 1, x + 12, yy + 13], fill=tuple(int(v) for v in colour), outline=(0, 0, 0))
            drawing.text(draw, (x + 18, yy), label)
        y += -(-len(es) // cols) * drawing.LINE
    drawing.block(draw, (gap, y), note_lines)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


HATCHED = "hatched"  # a legend entry drawn as stripes (no single colour)


def panel_scale(shape: tuple[int, int]) -> int:
    """Pixels per tile of a class panel of a grid of ``shape``: its long side 720 px or more."""
    return max(1, 720 // max(1, *shape))


def class_panel(grid: np.ndarray, colours, scale: int) -> np.ndarray:
    """(h, w, 3) uint8: a class grid (-1: none, black) in ``colours``, ``scale`` px per tile."""
    pal = np.array(list(colours) + [NO_DATA], np.uint8)
    img = pal[np.where(grid < 0, len(pal) - 1, grid)]
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def panels_png(title: str, panels: list[np.ndarray], captions: list[str], sections: list[tuple[str, list]],
               notes: list[str] = (), per_row: int | None = None) -> bytes:
    """PNG: RGB panels ((h, w, 3) uint8) side by side (one above the other when wider than
    tall; ``per_row`` a row), each under its caption, then the legend: ``sections``, titled
    groups of (colour or ``HATCHED``, name), and ``notes``."""
    from PIL import Image

    images = [Image.fromarray(p) for p in panels]
    pw = max([p.width for p in images], default=200)
    ph = max([p.height for p in images], default=20)
    gap, cap_h = 8, drawing.LINE
    n = max(len(images), 1)
    across = per_row or (1 if pw > 1.5 * ph else n)
    places = [(gap + (i % across) * (pw + gap), (i // across) * (ph + cap_h + gap)) for i in range(len(images))]
    body = (min(n, across) * (pw + gap) + gap, -(-n // across) * (ph + cap_h + gap) - cap_h - gap)
    return _with_title_and_legend(title, images, places, body, [], list(notes),
                                  captions=list(captions) + [""] * (len(images) - len(captions)), sections=sections)


def side_by_side_png(title: str, grids: list[np.ndarray], classes: list[str], captions: list[str],
                     none_label: str = "not mapped / not assessed", colours: list | None = None) -> bytes:
    """PNG: class grids (one pixel block per tile, -1 = none, named ``none_label`` in the
    legend) side by side (one above the other for a scene wider than tall), the long side
    720 px or more, legend below; ``colours``: one per class (default ``palette``)."""
    colours = list(colours or palette(classes))
    scale = panel_scale(max((g.shape for g in grids), default=(1, 1), key=lambda s: max(s)))
    entries = [(tuple(int(v) for v in c), name) for c, name in zip(colours + [NO_DATA], classes + [none_label])]
    return panels_png(title, [class_panel(g, colours, scale) for g in grids], captions, [("", entries)])


def bars_png(title: str, names: list[str], values: list[float], colours: list, unit: str = "ha",
             errors: list[float | None] | None = None) -> bytes:
    """PNG: one horizontal bar per name (its value, in ``unit``), largest first, with a
    whisker of +-``errors`` where given (a 95 % interval)."""
    from PIL import Image, ImageDraw

    order = sorted(range(len(names)), key=lambda i: -values[i])
    errs = errors or [None] * len(names)
    top = max([values[i] + (errs[i] or 0.0) for i in order] + [1e-12])
    label_w = 16 + max([drawing.width(n) for n in names] + [30])
    texts = [f"{values[i]:,.1f} {unit}" + (f" ± {errs[i]:,.1f}" if errs[i] is not None else "")
             for i in range(len(names))]
    bar_w, row = 360, 20
    width = label_w + bar_w + 16 + max([drawing.width(t) for t in texts] + [60])
    title_lines = drawing.wrap(title, width - 16, drawing.TITLE)
    head = 8 + len(title_lines) * (drawing.TITLE + 4) + 4
    img = Image.new("RGB", (width, head + row * max(1, len(names)) + 10), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    drawing.block(draw, (8, 6), title_lines, drawing.TITLE, drawing.TITLE + 4)
    for k, i in enumerate(order):
        y = head + k * row
        w = int(round(bar_w * values[i] / top))
        drawing.text(draw, (8, y + 2), names[i])
        draw.rectangle([label_w, y + 2, label_w + max(w, 1), y + row - 4], fill=tuple(colours[i]), outline=(0, 0, 0))
        if errs[i] is not None:
            lo = int(round(bar_w * max(values[i] - errs[i], 0) / top))
            hi = int(round(bar_w * (values[i] + errs[i]) / top))
            mid = y + row // 2 - 1
            draw.line([label_w + lo, mid, label_w + hi, mid], fill=(0, 0, 0), width=1)
            draw.line([label_w + lo, mid - 4, label_w + lo, mid + 4], fill=(0, 0, 0))
            draw.line([label_w + hi, mid - 4, label_w + hi, mid + 4], fill=(0, 0, 0))
        drawing.text(draw, (label_w + bar_w + 8, y + 2), texts[i])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def confusion_png(cm: np.ndarray, classes: list[str], title: str = "", rows_are: str = "true") -> bytes:
    """Confusion matrix (rows: true, columns: predicted; ``rows_are="map"``: rows the map's
    classes, columns the reference's, as an accuracy assessment reads it), cells shaded by
    the share of their column's reference (true) total, counts written."""
    from PIL import Image, ImageDraw

    k = len(classes)
    cell = 44
    left = 16 + max([drawing.width(c) for c in classes] + [40])
    label_h = 8 + max([drawing.width(c) for c in classes] + [40])
    width = max(left + k * cell + 20, 360)
    title_lines = drawing.wrap(title or "confusion matrix (rows: true, columns: predicted)", width - 20, drawing.TITLE)
    top0 = 8 + len(title_lines) * (drawing.TITLE + 4) + 4
    top = top0 + label_h
    img = Image.new("RGB", (width, top + k * cell + 20), (255, 255, 255))
    d = ImageDraw.Draw(img)
    drawing.block(d, (10, 6), title_lines, drawing.TITLE, drawing.TITLE + 4)
    share = cm / (cm.sum(axis=1, keepdims=True) if rows_are == "true" else cm.sum(axis=0, keepdims=True)).clip(min=1)
    for j, c in enumerate(classes):  # column labels, written vertically
        lab = Image.new("RGB", (label_h, drawing.LINE), (255, 255, 255))
        drawing.text(ImageDraw.Draw(lab), (0, 0), c)
        img.paste(lab.rotate(90, expand=True), (left + j * cell + 14, top0))
    for i, c in enumerate(classes):
        drawing.text(d, (8, top + i * cell + 14), c)
        for j in range(k):
            v = share[i, j]
            colour = (int(255 - 200 * v), int(255 - 120 * v), 255) if i != j else (int(255 - 200 * v), 255, int(255 - 200 * v))
            x0, y0 = left + j * cell, top + i * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(200, 200, 200))
            drawing.text(d, (x0 + 6, y0 + 14), str(int(cm[i, j])))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def pca_scatter_png(X: np.ndarray, y: np.ndarray, classes: list[str], title: str = "", max_points: int = 4000,
                    seed: int = 0) -> bytes:
    """2-D PCA of embeddings, one colour per class, with a legend."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))[:max_points]
    Xs = X[idx].astype(np.float64)
    Xs -= Xs.mean(0)
    _, _, vt = np.linalg.svd(Xs, full_matrices=False)
    P = Xs @ vt[:2].T
    size, pad = 560, 30
    lo, hi = P.min(0), P.max(0)
    xy = pad + (P - lo) / np.maximum(hi - lo, 1e-9) * (size - 2 * pad)
    pal = palette(classes)
    img = Image.new("RGB", (size + 40 + max([drawing.width(c) for c in classes] + [60]), size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    drawing.text(d, (10, 6), title or "PCA of embeddings", drawing.TITLE)
    for (px, py), c in zip(xy, y[idx]):
        d.ellipse([px - 2, size - py - 2, px + 2, size - py + 2], fill=pal[int(c)])
    for i, c in enumerate(classes):
        d.rectangle([size + 10, 41 + i * 18, size + 22, 53 + i * 18], fill=pal[i])
        drawing.text(d, (size + 28, 40 + i * 18), c)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def markdown_report(title: str, m: dict, extra: dict | None = None) -> str:
    """A human report of a metrics dict (classification_metrics) with the pictures beside it."""
    lines = [f"# {title}", ""]
    for k, v in (extra or {}).items():
        if k == "reliability":  # the bins: in metrics.json and reliability.png
            continue
        lines.append(f"- **{k}**: {v}")
    lines += ["", "| metric | value |", "|---|---|"]
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "cohen_kappa"):
        lines.append(f"| {k.replace('_', ' ')} | {m[k]:.4f} |")
    lines += ["", "| class | accuracy (recall) |", "|---|---|"]
    for c, v in m["per_class_accuracy"].items():
        lines.append(f"| {c} | {'n/a' if v is None else f'{v:.4f}'} |")
    lines += ["", "![confusion matrix](confusion.png)", "", "![PCA of embeddings](pca.png)", ""]
    return "\n".join(lines)


def compare_markdown(title: str, models: list[dict]) -> str:
    """Models side by side: overall scores, per-class accuracy, links to each confusion matrix."""
    head = "| | " + " | ".join(f"{i + 1}: {m['model_id']} ({m['kind']})" for i, m in enumerate(models)) + " |"
    sep = "|---|" + "---|" * len(models)
    lines = [f"# {title}", "", head, sep]
    for k in ("balanced_accuracy", "accuracy", "macro_f1", "cohen_kappa"):
        vals = [m["metrics"][k] for m in models]
        best = max(vals)
        lines.append(f"| {k.replace('_', ' ')} | "
                     + " | ".join(f"**{v:.4f}**" if v == best else f"{v:.4f}" for v in vals) + " |")
    lines += ["", "Per-class accuracy (recall):", "", head, sep]
    for c in models[0]["metrics"]["per_class_accuracy"]:
        vals = [m["metrics"]["per_class_accuracy"].get(c) for m in models]
        lines.append(f"| {c} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in vals) + " |")
    lines += ["", "Confusion matrices (rows: true class):", ""]
    for i, m in enumerate(models):
        lines.append(f"- {i + 1}: `{m['model']}`: [report]({m['report']}/report.md), "
                     f"![confusion {i + 1}]({m['report']}/confusion.png)")
    return "\n".join(lines) + "\n"

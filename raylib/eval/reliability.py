"""Reliability of confidences: expected calibration error and the reliability diagram.
"""

from __future__ import annotations

import io

import numpy as np

N_BINS = 15


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Expected calibration error and the per-bin figures of a reliability diagram."""
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        m = which == b
        if not m.any():
            continue
        acc, conf = float(correct[m].mean()), float(confidence[m].mean())
        ece += m.mean() * abs(acc - conf)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()), "accuracy": acc,
                     "confidence": conf})
    return {"ece": float(ece), "n": int(len(confidence)), "bins": bins}


def reliability_png(rel: dict, title: str = "reliability diagram") -> bytes:
    """Accuracy per confidence bin (bars) against the diagonal of perfect calibration."""
    from PIL import Image, ImageDraw

    from raylib.eval import drawing

    size, left, right = 300, 56, 24
    width = left + size + right
    title_lines = drawing.wrap(f"{title}  (ECE {rel['ece']:.3f}, n {rel['n']})", width - 16, drawing.TITLE)
    top = 8 + len(title_lines) * (drawing.TITLE + 4) + 10
    key = drawing.wrap("bars: the accuracy of the tiles in each bin of confidence; red: their mean confidence; "
                       "grey: perfect calibration", width - 16)
    img = Image.new("RGB", (width, top + size + (2 + len(key)) * drawing.LINE + 14), (255, 255, 255))
    d = ImageDraw.Draw(img)
    drawing.block(d, (8, 6), title_lines, drawing.TITLE, drawing.TITLE + 4)
    x0, y0 = left, top + size

    def xy(cx, cy):
        return x0 + cx * size, y0 - cy * size

    for t in np.linspace(0, 1, 6):  # ticks, labels and a light grid every 0.2 on both axes
        (tx, _), (_, ty) = xy(t, 0), xy(0, t)
        d.line([tx, y0 - size, tx, y0], fill=(232, 232, 232))
        d.line([x0, ty, x0 + size, ty], fill=(232, 232, 232))
        d.line([tx, y0, tx, y0 + 4], fill=(0, 0, 0))
        d.line([x0 - 4, ty, x0, ty], fill=(0, 0, 0))
        drawing.text(d, (tx - drawing.width(f"{t:.1f}") / 2, y0 + 6), f"{t:.1f}")
        drawing.text(d, (x0 - 8 - drawing.width(f"{t:.1f}"), ty - 7), f"{t:.1f}")
    d.rectangle([x0, y0 - size, x0 + size, y0], outline=(0, 0, 0))
    for b in rel["bins"]:
        (ax, ay), (bx, _) = xy(b["lo"], b["accuracy"]), xy(b["hi"], 0)
        d.rectangle([ax + 1, ay, bx - 1, y0], fill=(70, 130, 200), outline=(40, 80, 150))
        cx, cy = xy(b["confidence"], b["confidence"])
        d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(220, 60, 40))
    d.line([xy(0, 0), xy(1, 1)], fill=(120, 120, 120), width=1)
    lab = Image.new("RGB", (size, drawing.LINE), (255, 255, 255))  # the y axis's name, written upwards
    drawing.text(ImageDraw.Draw(lab), ((size - drawing.width("accuracy")) / 2, 0), "accuracy")
    img.paste(lab.rotate(90, expand=True), (4, y0 - size))
    drawing.text(d, (x0 + (size - drawing.width("confidence")) / 2, y0 + 6 + drawing.LINE), "confidence")
    drawing.block(d, (8, y0 + 8 + 2 * drawing.LINE), key, fill=(90, 90, 90))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

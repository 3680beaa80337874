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

    size, pad = 300, 40
    img = Image.new("RGB", (size + 2 * pad, size + 2 * pad + 20), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((pad, 8), f"{title}  (ECE {rel['ece']:.3f}, n {rel['n']})", fill=(0, 0, 0))
    x0, y0 = pad, pad + 10 + size

    def xy(cx, cy):
        return x0 + cx * size, y0 - cy * size

    d.rectangle([x0, y0 - size, x0 + size, y0], outline=(0, 0, 0))
    for b in rel["bins"]:
        (ax, ay), (bx, _) = xy(b["lo"], b["accuracy"]), xy(b["hi"], 0)
        d.rectangle([ax + 1, ay, bx - 1, y0], fill=(70, 130, 200), outline=(40, 80, 150))
        cx, cy = xy(b["confidence"], b["confidence"])
        d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(220, 60, 40))
    d.line([xy(0, 0), xy(1, 1)], fill=(120, 120, 120), width=1)
    d.text((x0, y0 + 4), "confidence 0 .. 1 (bars: accuracy; red: mean confidence)", fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

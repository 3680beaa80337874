"""How far a few labelled tiles can take NC Wake (BENCHMARKS.md, "Embed once, map many times"):
the head's features with K labelled tiles per class against every labelled tile, and a
per-pixel classifier trained on the K tiles' pixels.

Reads the store that ``scripts/adapt_benchmark.py`` (or ``landcover map --embeddings``) wrote
for the NC Wake scene; no Ray. For K = 5, 10, 20 and ``--seeds`` draws (the draw of
``labelled_tiles``: K tiles per group of forest / developed / herbaceous_shrub), balanced
accuracy over those groups on the other tiles (purity 0.5, as ``assess``) of:

- ``logistic``: the default head's features (spectral statistics + 8 principal components
  of the store's embeddings) and logistic regression (C 0.1), as ``train-head``;
- ``logistic + forest``: the same features, the mean of logistic regression's and a
  500-tree random forest's probabilities;
- ``pixels``: a random forest on the K tiles' pixels (6 bands and 3 normalised
  differences, each pixel labelled by the reference raster), a tile's class the mean of its
  pixels' probabilities: what a per-pixel map would give (it needs the imagery, not the store);
- ``every labelled tile, 5-fold``: the head's features with all labelled tiles, 5-fold
  cross-validation: the features' ceiling on this reference.

    .venv/bin/python scripts/adapt_ceiling.py --store /tmp/adapt/image_landsat7_2000/map/_embeddings [--seeds 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LABELLED = (REPO / ".." / "shared" / "data" / "labelled-scenes" / "nc-wake-landsat7-landclass96").resolve()
GROUPS = ["forest", "developed", "herbaceous_shrub"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    import rasterio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from raylib.eval import reference
    from raylib.formats import embstore
    from raylib.models.tilefeatures import TileFeatures

    t = embstore.read(args.store)
    cw = reference.load_crosswalk(str(REPO / "configs" / "crosswalks" / "eurosat-to-nc-landclass96.yaml"))
    ref = reference.raster_reference(t, str(LABELLED / "label_landclass96.tif"), cw, 0.5)
    n = t.num_rows
    y = np.full(n, -1)
    y[ref.rows] = ref.group
    ok = np.asarray(t["status"].to_pylist()) == "ok"
    keep = [cw.groups.index(g) for g in GROUPS]
    labelled = ok & np.isin(y, keep)
    st = embstore.stats_of(t)
    st = {k: st[k][ok] for k in ("band_mean", "band_std", "ndvi", "ndwi")}
    emb = embstore.embeddings_of(t.filter(ok))
    tf = TileFeatures.fit("embedding+spectral", emb, 6)
    Fo = tf.transform(emb, st)
    F = np.zeros((n, Fo.shape[1]), np.float32)
    F[ok] = Fo

    img = rasterio.open(LABELLED / "image_landsat7_2000.tif").read().astype(np.float32)
    lab = rasterio.open(LABELLED / "label_landclass96.tif").read(1)
    pix_group = np.full(lab.shape, -1)
    for code, g in cw.reference.items():
        if g in GROUPS:
            pix_group[lab == int(code)] = cw.groups.index(g)
    win = t.select(["row_off", "col_off", "height", "width"]).to_pylist()

    def pixels(i):
        r, c, h, w = (win[i][k] for k in ("row_off", "col_off", "height", "width"))
        a, g = img[:, r:r + h, c:c + w].reshape(6, -1), pix_group[r:r + h, c:c + w].ravel()
        v = (a > 0).any(0)
        a, g = a[:, v], g[v]

        def nd(p, q):
            return (p - q) / np.maximum(p + q, 1e-6)

        return np.concatenate([a / 255, [nd(a[3], a[2]), nd(a[1], a[3]), nd(a[4], a[3])]]).T, g

    px = {i: pixels(i) for i in np.flatnonzero(labelled)}
    res: dict = {}
    for k in (5, 10, 20):
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            tr = np.concatenate([rng.choice(np.flatnonzero(labelled & (y == g)), k, replace=False) for g in keep])
            te = np.setdiff1d(np.flatnonzero(labelled), tr)
            sc = StandardScaler().fit(F[tr])
            lr = LogisticRegression(C=0.1, max_iter=5000).fit(sc.transform(F[tr]), y[tr])
            rf = RandomForestClassifier(500, random_state=0).fit(sc.transform(F[tr]), y[tr])
            p_lr = lr.predict_proba(sc.transform(F[te]))
            p_rf = rf.predict_proba(sc.transform(F[te]))
            res.setdefault((k, "logistic"), []).append(balanced_accuracy_score(y[te], lr.classes_[p_lr.argmax(1)]))
            res.setdefault((k, "logistic + forest"), []).append(
                balanced_accuracy_score(y[te], lr.classes_[(p_lr + p_rf).argmax(1)]))
            X = np.concatenate([px[i][0] for i in tr])
            G = np.concatenate([px[i][1] for i in tr])
            pf = RandomForestClassifier(100, min_samples_leaf=5, random_state=0).fit(X[G >= 0], G[G >= 0])
            pred = [pf.classes_[pf.predict_proba(px[i][0]).mean(0).argmax()] for i in te]
            res.setdefault((k, "pixels"), []).append(balanced_accuracy_score(y[te], pred))
    idx = np.flatnonzero(labelled)
    cv = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000,
                                                                             class_weight="balanced")),
                           F[idx], y[idx], cv=StratifiedKFold(5, shuffle=True, random_state=0))
    print(f"labelled tiles: { {cw.groups[g]: int((labelled & (y == g)).sum()) for g in keep} }")
    print("| way | K = 5 | K = 10 | K = 20 |\n|---|---|---|---|")
    for way in ("logistic", "logistic + forest", "pixels"):
        print(f"| {way} | " + " | ".join(f"{np.mean(res[(k, way)]):.3f}" for k in (5, 10, 20)) + " |")
    print(f"| every labelled tile, 5-fold | | | {balanced_accuracy_score(y[idx], cv):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every head family on frozen backbone embeddings vs handcrafted baselines (PCA of raw
pixels, HOG) through the same heads, on the split stored in the embeddings table.

    python scripts/benchmarks/heads_benchmark.py --store <embed out> [--heads logistic_regression,mlp,knn,xgboost]
        [--baselines pca,hog] [--json results.json]

Prints a Markdown table (balanced accuracy, accuracy, macro F1, kappa, fit seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from raylib.eval import metrics  # noqa: E402
from raylib.formats.embtable import read_embeddings  # noqa: E402
from raylib.models import handcrafted  # noqa: E402
from raylib.models.heads import HEADS  # noqa: E402
from raylib.raster import patches  # noqa: E402


def evaluate(name, head_kind, Xtr, ytr, Xte, yte, classes):
    head = HEADS[head_kind]()
    t = time.time()
    head.fit(Xtr, ytr)
    fit_s = time.time() - t
    m = metrics.classification_metrics(yte, head.predict(Xte), classes)
    row = {"features": name, "head": head_kind, "balanced_accuracy": m["balanced_accuracy"],
           "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "cohen_kappa": m["cohen_kappa"],
           "fit_seconds": round(fit_s, 1), "per_class_accuracy": m["per_class_accuracy"]}
    print(f"| {name} | {head_kind} | {row['balanced_accuracy']:.4f} | {row['accuracy']:.4f} | "
          f"{row['macro_f1']:.4f} | {row['cohen_kappa']:.4f} | {row['fit_seconds']} |", flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--heads", default="logistic_regression,mlp,knn,xgboost")
    ap.add_argument("--baselines", default="pca,hog")
    ap.add_argument("--pca-components", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args()
    X, y, split, classes, meta, table = read_embeddings(args.embeddings)
    tr, te = split == "train", split == "test"
    print(f"{len(y)} rows ({tr.sum()} train / {te.sum()} test), {len(classes)} classes, "
          f"backbone {meta['backbone']} @ {meta['input_size']} px, dim {X.shape[1]}")
    print("| features | head | balanced acc. | accuracy | macro F1 | kappa | fit s |")
    print("|---|---|---|---|---|---|---|")
    heads = [h for h in args.heads.split(",") if h]
    rows = [evaluate(f"{meta['backbone']} embeddings", h, X[tr], y[tr], X[te], y[te], classes) for h in heads]
    baselines = [b for b in args.baselines.split(",") if b]
    if baselines:
        sources = table.column("source").to_pylist()
        t = time.time()
        imgs = np.stack([patches.read_rgb(s) for s in sources])
        print(f"(decoded {len(imgs)} images in {time.time() - t:.0f} s)", flush=True)
        for b in baselines:
            if b == "pca":
                from sklearn.decomposition import PCA

                raw = handcrafted.raw_pixels(imgs)
                pca = PCA(n_components=args.pca_components, random_state=0).fit(raw[tr])
                F = pca.transform(raw).astype(np.float32)
                name = f"PCA({args.pca_components}) of raw pixels"
            elif b == "hog":
                F = handcrafted.hog(imgs)
                name = f"HOG ({F.shape[1]}-d)"
            else:
                raise SystemExit(f"unknown baseline {b!r}: use pca, hog")
            rows += [evaluate(name, h, F[tr], y[tr], F[te], y[te], classes) for h in heads]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()

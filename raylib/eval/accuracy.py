"""Map accuracy and area estimation from a stratified sample (Olofsson et al. 2014).

Olofsson, Foody, Herold, Stehman, Woodcock, Wulder, "Good practices for estimating area
and assessing accuracy of land change", Remote Sensing of Environment 148 (2014) 42-57.

The strata are the map classes. ``counts[i, j]`` is the number of sample units mapped as
class ``i`` whose reference class is ``j``; ``areas[i]`` the mapped area of class ``i``.
With ``W_i = areas[i] / areas.sum()`` the estimated area proportion of cell ``(i, j)`` is
``p_ij = W_i n_ij / n_i.``, and every figure below follows from it, each with the
standard error the paper gives for it and a 95 % interval of ``1.96 * SE``.

A census (every tile of a map assessed against a reference raster) is the special case
where each stratum's sample is the whole stratum: the same formulas give the map's own
confusion in area proportions, and the intervals shrink towards zero.

No Ray, no I/O: plain numpy in, plain dicts out.
"""

from __future__ import annotations

import numpy as np

from raylib.errors import InputError

Z95 = 1.96


def _var_terms(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per stratum: ``n_i.`` and ``1 / (n_i. - 1)`` (0 where a stratum has one unit, so a
    single-unit stratum adds no variance instead of dividing by zero)."""
    n_i = counts.sum(axis=1)
    inv = np.divide(1.0, n_i - 1, out=np.zeros(len(n_i)), where=n_i > 1)
    return n_i, inv


def stratified_estimates(counts, areas, classes: list[str]) -> dict:
    """Area, accuracy and confusion estimates with 95 % intervals from a stratified sample.

    ``counts``: (k, k) sample counts, rows = map class (stratum), columns = reference class.
    ``areas``: (k,) mapped area of each class, in any unit; the area estimates come back in
    the same unit. Classes must be in the same order in rows, columns, areas and ``classes``.
    """
    n = np.asarray(counts, dtype=np.float64)
    a = np.asarray(areas, dtype=np.float64)
    k = len(classes)
    if n.shape != (k, k):
        raise InputError(f"The sample's confusion counts have shape {n.shape}, but {k} classes were given.",
                         "give one row and one column per class.")
    if a.shape != (k,) or (a < 0).any() or not np.isfinite(a).all():
        raise InputError(f"Mapped areas must be {k} non-negative numbers, one per class; got {a.tolist()}.",
                         "give the mapped area of every class.")
    total = a.sum()
    if total <= 0:
        raise InputError("The mapped areas add up to zero.", "give the mapped area of every class.")
    n_i, inv = _var_terms(n)
    missing = [classes[i] for i in range(k) if a[i] > 0 and n_i[i] == 0]
    if missing:
        raise InputError(f"Map class(es) {missing} have mapped area but no sample unit.",
                         "sample every mapped class (landcover sample allocates at least a few units to each).")
    W = a / total
    frac = np.divide(n, n_i[:, None], out=np.zeros_like(n), where=n_i[:, None] > 0)  # n_ij / n_i.
    p = W[:, None] * frac
    p_map = p.sum(axis=1)  # = W
    p_ref = p.sum(axis=0)  # estimated area proportion of each reference class
    cell_var = W[:, None] ** 2 * frac * (1 - frac) * inv[:, None]  # per-cell variance terms
    se_ref = np.sqrt(cell_var.sum(axis=0))
    ua = np.diag(frac).copy()  # user's accuracy: n_ii / n_i.
    se_ua = np.sqrt(ua * (1 - ua) * inv)
    overall = float(np.trace(p))
    se_overall = float(np.sqrt((W ** 2 * ua * (1 - ua) * inv).sum()))
    # producer's accuracy, with N_i. in units of area (the paper uses pixels; the ratio is the same)
    pa = np.divide(np.diag(p), p_ref, out=np.full(k, np.nan), where=p_ref > 0)
    se_pa = np.full(k, np.nan)
    N_hat = (a[:, None] * frac).sum(axis=0)  # estimated area of each reference class
    for j in range(k):
        if N_hat[j] <= 0:
            continue
        first = a[j] ** 2 * (1 - pa[j]) ** 2 * ua[j] * (1 - ua[j]) * inv[j]
        others = sum(a[i] ** 2 * frac[i, j] * (1 - frac[i, j]) * inv[i] for i in range(k) if i != j)
        se_pa[j] = np.sqrt((first + pa[j] ** 2 * others) / N_hat[j] ** 2)
    ua_out = {c: (None if n_i[i] == 0 else _est(ua[i], se_ua[i])) for i, c in enumerate(classes)}
    pa_out = {c: (None if np.isnan(pa[j]) else _est(pa[j], se_pa[j])) for j, c in enumerate(classes)}
    return {
        "classes": list(classes),
        "sample_size": int(n.sum()),
        "total_area": float(total),
        "overall_accuracy": _est(overall, se_overall),
        "users_accuracy": ua_out,
        "producers_accuracy": pa_out,
        "area": {c: {"mapped": float(a[j]), "proportion": float(p_ref[j]), "proportion_ci95": float(Z95 * se_ref[j]),
                     "estimate": float(total * p_ref[j]), "ci95": float(Z95 * total * se_ref[j]),
                     "se": float(total * se_ref[j])}
                 for j, c in enumerate(classes)},
        "confusion_counts": n.astype(np.int64).tolist(),
        "confusion_area_proportions": p.tolist(),
        "confusion_area_proportions_ci95": (Z95 * np.sqrt(cell_var)).tolist(),
        "map_area_proportions": p_map.tolist(),
    }


def _est(value: float, se: float) -> dict:
    return {"estimate": float(value), "ci95": float(Z95 * se), "se": float(se)}


def sample_metrics(counts) -> dict:
    """Unweighted figures of the sample itself: each reference class's recall (None for a
    class without a sample unit), balanced accuracy (their mean over the reference classes
    present) and Cohen's kappa."""
    n = np.asarray(counts, dtype=np.float64)
    total = n.sum()
    ref = n.sum(axis=0)
    pred = n.sum(axis=1)
    present = ref > 0
    recall = np.divide(np.diag(n), ref, out=np.zeros(len(ref)), where=present)
    po = np.trace(n) / total if total else float("nan")
    pe = float((ref * pred).sum() / total ** 2) if total else float("nan")
    kappa = (po - pe) / (1 - pe) if pe < 1 else float("nan")
    return {"accuracy": float(po), "balanced_accuracy": float(recall[present].mean()) if present.any() else float("nan"),
            "kappa": float(kappa), "recall": [float(r) if p else None for r, p in zip(recall, present)]}


def allocate(map_areas: dict[str, float], n: int, min_per_class: int = 50,
             expected_ua: dict[str, float] | None = None) -> dict[str, int]:
    """Sample size per stratum (map class) for a total of ``n`` units.

    Olofsson et al. (section 5.1.2) advise allocating between proportional and equal, so that
    rare classes get enough units for their user's accuracy: here each class gets at least
    ``min(min_per_class, n // k)`` units and the rest is shared in proportion to
    ``W_i * S_i`` (Neyman allocation, ``S_i = sqrt(U_i (1 - U_i))`` with an expected user's
    accuracy, 0.8 unless given)."""
    classes = [c for c, v in map_areas.items() if v > 0]
    if not classes:
        raise InputError("The map has no mapped area in any class.", "map some tiles first.")
    k = len(classes)
    if n < k:
        raise InputError(f"A sample of {n} units cannot cover the map's {k} classes.",
                         f"ask for at least {k} units (--n).")
    floor = min(min_per_class, n // k)
    alloc = {c: floor for c in classes}
    rest = n - floor * k
    ua = expected_ua or {}
    weight = np.array([map_areas[c] * np.sqrt(ua.get(c, 0.8) * (1 - ua.get(c, 0.8))) for c in classes])
    if rest > 0 and weight.sum() > 0:
        share = weight / weight.sum() * rest
        extra = np.floor(share).astype(int)
        for i in np.argsort(-(share - extra))[: rest - extra.sum()]:  # largest remainders
            extra[i] += 1
        for c, e in zip(classes, extra):
            alloc[c] += int(e)
    return alloc

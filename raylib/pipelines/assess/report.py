"""``report.md``: an assessment in words and tables, its headline figures from its own tables."""

from __future__ import annotations


def _num(v: float) -> str:
    """Areas as people read them: whole units from 100 up, else two significant decimals."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def assessment_markdown(title: str, r: dict, pictures: list[str] = ()) -> str:
    """The report of an assessment ``r``, with ``pictures`` (file names beside it) at its end."""
    unit = r["area_unit"]
    lines = [f"# {title}", ""]
    if r.get("mode") == "map":
        t = r["tiles"]
        why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["not_assessed"].items()
                        if k != "error_tiles" and isinstance(v, int))
        lines += [f"Tiles: {t['total']} in the map: {t['mapped']} mapped with a class, {t.get('error_rows', 0)} "
                  f"error rows, {t.get('unknown', 0)} withheld as unknown. Of the {t['mapped']} mapped, "
                  f"{t['assessed']} are assessed against the reference (purity ≥ {r['purity']}) and "
                  f"{t.get('mapped_not_assessed', t['mapped'] - t['assessed'])} are not ({why}).", ""]
        if r["not_assessed"].get("mapped_groups_without_reference"):
            lines += ["Mapped groups the reference says nothing about (no estimate): "
                      f"{', '.join(r['not_assessed']['mapped_groups_without_reference'])}.", ""]
    if r.get("mode") == "change":
        t = r["tiles"]
        why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["not_assessed"].items() if isinstance(v, int) and v)
        lines += [f"Tiles: {t['total']} in the change map, {t['mapped']} observed on both dates, of which "
                  f"{t['assessed']} are assessed against both references (purity ≥ {r['purity']} on each date)"
                  + (f"; not assessed: {why}." if why else "."), "",
                  "The classes below are transitions (first date -> last date; A->A: stable).", ""]
    area_bacc = r.get("balanced_accuracy_area_weighted")
    lines += [
        f"- overall accuracy (area-weighted): **{r['overall_accuracy']:.4f} ± {r['overall_accuracy_ci95']:.4f}** (95 %)",
        f"- balanced accuracy (the mean of the recall column below: sample counts, each reference group present "
        f"weighing the same): **{r['balanced_accuracy']:.4f}**"
        + (f"; from the area-weighted producer's accuracies instead: {area_bacc:.4f}" if area_bacc is not None else ""),
        f"- Cohen's kappa: {r['kappa']:.4f}", "",
        f"| group | user's accuracy | producer's accuracy | recall (sample counts) | mapped area ({unit}) | "
        f"estimated area ({unit}) |",
        "|---|---|---|---|---|---|",
    ]

    def fmt(e):
        return "—" if e is None else f"{e['estimate']:.3f} ± {e['ci95']:.3f}"

    recall = r.get("recall_sample_counts") or {}
    for g in r["groups"]:
        a = r["area"][g]
        rc = recall.get(g)
        lines.append(f"| {g} | {fmt(r['users_accuracy'][g])} | {fmt(r['producers_accuracy'][g])} | "
                     f"{'—' if rc is None else f'{rc:.4f}'} | {_num(a['mapped'])} | {_num(a['estimate'])} ± "
                     f"{_num(a['ci95'])} |")
    lines += ["", "Sample counts (rows: map, columns: reference):", "",
              "| map \\ reference | " + " | ".join(r["groups"]) + " |", "|---" * (len(r["groups"]) + 1) + "|"]
    for g, row in zip(r["groups"], r["confusion"]["counts"]):
        lines.append(f"| {g} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "Estimates follow Olofsson et al. (2014), *Good practices for estimating area and assessing "
              "accuracy of land change*, RSE 148: map classes are the strata, weighted by their mapped area; "
              "intervals are 1.96 standard errors.", ""]
    if r.get("withheld", {}).get("tiles"):
        w = r["withheld"]
        lines += [f"Withheld as `unknown`: {w['tiles']} tiles, {_num(w['area_ha'])} ha "
                  f"({w['share_of_mapped_area']:.1%} of the mapped area); the figures above are for the rest.", ""]
    if r.get("calibration"):
        lines += [f"Expected calibration error of the map's confidence: {r['calibration']['ece']:.3f} "
                  "(reliability.png).", ""]
    shares = r.get("class_shares")
    if shares:
        kinds = [k for k in ("interior", "partial") if k in shares]
        classes = sorted({c for k in kinds for c in shares[k] if c != "tiles"},
                         key=lambda c: -max(shares[k].get(c, 0.0) for k in kinds))
        lines += ["The map's classes on interior tiles and on partial ones (at the scene's edge, or with fill): "
                  "a class much commoner on partial tiles is drawn by the edge, not the ground.", "",
                  "| class | " + " | ".join(f"{k} ({shares[k]['tiles']} tiles)" for k in kinds) + " |",
                  "|---" * (len(kinds) + 1) + "|"]
        lines += [f"| {c} | " + " | ".join(f"{shares[k].get(c, 0.0):.1%}" for k in kinds) + " |" for c in classes]
        lines.append("")
    if pictures:
        lines += [" ".join(f"![{p.removesuffix('.png')}]({p})" for p in pictures), ""]
    return "\n".join(lines)

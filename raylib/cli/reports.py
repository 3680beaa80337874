"""What each verb prints when it is done: a few lines from its summary; the exit code."""

from __future__ import annotations

import json
import sys


def _cog(summary: dict) -> None:
    """``--cog``: where the map's rasters and their STAC Collection are."""
    c = summary.get("cog")
    if c:
        print(f"COGs: {c['path']}  ({len(c['rasters'])} rasters; STAC: {c['collection']})")


def map(cfg, summary) -> int:
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items())
    reasons = ", ".join(f"{v} {k}" for k, v in summary["error_reasons"].items())
    resumed = f"; {summary['parts_resumed']} of {summary['parts']} parts kept from an earlier run" \
        if summary["parts_resumed"] else ""
    print(f"mapped {summary['tiles']} tiles from {summary['scenes']} scene(s) in {summary['seconds']} s "
          f"({counts}{'; ' + reasons if reasons else ''}) with model {summary['model_id']}{resumed}")
    if summary["scenes_failed"]:
        print(f"{len(summary['scenes_failed'])} scene(s) could not be read: their tiles are error rows "
              f"(see {summary['out']}/_summary.json)")
    if "unchanged" in summary:
        print(f"incremental: {summary['unchanged']} scene(s) unchanged since the last run; the map holds "
              f"{summary['map_tiles']} tiles of {summary['map_scenes']} scene(s)")
    print(f"map: {summary['out']}  (GeoParquet; e.g. geopandas.read_parquet('{summary['out']}'))")
    if summary.get("embeddings"):
        print(f"embedding store: {summary['embeddings']}  (a folder of its own, which readers of the map skip; "
              f"train-head, remap, tune and similar take it, or the map folder, as --store)")
    if summary.get("composite"):
        c = summary["composite"]
        print(f"composite ({c['method']}): {c['path']}  ({c['tiles']} ground tiles, {c['clear_tiles']} with a clear "
              f"observation, from {c['observations']} observations)")
    for q in summary["quicklooks"]:
        print(f"quick-look: {q}")
    _cog(summary)
    w = summary.get("radiometry_warnings") or {}
    if w.get("scenes"):
        uri, text = next(iter(w["examples"].items()))
        more = f" (and {w['scenes'] - 1} more scene(s): _summary.json)" if w["scenes"] > 1 else ""
        print(f"landcover map: warning: {uri}: {text}{more}", file=sys.stderr)
    if summary["result"] != "ok":
        print(f"landcover map: failed: {summary['failure']}", file=sys.stderr)
        return 3
    return 0


def embed(cfg, summary) -> int:
    if summary.get("store"):
        counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items())
        print(f"embedded {summary['tiles']} tiles from {summary['scenes']} scene(s) in {summary['seconds']} s "
              f"({counts}) with the backbone of {summary['model_id']}")
        print(f"embedding store: {summary['out']}")
        if summary["result"] != "ok":
            print(f"landcover embed: failed: {summary['failure']}", file=sys.stderr)
            return 3
        return 0
    print(f"embedded {summary['rows']} patches ({summary['train']} train, {summary['test']} test) "
          f"-> {summary['dim']}-d in {summary['seconds']} s")
    print(f"embeddings: {summary['out']}")
    return 0


def tune(cfg, summary) -> int:
    score = "cross-validated" if cfg.labels else "validation"
    test = f", test {summary['test']['balanced_accuracy']:.4f}" if summary["test"] else ""
    print(f"{summary['trials']} trials ({', '.join(summary['families'])}) in {summary['seconds']} s; "
          f"best {summary['best_config']['family']}: {score} balanced accuracy "
          f"{summary['best_trial_score']:.4f}{test}")
    print(f"model: {summary['model']}  (landcover map --model {summary['model']} ...)")
    return 0


def _scores(m: dict) -> str:
    return f"balanced accuracy {m['balanced_accuracy']:.4f}, accuracy {m['accuracy']:.4f}, kappa {m['cohen_kappa']:.4f}"


def evaluate(cfg, res) -> int:
    print(f"{res['rows']} rows: {_scores(res['metrics'])}")
    print(f"report: {res['files']['report.md']}")
    return 0


def finetune(cfg, s) -> int:
    resumed = f", resumed at epoch {s['resumed_from']}" if s["resumed_from"] else ""
    print(f"fine-tuned {s['epochs_completed']} epochs in {s['seconds']} s{resumed}; best epoch {s['best_epoch']}: "
          f"validation balanced accuracy {s['best_val_balanced_accuracy']:.4f}")
    if "test" in s:
        t, t0 = s["test"], s["test_without_tta"]
        print(f"test: accuracy {t['accuracy']:.4f}, balanced accuracy {t['balanced_accuracy']:.4f}, "
              f"kappa {t['cohen_kappa']:.4f} (without TTA: accuracy {t0['accuracy']:.4f})")
    print(f"model: {s['out']}  (landcover map --model {s['out']} ...); checkpoints: {s['run']}")
    return 0


def compare(cfg, res) -> int:
    for i, m in enumerate(res["models"]):
        print(f"{i + 1}: {m['model_id']} ({m['kind']}): {_scores(m['metrics'])}")
    print(f"report: {res['files']['compare.md']}")
    return 0


def train_head(cfg, result) -> int:
    manifest, scores = result
    print(f"model {manifest.id} written to {cfg.out}")
    if cfg.store:
        print(f"trained on labelled tiles of {cfg.store}: {json.dumps(scores['labelled_tiles'])}")
        for w in scores.get("warnings", []):
            print(f"landcover train-head: warning: {w}", file=sys.stderr)
    else:
        print(json.dumps({k: scores[k] for k in ("accuracy", "balanced_accuracy", "cohen_kappa")}))
    return 0


def assess(cfg, r) -> int:
    what = (f"{r['tiles']['assessed']} of {r['tiles']['mapped']} mapped tiles assessed"
            if r["mode"] == "map" else f"{r['estimates']['sample_size']} sample units")
    print(f"{what}: overall accuracy {r['overall_accuracy']:.4f} ± {r['overall_accuracy_ci95']:.4f}, "
          f"balanced accuracy {r['balanced_accuracy']:.4f}, kappa {r['kappa']:.4f}")
    print(f"report: {r['files']['report.md']}")
    return 0


def export_tiles(cfg, s) -> int:
    print(f"exported {s['tiles']} labelled tiles ({json.dumps(s['labelled_tiles'])}) in {s['seconds']} s -> {s['out']}")
    print(f"fine-tune on them: landcover finetune --data {s['out']} --test-fraction 0 --out <model dir>; map with "
          f"the store's settings: {json.dumps({k: v for k, v in s['map_settings'].items() if v is not None})}")
    return 0


def remap(cfg, s) -> int:
    counts = ", ".join(f"{v} {k}" for k, v in s["counts"].items())
    print(f"remapped {s['tiles']} tiles in {s['seconds']} s ({counts}) with model {s['model_id']}")
    print(f"map: {s['out']}")
    _cog(s)
    return 0


def similar(cfg, r) -> int:
    print(f"{r['k']} most similar of {r['tiles']} tiles ({r['positives']} positive, {r['negatives']} negative "
          f"examples; {r['index']} search in {r['query_seconds']} s) -> {r['out']}")
    return 0


def change(cfg, s) -> int:
    span = " -> ".join(s["dates"])
    flick = "" if s["flicker_share"] is None else \
        f"; flicker (A->B->A) {s['flicker_share']:.1%} of tiles mapped, {s['flicker_share_after']:.1%} kept"
    pending = f", {s['pending']} pending (a change into the last date: not counted until a later date " \
        "confirms it)" if s.get("pending") else ""
    print(f"change {span}: {s['changed_tiles']} of {s['counts']['ok']} tiles changed ({s['changed_hectares']:,.1f} ha)"
          f"{pending}, {s['counts']['error']} not observed on both ends{flick} ({s['seconds']} s)")
    print(f"change map: {s['out']}  (transitions: {s['files']['transitions']}; picture: {s['files']['picture']})")
    _cog(s)
    return 0


def accounts(cfg, s) -> int:
    zones = ", ".join(f"{z} {v['mapped_hectares']:,.1f} ha" for z, v in list(s["per_zone"].items())[:5])
    more = f" (+{len(s['per_zone']) - 5} more)" if len(s["per_zone"]) > 5 else ""
    print(f"accounts of {len(s['classes'])} classes in {len(s['per_zone'])} zones: {zones}{more}; "
          f"{s['outside_hectares']:,.1f} ha of the map outside every zone ({s['seconds']} s)")
    for z, why in ((z, v["no_interval"]) for z, v in s["per_zone"].items() if "no_interval" in v):
        print(f"  {z}: no interval: {why}")
    print(f"accounts: {s['files']['csv']}  (charts: {_folder_of(s['files']['csv'])}charts/)")
    return 0


def _folder_of(uri: str) -> str:
    return uri[: uri.rfind("/") + 1]


def export(cfg, r) -> int:
    zones = ", ".join(f"{z['crs']}: {z['width']}x{z['height']} pixels of {z['resolution']:g} m" for z in r["zones"])
    print(f"exported {r['mapped_tiles']} mapped tiles of {r['tiles']} as COGs ({zones}) in {r['seconds']} s")
    for f in r["files"].values():
        print(f"  {f['uri']}  " + (f"({f['size']:,} bytes)" if f.get("size") is not None else f"(VRT of {f['blocks']} COGs)"))
    if r.get("note"):
        print(f"note: {r['note']}")
    return 0


def sample(cfg, r) -> int:
    alloc = ", ".join(f"{c} {n}" for c, n in r["allocation"].items())
    print(f"{r['units']} sample units ({alloc}) -> {r['out']}; mapped areas: {r['areas']}")
    print("label the 'reference' column, then: landcover assess --samples <that file> --areas <areas csv> --out <dir>")
    return 0

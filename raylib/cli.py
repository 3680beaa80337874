"""``landcover <verb>``: parse flags/YAML into the job's typed config, call the verb's one
function, print its summary.

Each verb is one ``Verb`` in ``VERBS``: its config class, its help, the function that runs
it (``module:function``, imported only when the verb runs, so ``landcover --help`` stays
fast) and the few lines that report what it did. ``jobs/<verb>.py`` call ``entry(verb)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import typing
from dataclasses import dataclass
from typing import Callable

from raylib import config as cfglib
from raylib import console
from raylib.errors import LandcoverError


def _is_list(annotation) -> bool:
    return typing.get_origin(annotation) is list or any(
        typing.get_origin(a) is list for a in typing.get_args(annotation))


def _is_bool(annotation) -> bool:
    """``bool``, or ``bool | None`` (unset: the verb decides)."""
    return annotation is bool or set(typing.get_args(annotation)) == {bool, type(None)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landcover", description="Satellite imagery to land-cover maps, on Ray.")
    sub = p.add_subparsers(dest="verb", required=True)
    for name, verb in VERBS.items():
        cls = verb.config
        sp = sub.add_parser(name, help=verb.help, description=verb.help)
        sp.add_argument("--config", help="YAML file with the fields below (flags override it)")
        sp.add_argument("-v", "--verbose", action="store_true", help="log what happens, Ray's own messages included")
        for fname, field in cls.model_fields.items():
            flag = "--" + fname.replace("_", "-")
            # argparse formats help with %: a literal one is %%
            kwargs = {"dest": fname, "default": None, "help": (field.description or "").replace("%", "%%") or None}
            if _is_bool(field.annotation):  # --x / --no-x; unset keeps the file's value or the default
                sp.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            elif _is_list(field.annotation):
                sp.add_argument(flag, nargs="+", **kwargs)
            else:
                sp.add_argument(flag, **kwargs)
        for old, new in cls.renamed.items():  # a renamed field's old flag: taken, not listed
            kwargs = {"dest": old, "default": None, "help": argparse.SUPPRESS}
            if _is_bool(cls.model_fields[new].annotation):
                sp.add_argument("--" + old.replace("_", "-"), action=argparse.BooleanOptionalAction, **kwargs)
            else:
                sp.add_argument("--" + old.replace("_", "-"), **kwargs)
    return p


def _negative_values(argv: list[str]) -> list[str]:
    """``--bbox -78.9,35.7,...`` as ``--bbox=-78.9,35.7,...``: argparse takes a value that
    starts with '-' and is not a plain number for an option."""
    out: list[str] = []
    for tok in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"^-\d", tok):
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def _coerce(cls, values: dict) -> dict:
    """CLI strings -> values pydantic can validate ("3,2,1" -> [3, 2, 1], "none" -> None)."""
    out = {}
    for k, v in values.items():
        if v is None:
            continue
        ann = cls.model_fields[cls.renamed.get(k, k)].annotation
        if isinstance(v, list):
            parts = [x for item in v for x in str(item).split(",") if x != ""]
            if k == "bands" and len(parts) == 1 and not parts[0].isdigit():
                v = parts[0]  # a preset name
            else:
                v = parts
        elif isinstance(v, str) and ":" in v and any(typing.get_origin(a) is dict for a in (ann, *typing.get_args(ann))):
            v = dict(p.split(":", 1) for p in v.split(",") if p)  # "1:water,2:forest"
        elif isinstance(v, str) and v.lower() in ("none", "null") and type(None) in typing.get_args(ann):
            v = None
        out[k] = v
    return out


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """``landcover ...``; ``started``: when the command started (default: the process's start
    for a real command line, else now)."""
    console.mark_started(started or (console.process_started() if argv is None else None))
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, unknown = parser.parse_known_args(_negative_values(argv))
    if unknown:
        _refuse_unknown(parser, args.verb, unknown)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # an HTTP client's retries (a STAC API that does not answer) end in one error line
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    verb = VERBS[args.verb]
    try:
        cfg = _config(verb, args)
        run = verb.runner(cfg)
        if not args.verbose:  # Ray's native log lines stay in its log files (console.py)
            console.hide_native_logs()
        try:
            summary = run(cfg, ["landcover", *argv])
        finally:
            console.restore_stderr()
        return verb.report(cfg, summary) or 0
    except LandcoverError as exc:
        print(f"landcover {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _config(verb: "Verb", args: argparse.Namespace):
    """The verb's typed config from its YAML file (``--config``) and flags (flags win)."""
    values = {k: getattr(args, k) for k in (*verb.config.model_fields, *verb.config.renamed)}
    return cfglib.load(verb.config, args.config, _coerce(verb.config, values))


def parse(argv: list[str]):
    """``landcover <verb> ...`` -> the verb's typed config, as ``main`` would run it."""
    args, unknown = _parser().parse_known_args(_negative_values(argv))
    if unknown:
        _refuse_unknown(_parser(), args.verb, unknown)
    return _config(VERBS[args.verb], args)


def _refuse_unknown(parser: argparse.ArgumentParser, verb: str, unknown: list[str]) -> None:
    """Flags the verb does not know: argparse's error (exit 2), with the closest flag of the
    verb for each, as a YAML file's unknown keys get (``config.validate``)."""
    import difflib

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    flags = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
    said = []
    for i, tok in enumerate(unknown):
        if not tok.startswith("-"):
            if i == 0 or not unknown[i - 1].startswith("-"):  # not the value of an unknown flag
                said.append(repr(tok))
            continue
        name = tok.split("=", 1)[0]
        close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
        said.append(f"{name} (did you mean {close[0]}?)" if close else name)
    print(f"landcover {verb}: error: unrecognized argument(s): {', '.join(said)}. Fix: landcover {verb} --help "
          "lists the flags.", file=sys.stderr)
    sys.exit(2)


def entry(verb: str) -> None:
    """``jobs/<verb>.py``: ``landcover <verb>`` with the script's arguments; exits with its code."""
    sys.exit(main([verb, *sys.argv[1:]], started=console.process_started()))


# --------------------------------------------------------------------------- what each verb prints


def _report_map(cfg, summary) -> int:
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
              f"train-head, remap, tune and similar take it, or the map folder, as --embeddings)")
    if summary.get("composite"):
        c = summary["composite"]
        print(f"composite ({c['method']}): {c['path']}  ({c['tiles']} ground tiles, {c['clear_tiles']} with a clear "
              f"observation, from {c['observations']} observations)")
    for q in summary["quicklooks"]:
        print(f"quick-look: {q}")
    if summary["result"] != "ok":
        print(f"landcover map: failed: {summary['failure']}", file=sys.stderr)
        return 3
    return 0


def _report_embed(cfg, summary) -> int:
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


def _report_tune(cfg, summary) -> int:
    score = "cross-validated" if cfg.labels else "validation"
    test = f", test {summary['test']['balanced_accuracy']:.4f}" if summary["test"] else ""
    print(f"{summary['trials']} trials ({', '.join(summary['families'])}) in {summary['seconds']} s; "
          f"best {summary['best_config']['family']}: {score} balanced accuracy "
          f"{summary['best_trial_score']:.4f}{test}")
    print(f"model: {summary['model']}  (landcover map --model {summary['model']} ...)")
    return 0


def _report_evaluate(cfg, res) -> int:
    m = res["metrics"]
    print(f"{res['rows']} rows: balanced accuracy {m['balanced_accuracy']:.4f}, accuracy {m['accuracy']:.4f}, "
          f"kappa {m['cohen_kappa']:.4f}")
    print(f"report: {res['files']['report.md']}")
    return 0


def _report_finetune(cfg, s) -> int:
    resumed = f", resumed at epoch {s['resumed_from']}" if s["resumed_from"] else ""
    print(f"fine-tuned {s['epochs_completed']} epochs in {s['seconds']} s{resumed}; best epoch {s['best_epoch']}: "
          f"validation balanced accuracy {s['best_val_balanced_accuracy']:.4f}")
    if "test" in s:
        t, t0 = s["test"], s["test_without_tta"]
        print(f"test: accuracy {t['accuracy']:.4f}, balanced accuracy {t['balanced_accuracy']:.4f}, "
              f"kappa {t['cohen_kappa']:.4f} (without TTA: accuracy {t0['accuracy']:.4f})")
    print(f"model: {s['out']}  (landcover map --model {s['out']} ...); checkpoints: {s['run']}")
    return 0


def _report_compare(cfg, res) -> int:
    for i, m in enumerate(res["models"]):
        mm = m["metrics"]
        print(f"{i + 1}: {m['model_id']} ({m['kind']}): balanced accuracy {mm['balanced_accuracy']:.4f}, "
              f"accuracy {mm['accuracy']:.4f}, kappa {mm['cohen_kappa']:.4f}")
    print(f"report: {res['files']['compare.md']}")
    return 0


def _report_train_head(cfg, result) -> int:
    manifest, scores = result
    print(f"model {manifest.id} written to {cfg.out}")
    if cfg.embeddings:
        print(f"trained on labelled tiles of {cfg.embeddings}: {json.dumps(scores['labelled_tiles'])}")
        for w in scores.get("warnings", []):
            print(f"landcover train-head: warning: {w}", file=sys.stderr)
    else:
        print(json.dumps({k: scores[k] for k in ("accuracy", "balanced_accuracy", "cohen_kappa")}))
    return 0


def _report_assess(cfg, r) -> int:
    what = (f"{r['tiles']['assessed']} of {r['tiles']['mapped']} mapped tiles assessed"
            if r["mode"] == "map" else f"{r['estimates']['sample_size']} sample units")
    print(f"{what}: overall accuracy {r['overall_accuracy']:.4f} ± {r['overall_accuracy_ci95']:.4f}, "
          f"balanced accuracy {r['balanced_accuracy']:.4f}, kappa {r['kappa']:.4f}")
    print(f"report: {r['files']['report.md']}")
    return 0


def _report_export_tiles(cfg, s) -> int:
    print(f"exported {s['tiles']} labelled tiles ({json.dumps(s['labelled_tiles'])}) in {s['seconds']} s -> {s['out']}")
    print(f"fine-tune on them: landcover finetune --data {s['out']} --test-fraction 0 --out <model dir>; map with "
          f"the store's settings: {json.dumps({k: v for k, v in s['map_settings'].items() if v is not None})}")
    return 0


def _report_remap(cfg, s) -> int:
    counts = ", ".join(f"{v} {k}" for k, v in s["counts"].items())
    print(f"remapped {s['tiles']} tiles in {s['seconds']} s ({counts}) with model {s['model_id']}")
    print(f"map: {s['out']}")
    return 0


def _report_similar(cfg, r) -> int:
    print(f"{r['k']} most similar of {r['tiles']} tiles ({r['positives']} positive, {r['negatives']} negative "
          f"examples; {r['index']} search in {r['query_seconds']} s) -> {r['out']}")
    return 0


def _report_change(cfg, s) -> int:
    span = " -> ".join(s["dates"])
    flick = "" if s["flicker_share"] is None else \
        f"; flicker (A->B->A) {s['flicker_share']:.1%} of tiles mapped, {s['flicker_share_after']:.1%} kept"
    print(f"change {span}: {s['changed_tiles']} of {s['counts']['ok']} tiles changed ({s['changed_hectares']:,.1f} ha), "
          f"{s['counts']['error']} not observed on both ends{flick} ({s['seconds']} s)")
    print(f"change map: {s['out']}  (transitions: {s['files']['transitions']}; picture: {s['files']['picture']})")
    return 0


def _report_accounts(cfg, s) -> int:
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


def _report_sample(cfg, r) -> int:
    alloc = ", ".join(f"{c} {n}" for c, n in r["allocation"].items())
    print(f"{r['units']} sample units ({alloc}) -> {r['out']}; mapped areas: {r['areas']}")
    print("label the 'reference' column, then: landcover assess --samples <that file> --areas <areas csv> --out <dir>")
    return 0


@dataclass(frozen=True)
class Verb:
    config: type
    help: str
    runner: Callable[[object], Callable]  # config -> the function that runs the verb (imported then)
    report: Callable[[object, object], int]  # prints the summary; the exit code


# Each verb's function is imported when it runs, not with the CLI (``--help`` and a bad flag
# stay fast, and a verb never loads another's libraries); the imports are plain statements,
# so lint-imports sees the CLI's dependencies.
def _map(cfg):
    from raylib.pipelines.map.run import run_map
    return run_map


def _embed(cfg):
    from raylib.pipelines.embed import run_embed
    return run_embed


def _tune(cfg):
    from raylib.pipelines.tune import run_tune
    return run_tune


def _evaluate(cfg):
    from raylib.pipelines.evaluate import run_evaluate
    return run_evaluate


def _finetune(cfg):
    from raylib.pipelines.finetune import run_finetune
    return run_finetune


def _compare(cfg):
    from raylib.pipelines.evaluate import run_compare
    return run_compare


def _train_head(cfg):
    from raylib.pipelines.train_head import train_head
    return train_head


def _assess(cfg):
    from raylib.pipelines.assess.run import run_assess
    return run_assess


def _export_tiles(cfg):
    from raylib.pipelines.export_tiles import export_tiles
    return export_tiles


def _remap(cfg):
    from raylib.pipelines.remap import run_remap
    return run_remap


def _similar(cfg):
    from raylib.pipelines.similar import run_similar
    return run_similar


def _sample(cfg):
    from raylib.pipelines.assess.samples import run_sample
    return run_sample


def _change(cfg):
    from raylib.pipelines.change.run import run_change
    return run_change


def _accounts(cfg):
    from raylib.pipelines.accounts import run_accounts
    return run_accounts


VERBS = {
    "map": Verb(cfglib.MapConfig, "Map scenes to a GeoParquet land-cover map.",
                _map, _report_map),
    "embed": Verb(cfglib.EmbedConfig, "Embed a labelled patch set into a Parquet table, or scenes tile by tile into an "
                  "embedding store.", _embed, _report_embed),
    "tune": Verb(cfglib.TuneConfig, "Sweep head families and hyperparameters with Ray Tune; export the best.",
                 _tune, _report_tune),
    "evaluate": Verb(cfglib.EvaluateConfig, "Score a model on labelled data; write metrics.json and a report.",
                     _evaluate, _report_evaluate),
    "finetune": Verb(cfglib.FinetuneConfig, "Fine-tune a backbone end to end with Ray Train; write a model directory.",
                     _finetune, _report_finetune),
    "compare": Verb(cfglib.CompareConfig, "Score several models on one labelled split; write a side-by-side report.",
                    _compare, _report_compare),
    "train-head": Verb(cfglib.TrainHeadConfig, "Fit a logistic-regression head on an image folder or on labelled "
                       "tiles of an embedding store.", _train_head,
                       _report_train_head),
    "assess": Verb(cfglib.AssessConfig, "Map accuracy and area estimates against reference land cover (Olofsson et "
                   "al. 2014).", _assess, _report_assess),
    "export-tiles": Verb(cfglib.ExportTilesConfig, "Write labelled tiles of an embedding store as an image folder, "
                         "read from the scenes as the map read them (for finetune).",
                         _export_tiles, _report_export_tiles),
    "remap": Verb(cfglib.RemapConfig, "Apply a head to an embedding store: a map without imagery or backbone.",
                  _remap, _report_remap),
    "similar": Verb(cfglib.SimilarConfig, "Find the tiles of an embedding store most like a few example tiles.",
                    _similar, _report_similar),
    "sample": Verb(cfglib.SampleConfig, "Draw a stratified random sample of a map's tiles to label for assess "
                   "--samples.", _sample, _report_sample),
    "change": Verb(cfglib.ChangeConfig, "What changed between maps of one place on the ground grid: a change map, "
                   "transitions (tiles, hectares) and a picture.", _change, _report_change),
    "accounts": Verb(cfglib.AccountsConfig, "The area of each class (or transition) per region; with a labelled "
                     "sample, estimates with 95 % intervals.", _accounts, _report_accounts),
}


if __name__ == "__main__":
    sys.exit(main())

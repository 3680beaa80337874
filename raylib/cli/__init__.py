"""``landcover <verb>``: parse flags/YAML into the job's typed config, call the verb's one
function, print its summary.

Each verb is one ``Verb`` in ``VERBS``: its config class, its help, the function that gives
its runner (a plain import inside it: ``landcover --help`` stays fast and the import
contract sees it) and the few lines that report what it did (``reports``).
``jobs/<verb>.py`` call ``entry(verb)``; ``python -m raylib.cli`` is ``landcover``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import typing
from dataclasses import dataclass
from typing import Callable

from raylib import config as cfglib
from raylib import console
from raylib.cli import reports
from raylib.errors import LandcoverError


def _is_list(annotation) -> bool:
    return typing.get_origin(annotation) is list or any(
        typing.get_origin(a) is list for a in typing.get_args(annotation))


def _is_bool(annotation) -> bool:
    """``bool``, or ``bool | None`` (unset: the verb decides)."""
    return annotation is bool or set(typing.get_args(annotation)) == {bool, type(None)}


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line naming the fix (not the whole usage), and no
    abbreviated flags (``--scene`` would be ambiguous between ``--scenes`` and
    ``--scenes-per-task``; unknown, it gets the closest flag: ``_refuse_unknown``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        import difflib

        m = re.match(r"argument (?:verb|<verb>): invalid choice: '([^']*)'", message)
        if m:
            close = difflib.get_close_matches(m.group(1), list(VERBS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            message = f"unknown verb '{m.group(1)}'{hint}; the verbs: {', '.join(VERBS)}"
        print(f"{self.prog}: error: {message}. Fix: {self.prog} --help lists "
              f"{'the verbs' if self.prog == 'landcover' else 'the flags'}.", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    from raylib import __version__
    from raylib.cli.examples import epilog

    p = _Parser(prog="landcover", description="Satellite imagery to land-cover maps, on Ray. "
                "`landcover <verb> --help` lists a verb's flags, with examples.")
    p.add_argument("--version", action="version", version=f"landcover-ray {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="<verb>", parser_class=_Parser)
    for name, verb in VERBS.items():
        cls = verb.config
        # argparse formats a flag's help (and a verb's in the list) with %: a literal one is %%;
        # a description and an epilog are printed as they are
        sp = sub.add_parser(name, help=verb.help.replace("%", "%%"), description=verb.help, epilog=epilog(name))
        sp.add_argument("--config", help="YAML file with the fields below (flags override it)")
        sp.add_argument("-v", "--verbose", action="store_true", help="log what happens, Ray's own messages included")
        for section, names in cfglib.flag_sections(cls):  # a setting group's flags under its own heading
            group = sp if section is None else sp.add_argument_group(section)
            for fname in names:
                field = cls.model_fields[fname]
                flag = "--" + fname.replace("_", "-")
                # argparse formats help with %: a literal one is %%
                kwargs = {"dest": fname, "default": None, "help": (field.description or "").replace("%", "%%") or None}
                if _is_bool(field.annotation):  # --x / --no-x; unset keeps the file's value or the default
                    group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
                elif _is_list(field.annotation):
                    group.add_argument(flag, nargs="+", **kwargs)
                else:
                    group.add_argument(flag, **kwargs)
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
    # -v: timestamped logs of every module; else a warning is a plain line, as the CLI's own lines are
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s") if args.verbose
                         else _PlainFormatter(f"landcover {args.verb}"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
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


class _PlainFormatter(logging.Formatter):
    """``landcover map: warning: ...``: a log line as the CLI's own lines read."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = f"{self.prefix}: {record.levelname.lower()}: {record.getMessage()}"
        return text + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")


def _config(verb: "Verb", args: argparse.Namespace):
    """The verb's typed config from its YAML file (``--config``) and flags (flags win)."""
    values = {k: getattr(args, k) for k in (*verb.config.model_fields, *verb.config.renamed)}
    return cfglib.load(verb.config, args.config, _coerce(verb.config, values), args.verb)


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


def _export(cfg):
    from raylib.pipelines.export import run_export
    return run_export


def _accounts(cfg):
    from raylib.pipelines.accounts import run_accounts
    return run_accounts


VERBS = {
    "map": Verb(cfglib.MapConfig, "Map scenes to a GeoParquet land-cover map.",
                _map, reports.map),
    "embed": Verb(cfglib.EmbedConfig, "Embed a labelled patch set into a Parquet table, or scenes tile by tile into an "
                  "embedding store.", _embed, reports.embed),
    "tune": Verb(cfglib.TuneConfig, "Sweep head families and hyperparameters with Ray Tune; export the best.",
                 _tune, reports.tune),
    "evaluate": Verb(cfglib.EvaluateConfig, "Score a model on labelled data; write metrics.json and a report.",
                     _evaluate, reports.evaluate),
    "finetune": Verb(cfglib.FinetuneConfig, "Fine-tune a backbone end to end with Ray Train; write a model directory.",
                     _finetune, reports.finetune),
    "compare": Verb(cfglib.CompareConfig, "Score several models on one labelled split; write a side-by-side report.",
                    _compare, reports.compare),
    "train-head": Verb(cfglib.TrainHeadConfig, "Fit a logistic-regression head on an image folder or on labelled "
                       "tiles of an embedding store.", _train_head,
                       reports.train_head),
    "assess": Verb(cfglib.AssessConfig, "Map accuracy and area estimates against reference land cover (Olofsson et "
                   "al. 2014).", _assess, reports.assess),
    "export-tiles": Verb(cfglib.ExportTilesConfig, "Write labelled tiles of an embedding store as an image folder, "
                         "read from the scenes as the map read them (for finetune).",
                         _export_tiles, reports.export_tiles),
    "remap": Verb(cfglib.RemapConfig, "Apply a head to an embedding store: a map without imagery or backbone.",
                  _remap, reports.remap),
    "similar": Verb(cfglib.SimilarConfig, "Find the tiles of an embedding store most like a few example tiles.",
                    _similar, reports.similar),
    "sample": Verb(cfglib.SampleConfig, "Draw a stratified random sample of a map's tiles to label for assess "
                   "--samples.", _sample, reports.sample),
    "change": Verb(cfglib.ChangeConfig, "What changed between maps of one place on the ground grid: a change map, "
                   "transitions (tiles, hectares) and a picture.", _change, reports.change),
    "accounts": Verb(cfglib.AccountsConfig, "The area of each class (or transition) per region; with a labelled "
                     "sample, estimates with 95 % intervals.", _accounts, reports.accounts),
    "export": Verb(cfglib.ExportConfig, "A map (or composite, or change map) as cloud-optimised GeoTIFFs: classes "
                   "with their palette, confidence, probabilities; one per CRS zone.", _export, reports.export),
}

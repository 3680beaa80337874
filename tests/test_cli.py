"""``landcover <verb>``: every verb's help, and flags that are wrong, each one clear line."""

import pytest

from raylib.cli import VERBS, main


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verbs_help_prints_with_examples_that_parse(verb, capsys):
    """Each verb's help: every flag with its help text, the verb's description as written
    (a literal %), and at least one example at the end, each of which the CLI takes."""
    import shlex

    from raylib.cli import parse
    from raylib.cli.examples import EXAMPLES

    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: landcover {verb}") and "--config" in out and "%%" not in out
    assert not [f for f, field in VERBS[verb].config.model_fields.items() if not field.description]
    if verb == "map":
        assert "eo:cloud_cover <= this (%)" in out  # a literal % in a field's help
        assert "or a preset: rgb, bgr, naip, landsat8-b234, sentinel2-eurosat" in " ".join(out.split())
    if verb == "accounts":
        assert "with 95 % intervals" in out
    examples = EXAMPLES[verb]
    assert examples and out.rstrip().endswith(examples[-1][1])
    assert "examples:" in out and all(cmd in out for _, cmd in examples)
    for _, cmd in examples:
        words = shlex.split(cmd)
        assert words[:2] == ["landcover", verb]
        parse(words[1:])  # (flags and values the verb's config takes)


def test_version(capsys):
    from raylib import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"landcover-ray {__version__}"


def test_an_abbreviated_flag_is_unknown_with_the_closest_one_in_one_line(capsys):
    """``--scene`` (the start of --scenes and --scenes-per-task) is no abbreviation: one line
    with the flag meant, not argparse's usage and 'ambiguous option'."""
    with pytest.raises(SystemExit) as done:
        main(["map", "--scene", "a.tif", "--out", "o"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and "usage:" not in err
    assert "--scene (did you mean --scenes?)" in err


@pytest.mark.parametrize("argv, says", [
    (["mapp"], "unknown verb 'mapp' (did you mean map?)"),
    (["map", "--out"], "argument --out: expected one argument"),
    (["change", "--dates", "maps/2010", "--out", "c"], "a change needs two dates and --dates gave one map"),
])
def test_argument_errors_are_one_line_with_the_fix(argv, says, capsys):
    try:
        rc = main(argv)
    except SystemExit as done:
        rc = done.code
    err = capsys.readouterr().err
    assert rc == 2 and says in err and err.count("\n") == 1 and "usage:" not in err
    assert "pydantic" not in err and "correct the value(s)" not in err and "Fix:" in err


def test_the_verb_list_prints_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in VERBS) and "95 % intervals" in out  # a literal % in a verb's help


def test_a_mistyped_flag_gets_the_closest_one_in_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        main(["map", "--scenes", "a.tif", "--out", "o", "--tilesize", "64"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1
    assert "unrecognized argument(s): --tilesize (did you mean --tile-size?)" in err and "Fix:" in err


def test_a_bad_value_names_its_field_and_not_every_field(capsys):
    assert main(["map", "--scenes", "a.tif", "--out", "o", "--tile-size", "abc"]) == 2
    err = capsys.readouterr().err
    assert "field 'tile_size'" in err and err.count("\n") == 1
    assert "valid fields are" not in err and "read_timeout" not in err


def test_every_verb_has_a_ray_job_entry_point():
    """``jobs/<verb>.py`` for every verb (``ray job submit ... -- python jobs/remap.py``)."""
    from raylib.cli import VERBS

    from .conftest import REPO

    for verb in VERBS:
        path = REPO / "jobs" / f"{verb.replace('-', '_')}.py"
        assert path.exists(), path
        assert f'entry("{verb}")' in path.read_text()


def test_a_renamed_flag_still_works_with_one_deprecation_line(tmp_path, caplog, capsys):
    """``map --remap`` (a flag named like the ``remap`` verb) is ``--refresh`` now: the old
    flag and YAML key are still taken, with a line saying so, and only the new one is listed."""
    from raylib.cli import parse

    base = ["map", "--scenes", "a.tif", "--out", "o", "--incremental"]
    assert parse(base + ["--refresh"]).refresh is True and not caplog.records
    with caplog.at_level("WARNING"):
        cfg = parse(base + ["--remap"])
    assert cfg.refresh is True and "remap" not in cfg.model_dump()
    assert [r.getMessage() for r in caplog.records] == [
        "--remap (remap) is deprecated: it is --refresh (refresh) now, and the old name will go in a later release"]
    assert parse(base + ["--no-remap"]).refresh is False
    (tmp_path / "c.yaml").write_text("scenes: [a.tif]\nout: o\nincremental: true\nremap: true\n")
    assert parse(["map", "--config", str(tmp_path / "c.yaml")]).refresh is True
    with pytest.raises(SystemExit):
        main(["map", "--help"])
    out = capsys.readouterr().out
    assert "--refresh" in out and "--remap" not in out


@pytest.mark.parametrize("argv, field, value", [
    (["map", "--scenes", "a.tif", "--out", "o", "--embeddings"], "store", True),
    (["remap", "--embeddings", "maps/nc", "--model", "m", "--out", "o"], "store", "maps/nc"),
    (["train-head", "--embeddings", "maps/nc", "--labels", "l.tif", "--out", "m"], "store", "maps/nc"),
    (["similar", "--embeddings", "maps/nc", "--positives", "t1", "--out", "f.parquet"], "store", "maps/nc"),
    (["tune", "--embeddings", "emb/eurosat", "--out", "t"], "data", "emb/eurosat"),  # a table
    (["tune", "--embeddings", "maps/nc", "--labels", "l.tif", "--out", "t"], "store", "maps/nc"),  # a store
])
def test_embeddings_means_one_thing_and_the_old_flag_still_works(argv, field, value, caplog, capsys):
    """``--embeddings`` named a map's flag, a store and a table: it is ``--store`` (the store,
    written or read) and ``tune --data`` (the table) now; the old flag is taken with one
    deprecation line and is no longer listed."""
    from raylib.cli import parse

    with caplog.at_level("WARNING"):
        cfg = parse(argv)
    assert getattr(cfg, field) == value and "embeddings" not in cfg.model_dump()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("--embeddings (embeddings) is deprecated: ") and \
        f"--{field} ({field})" in lines[0]
    with pytest.raises(SystemExit):
        main([argv[0], "--help"])
    assert "--embeddings" not in capsys.readouterr().out

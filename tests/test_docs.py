"""docs/cli.md is generated from the configs: it must match them."""

import importlib.util

from .conftest import REPO


def test_cli_reference_matches_the_configs():
    spec = importlib.util.spec_from_file_location("cli_reference", REPO / "scripts" / "cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (REPO / "docs" / "cli.md").read_text()
    assert text == mod.render(), "docs/cli.md is stale: run .venv/bin/python scripts/cli_reference.py"
    assert "## `landcover export-tiles`" in text and "`--per-class`" in text

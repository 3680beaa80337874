"""The package's shape: small modules with one job each."""

from .conftest import REPO


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "raylib").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"split these modules by concern: {long}"


def test_no_module_imports_itself_back():
    """No import circle among raylib's modules (a function-level import counts: grimp reads
    them), e.g. the estimators and the saved heads each loading the other."""
    import grimp

    g = grimp.build_graph("raylib")
    circles = sorted({tuple(sorted((m, i))) for m in g.modules for i in g.find_modules_directly_imported_by(m)
                      if g.chain_exists(i, m)})
    assert not circles, circles


def test_the_import_contracts_cover_the_cli_and_the_console():
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = " ".join(contracts[0]["layers"])
    assert "raylib.cli" in layers and "raylib.console" in layers
    cli = "".join(p.read_text() for p in (REPO / "raylib" / "cli").glob("*.py"))
    assert "import_module" not in cli  # the CLI's imports of the pipelines are plain statements lint-imports sees

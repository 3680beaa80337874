"""Every kept script runs: each loads, and every name it imports from the package (at the
top or inside a function) exists, so a rename in ``raylib`` cannot leave a benchmark or a
tool broken until someone runs it. Shell scripts parse. Every ``scripts/`` path the docs and
BENCHMARKS.md name is there."""

import ast
import importlib
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sorted((REPO / "scripts").rglob("*.py"))
SH = sorted((REPO / "scripts").rglob("*.sh"))


def test_scripts_are_split_into_tools_and_benchmarks():
    tools = {p.name for p in (REPO / "scripts").iterdir() if p.is_file()}
    assert tools == {"install.sh", "cli_reference.py", "stac_schemas.py", "gpu_check.py", "gpu_check.sh",
                     "reliability_report.py"}
    assert len(list((REPO / "scripts" / "benchmarks").glob("*.py"))) >= 10


@pytest.mark.parametrize("path", PY, ids=lambda p: str(p.relative_to(REPO)))
def test_each_script_loads_and_its_package_imports_exist(path):
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its top level (argument parsing and work sit under __main__)
    assert callable(getattr(module, "main", None)) or "__main__" in path.read_text()
    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("raylib"):
            mod = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(mod, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{node.module}.{alias.name} (line {node.lineno})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("raylib"):
                    importlib.import_module(alias.name)
    assert not missing, f"{path.name} imports names the package no longer has: {missing}"


@pytest.mark.parametrize("path", SH, ids=lambda p: str(p.relative_to(REPO)))
def test_each_shell_script_parses(path):
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_script_the_docs_name_is_there():
    docs = [REPO / "README.md", REPO / "BENCHMARKS.md", *(REPO / "docs").glob("*.md")]
    # (a path after "git show <commit>:" is a removed script, kept in history)
    named = {m for d in docs for m in re.findall(r"(?<![:\w/])scripts/[\w/.-]+\.(?:py|sh)", d.read_text())}
    assert named, "the docs name no script"
    assert sorted(n for n in named if not (REPO / n).exists()) == []

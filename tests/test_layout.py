"""The import rule of the layout: the product (model/) imports neither the app nor the lab."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every module a file imports, including imports inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder, forbidden", [
    ("model", {"analysis", "dashboard", "streamlit", "benchmarks", "tests"}),
    ("dashboard", {"analysis", "benchmarks", "tests"}),
    ("analysis", {"dashboard", "streamlit"}),
])
def test_imports_go_one_way(folder, forbidden):
    offenders = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & forbidden)
                 for p in sorted((ROOT / folder).rglob("*.py")) if imported_packages(p) & forbidden}
    assert not offenders, f"{folder}/ must not import {sorted(forbidden)}: {offenders}"


def test_the_rule_catches_a_function_level_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from analysis.baseline import run\n    import streamlit as st\n")
    assert {"analysis", "streamlit"} <= imported_packages(bad)


def test_requirements_txt_is_pyprojects_dependency_list():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.split("#")[0].strip()]
    assert listed == declared

"""The import rules of the layout, enforced.

* the product (model/) imports neither the app nor the lab; the app imports not the lab;
* runtime never imports training: nothing in model/ outside model/training/ imports it, not even to hand a
  command over (training has its own command line, `alzmri-train`, in model/training/cli.py), and the
  dashboard never does;
* model/scans/ needs no torch, nor does the CLI's one-file path (`model.core.runtimes` and what it reads with);
  no runtime module imports the hub download code (huggingface_hub).

Every rule is also run on a small tree that breaks it, so a rule that can no longer fail is noticed.
"""
import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every module a file imports, including imports inside functions: for
    `from a.b import c` both "a.b" and "a.b.c" (c may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every module a file imports."""
    return {name.split(".")[0] for name in imported_modules(path)}


def files(root: Path, folder: str, exclude: tuple[str, ...] = ()) -> list[Path]:
    return [p for p in sorted((root / folder).rglob("*.py"))
            if not any(p.relative_to(root).as_posix().startswith(e) for e in exclude)]


def offenders(root: Path, paths: list[Path], forbidden_prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    """{file: the forbidden modules it imports} for every file that imports a module under a prefix."""
    out = {}
    for p in paths:
        bad = sorted(m for m in imported_modules(p) if any(m == f or m.startswith(f + ".") for f in forbidden_prefixes))
        if bad:
            out[p.relative_to(root).as_posix()] = bad
    return out


def runtime_imports_training(root: Path) -> dict[str, list[str]]:
    return offenders(root, files(root, "model", exclude=("model/training/",)), ("model.training",))


def dashboard_imports_training(root: Path) -> dict[str, list[str]]:
    return offenders(root, files(root, "dashboard"), ("model.training",))


def runtime_imports_hub(root: Path) -> dict[str, list[str]]:
    return offenders(root, files(root, "model", exclude=("model/training/",)) + files(root, "dashboard"),
                     ("huggingface_hub",))


@pytest.mark.parametrize("folder, forbidden", [
    ("model", {"analysis", "dashboard", "streamlit", "benchmarks", "tests"}),
    ("dashboard", {"analysis", "benchmarks", "tests"}),
    ("analysis", {"dashboard", "streamlit"}),
])
def test_imports_go_one_way(folder, forbidden):
    found = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & forbidden)
             for p in sorted((ROOT / folder).rglob("*.py")) if imported_packages(p) & forbidden}
    assert not found, f"{folder}/ must not import {sorted(forbidden)}: {found}"


def test_runtime_never_imports_training():
    assert not runtime_imports_training(ROOT), "model/ outside training/ imports model.training"


def test_dashboard_never_imports_training():
    assert not dashboard_imports_training(ROOT), "dashboard/ imports model.training"


def test_runtime_never_imports_the_hub_download_code():
    assert not runtime_imports_hub(ROOT)


def test_scans_need_no_torch():
    """model.scans, imported in a fresh interpreter, loads no torch (directly or through what it imports)."""
    code = ("import sys, importlib, pkgutil, model.scans as s\n"
            "[importlib.import_module('model.scans.' + m.name) for m in pkgutil.iter_modules(s.__path__)]\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert not offenders(ROOT, files(ROOT, "model/scans"), ("torch", "torchvision"))


# What `alzmri predict FILE` imports when a checked export is cached (model.serve.predict.load_predictor): torch's
# import alone was ~1.8 s of a 3.5 s run, so none of these may load it, directly or through what they import.
TORCH_FREE = ("model.serve.predict", "model.serve.inputs", "model.serve.pipeline", "model.core.runtimes", "model.core.assets",
              "model.core.prediction", "model.core.resize", "model.core.slab", "model.qualify.trust",
              "model.qualify.unseen", "model.reports.record")


def test_the_one_file_cli_path_needs_no_torch():
    code = f"import sys, importlib\n[importlib.import_module(m) for m in {TORCH_FREE!r}]\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_rule_catches_a_violation(tmp_path):
    """Each rule, run on a tree that breaks it, names the offending file (imports inside functions too)."""
    for rel, text in {
        "model/serve/bad.py": "def f():\n    from model.training.train import cli\n",
        "model/core/sneaky.py": "from model import training\n",
        "model/cli.py": "def run():\n    from model.training.train import cli\n",  # not even to hand over
        "model/training/ok.py": "from model.training.data import grouped_split\n",
        "dashboard/page.py": "import model.training.subjects\n",
        "model/qualify/hub.py": "def f():\n    import huggingface_hub\n",
        "model/scans/torchy.py": "import torch\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert set(runtime_imports_training(tmp_path)) == {"model/serve/bad.py", "model/core/sneaky.py", "model/cli.py"}
    assert set(dashboard_imports_training(tmp_path)) == {"dashboard/page.py"}
    assert set(runtime_imports_hub(tmp_path)) == {"model/qualify/hub.py"}
    assert set(offenders(tmp_path, files(tmp_path, "model/scans"), ("torch",))) == {"model/scans/torchy.py"}


def test_the_rule_catches_a_function_level_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from analysis.baseline import run\n    import streamlit as st\n")
    assert {"analysis", "streamlit"} <= imported_packages(bad)


def test_requirements_txt_is_pyprojects_dependency_list():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.split("#")[0].strip()]
    assert listed == declared


def test_serving_a_user_loads_no_training_code():
    """`alzmri predict` and `alzmri evaluate` through the product's dispatcher, `alzmri train` refused there with
    a pointer to `alzmri-train`, and the API app, in a fresh interpreter: not one model.training module is
    imported."""
    import subprocess
    import sys

    code = ("import sys, contextlib, io\n"
            "from model.cli import main\n"
            "for cmd in (['predict', '--help'], ['evaluate', '--help'], ['train', '--epochs', '1']):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        main(cmd)\n"
            "import model.serve.api, model.serve.pipeline, dashboard.common\n"
            "print(sorted(m for m in sys.modules if m.startswith('model.training')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout

"""Package boundaries: the library (`mmt`) never imports the dataset readers, the analysis or the app layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("mmt.analysis", "mmt.data_prep", "mmt_app")   # analysis/ and data_prep/ install under mmt


def layer(module: str) -> str:
    """The layer a module name belongs to: one of OUTSIDE, or its own top-level name."""
    return next((name for name in OUTSIDE if module == name or module.startswith(name + ".")), module.split(".")[0])


def imported_packages(path: Path) -> set[str]:
    """Layers of everything a source file imports (at any depth, lazily or not)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {layer(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {layer(node.module)} | {layer(f"{node.module}.{alias.name}") for alias in node.names}
    return names


def test_no_library_module_imports_the_layers_above_it():
    # __main__ is the `python -m mmt` entry point: it runs the app, it is never imported
    offenders = {path.name: sorted(imported_packages(path) & set(OUTSIDE))
                 for path in sorted((ROOT / "mmt").glob("*.py")) if path.name != "__main__.py"}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_importing_every_library_module_loads_nothing_above_it():
    modules = [f"mmt.{p.stem}" for p in sorted((ROOT / "mmt").glob("*.py")) if p.stem not in ("__init__", "__main__")]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.startswith({tuple(n + '.' for n in OUTSIDE)!r}) or m in {OUTSIDE!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_light_modules_import_without_torch():
    code = ("import sys, mmt, mmt.request, mmt.prepared, mmt.config\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_no_source_file_holds_control_bytes():
    # "\f" in a non-raw docstring turns "\frac" into a form feed and "rac"; tabs and newlines are fine
    control = set(range(32)) - {9, 10, 13}
    sources = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    found = {name: sorted({hex(b) for b in (ROOT / name).read_bytes() if b in control})
             for name in sources if (ROOT / name).is_file()}
    assert len(sources) > 50
    assert {name: bytes_ for name, bytes_ in found.items() if bytes_} == {}

"""The wheel: the library with analysis and data_prep under the mmt name, a bundled model without its logs, no compiled code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_packages_under_mmt_and_the_model_without_its_logs(tmp_path):
    # built from a copy: setuptools builds in the source tree, where an old build/ would leak into the wheel
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "out", "data", "runs",
                                                                "__pycache__", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "--quiet", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("mmt-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")  # pure Python: installing needs no compiler
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted({name.split("/")[0] for name in names if not name.startswith("mmt-")}) == ["mmt", "mmt_app"]
    assert {"mmt/analysis/metrics.py", "mmt/data_prep/lmd.py", "mmt/midi.py"} <= set(names)
    assert sorted(name for name in names if name.startswith("mmt/models/")) == [
        "mmt/models/music21-small/README.md", "mmt/models/music21-small/config.json",
        "mmt/models/music21-small/config.yaml", "mmt/models/music21-small/model.safetensors"]

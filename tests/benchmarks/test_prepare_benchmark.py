"""benchmarks/prepare.py: the split (the machine's ceiling for -j 2) writes, in one process or two, what preparation writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from mmt.data_prep import list_sources, prepare_dataset

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
_spec = importlib.util.spec_from_file_location("prepare_benchmark", BENCHMARKS / "prepare.py")
prepare_benchmark = importlib.util.module_from_spec(_spec)
sys.modules["prepare_benchmark"] = prepare_benchmark  # its split workers' function is pickled by module name
_spec.loader.exec_module(prepare_benchmark)


def test_split_in_two_processes_writes_what_one_process_writes(tmp_path):
    tree = prepare_benchmark.build_tree(tmp_path / "lmd", 24, seed=1)
    assert tree["files"] == 24 and tree["corrupt"] == 2  # files 7 and 13 of every 500: random bytes, cut short
    sources = list_sources("lmd", tmp_path / "lmd")
    assert len(sources) == 24

    seconds = {jobs: prepare_benchmark.split_seconds(sources, tmp_path / f"split-{jobs}", jobs) for jobs in (1, 2)}
    summary = prepare_dataset("lmd", tmp_path / "lmd", tmp_path / "prepared", jobs=1, progress=False, log=None)

    assert all(s > 0 for s in seconds.values())
    assert summary.counts == {"ok": 21, "skipped": 1, "failed": 2}
    folders = {"split-1": tmp_path / "split-1", "split-2": tmp_path / "split-2", "prepare": tmp_path / "prepared"}
    written = {name: sorted(p.relative_to(folder) for p in folder.rglob("*")
                            if p.is_file() and p.parts[len(folder.parts)] in ("notes", "meters"))
               for name, folder in folders.items()}
    assert written["split-1"] == written["split-2"] == written["prepare"]
    assert len([p for p in written["prepare"] if p.parts[0] == "notes"]) == 21
    for rel in written["prepare"]:
        expected = (folders["prepare"] / rel).read_bytes()
        assert (folders["split-1"] / rel).read_bytes() == expected == (folders["split-2"] / rel).read_bytes()

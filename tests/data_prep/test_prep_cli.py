"""`mmt prepare` on the command line: its output lines, its errors, and a run killed part way."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from prep_trees import output_files, write_bad_files, write_midi_file

from mmt.data_prep import prepare_dataset
from mmt.data_prep.filters import Filters
from mmt_app.cli import main

REPO = Path(__file__).resolve().parents[2]


def small_tree(root: Path) -> Path:
    for i in range(6):
        write_midi_file(root / f"song{i}.mid", [(0, False, [(b / 2, 60 + (b * i) % 12, 0.5) for b in range(16)])])
    write_bad_files(root / "bad")
    return root


def test_cli_prints_counts_notes_and_rate_then_nothing_to_do(tmp_path, capsys):
    src, out = small_tree(tmp_path / "src"), tmp_path / "out"
    args = ["prepare", "folder", str(src), str(out), "--min-notes", "4", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    # 6 songs of 16 notes + 10 drum notes
    assert re.search(rf"^{re.escape(str(out))}: 12 files: 7 ok, 2 skipped, 3 failed; 106 notes; "
                     r"12 prepared now in \d+\.\d s, \d+\.\d\d files/s$", printed, re.M), printed
    assert f"see {out / 'manifest.jsonl'} for each file's status and reason" in printed
    assert "folder: 12 files, 0 done earlier, 12 to prepare" in printed
    assert main(args) == 0
    again = capsys.readouterr().out
    assert f"{out}: 12 files: 7 ok, 2 skipped, 3 failed; 106 notes; 0 prepared now in 0.0 s\n" in again
    assert "not prepared yet" not in again


def test_cli_splits_and_limit_say_what_is_left(tmp_path, capsys):
    src, out = small_tree(tmp_path / "src"), tmp_path / "out"
    assert main(["prepare", "folder", str(src), str(out), "--min-notes", "4", "--no-progress", "--limit", "3"]) == 0
    printed = capsys.readouterr().out
    assert "folder: 3 files of 12, 0 done earlier, 3 to prepare" in printed
    assert (f"{out}: 9 files of the dataset are not prepared yet; the index files list what is done. "
            "Run once more without --limit to complete") in printed
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3
    assert main(["prepare", "folder", str(src), str(out), "--min-notes", "4", "--no-progress",
                 "--splits", "valid", "test"]) == 0
    assert "without --splits to complete" in capsys.readouterr().out


def test_cli_errors_exit_2_naming_the_problem(tmp_path, capsys):
    missing = tmp_path / "no-such-dataset"
    assert main(["prepare", "lmd", str(missing), str(tmp_path / "out"), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"mmt prepare: error: {missing}: no such dataset folder\n"
    src = small_tree(tmp_path / "src")
    assert main(["prepare", "folder", str(src), str(tmp_path / "out"), "--shard", "3/2"]) == 2
    assert "--shard I/N needs 1 <= I <= N, got '3/2'" in capsys.readouterr().err
    assert main(["prepare", "folder", str(src), str(tmp_path / "o2"), "--no-progress", "--min-notes", "4"]) == 0
    capsys.readouterr()
    assert main(["prepare", "folder", str(src), str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "min_notes: 4 there, 16 now" in capsys.readouterr().err


def slow_tree(src: Path) -> Path:
    """40 copies of a file of 1600 notes (each takes a real read: tens of ms) and the bad files: 46 files."""
    first = write_midi_file(src / "f0" / "song00.mid", [(p, False, [(b / 4, 40 + (b * 7 + p) % 40, 0.25)
                                                                    for b in range(800)]) for p in (0, 40)])
    for i in range(1, 40):
        (src / f"f{i // 10}").mkdir(exist_ok=True)
        shutil.copyfile(first, src / f"f{i // 10}" / f"song{i:02d}.mid")
    write_bad_files(src / "bad")
    return src


def start_and_kill(command: list[str], journal: Path, before_kill=lambda process: None) -> int:
    """Start `command`, SIGKILL it once `journal` has 3 lines (calling `before_kill` first); returns the lines."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    lines = 0
    while time.monotonic() < deadline and process.poll() is None:
        lines = journal.read_bytes().count(b"\n") if journal.is_file() else 0
        if lines >= 3:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed"
    before_kill(process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    return journal.read_bytes().count(b"\n")


def rerun_completes_as_an_uninterrupted_run(command: list[str], src: Path, killed: Path, done: int) -> None:
    assert 3 <= done < 46 and not (killed / "manifest.jsonl").exists()
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert re.search(rf"46 files, {done} done earlier, {46 - done} to prepare", rerun.stdout), rerun.stdout
    direct = killed.parent / "direct"
    summary = prepare_dataset("folder", src, direct, filters=Filters(min_notes=4), progress=False, log=None)
    assert summary.counts == {"ok": 41, "skipped": 2, "failed": 3}
    expected = output_files(direct)
    assert len(expected) == 2 * 41 + 7  # notes, meters, manifest, 3 split lists, encoding.json, prepare.json, journal
    assert output_files(killed) == expected


def prepare_command(src: Path, out: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "mmt", "prepare", "folder", str(src), str(out), "-j", str(jobs), "--no-progress",
            "--min-notes", "4"]


def test_a_run_killed_part_way_resumes_to_the_outputs_of_an_uninterrupted_run(tmp_path):
    """SIGKILL a `python -m mmt prepare` once its journal has lines; the rerun completes it exactly."""
    src, killed = slow_tree(tmp_path / "src"), tmp_path / "killed"
    command = prepare_command(src, killed, jobs=1)
    done = start_and_kill(command, killed / "records" / "all.jsonl")
    rerun_completes_as_an_uninterrupted_run(command, src, killed, done)


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killing_the_main_process_alone_ends_its_workers_and_frees_the_folder(tmp_path):
    """`kill -9` of the main `mmt prepare -j 2` only: its workers exit, and a rerun is not locked out."""
    src, killed = slow_tree(tmp_path / "src"), tmp_path / "killed"
    command = prepare_command(src, killed, jobs=2)
    workers = []
    done = start_and_kill(command, killed / "records" / "all.jsonl",
                          before_kill=lambda process: workers.extend(children(process.pid)))
    try:
        assert len(workers) == 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(map(running, workers)):
            time.sleep(0.01)
        assert not any(map(running, workers)), "the workers outlived the main process"
    finally:
        for pid in filter(running, workers):
            os.kill(pid, signal.SIGKILL)  # leave no orphan behind when this test fails
    rerun_completes_as_an_uninterrupted_run(command, src, killed, done)

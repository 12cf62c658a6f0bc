"""The shared pipeline: literal outputs, resuming, -j, shards, --splits/--limit, settings."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from prep_trees import (FILTERS, PIECE, PIECE_NOTES, copy_tree_into, output_files, stats, write_bad_files,
                        write_midi_file, write_song)

from mmt.data_prep import Filters, PrepareError, list_sources, prepare_dataset
from mmt.data_prep.pipeline import clean_notes, select_sources
from mmt.data_prep.sources import Source
from mmt import Encoding


def run(src, out, dataset="folder", filters=FILTERS, **kwargs):
    return prepare_dataset(dataset, src, out, filters=filters, progress=False, log=None, **kwargs)


def mixed_tree(root: Path, n_songs: int = 12) -> Path:
    """`n_songs` good songs in two folders, the hand-written piece and every kind of bad file."""
    for i in range(n_songs):
        write_song(root / f"set{i % 2}" / f"song{i}.mid", i)
    write_midi_file(root / "piece.mid", PIECE)
    write_bad_files(root / "bad")
    return root


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- one file, literally
def test_hand_written_midi_gives_literal_notes(tmp_path):
    write_midi_file(tmp_path / "src" / "piece.mid", PIECE)
    out = tmp_path / "out"
    summary = run(tmp_path / "src", out)
    notes = np.load(out / "notes" / "piece.mid.npy")
    assert notes.dtype == np.int64
    assert notes.tolist() == PIECE_NOTES  # duplicate C4 dropped (longer kept), 0-beat note -> 1 tick
    assert manifest_lines(out) == [{"id": "piece.mid", "source": "piece.mid", "split": "train", "status": "ok",
                                    "reason": "", "notes": 9, "beats": 5,
                                    "instruments": ["piano", "violin", "drums"]}]
    assert (out / "train.txt").read_text() == "piece.mid\n"
    assert (out / "valid.txt").read_text() == (out / "test.txt").read_text() == ""
    assert Encoding.load(out / "encoding.json") == Encoding()
    # the meter beside the notes: no time signature in the file (4/4 bars), 500,000 us a beat
    assert json.loads((out / "meters" / "piece.mid.json").read_text()) == {"time_signatures": [],
                                                                          "tempos": [[0.0, 120.0]],
                                                                          "pickup": 0.0}
    assert json.loads((out / "prepare.json").read_text()) == {
        "dataset": "folder", "resolution": 12, "min_notes": 4, "min_beats": 4, "max_beats": 10000,
        "max_file_mb": 32.0, "timeout_s": 300.0}
    assert (summary.counts, summary.total, summary.notes, summary.processed, summary.missing, summary.complete) == (
        {"ok": 1, "skipped": 0, "failed": 0}, 1, 9, 1, 0, True)


def test_clean_notes_drops_duplicates_keeping_the_longest_and_sorts():
    notes = np.array([[1, 0, 60, 6, 0], [0, 0, 62, 3, 0], [1, 0, 60, 12, 0], [1, 0, 60, 3, 40], [0, 0, 62, 3, 0]])
    assert clean_notes(notes).tolist() == [[0, 0, 62, 3, 0], [1, 0, 60, 3, 40], [1, 0, 60, 12, 0]]


@pytest.mark.parametrize("seed", range(5))
def test_clean_notes_keeps_the_longest_of_each_onset_pitch_and_program_in_sorted_order(seed):
    rng = np.random.default_rng(seed)
    notes = np.column_stack([rng.integers(0, 3, 400), rng.integers(0, 2, 400), rng.integers(60, 63, 400),
                             rng.integers(1, 6, 400), rng.choice([0, 40, 128], 400)])
    longest = {}
    for beat, position, pitch, duration, program in notes.tolist():
        key = (beat, position, pitch, program)
        longest[key] = max(longest.get(key, 0), duration)
    expected = sorted((b, p, pitch, d, program) for (b, p, pitch, program), d in longest.items())
    assert [tuple(row) for row in clean_notes(notes).tolist()] == expected


def test_clean_notes_sorts_values_too_wide_to_pack_into_one_key():
    """Beats and durations over 2**31 do not fit one packed sort key: the rows still sort by every column."""
    notes = np.array([[2**40, 0, 60, 2**33, 0], [2**40, 0, 60, 5, 0], [1, 0, 62, 3, 0], [1, 0, 62, 3, 0]])
    assert clean_notes(notes).tolist() == [[1, 0, 62, 3, 0], [2**40, 0, 60, 2**33, 0]]


def test_too_large_and_too_long_files_are_skipped_with_reasons(tmp_path):
    write_song(tmp_path / "src" / "long.mid", 1, n_notes=40)  # 20 beats
    write_song(tmp_path / "src" / "ok.mid", 2)
    out = tmp_path / "out"
    run(tmp_path / "src", out, filters=Filters(min_notes=4, min_beats=4, max_beats=10))
    assert [(r["source"], r["status"], r["reason"]) for r in manifest_lines(out)] == [
        ("long.mid", "skipped", "too long (20 > 10 beats)"), ("ok.mid", "ok", "")]
    out2 = tmp_path / "out2"
    size = (tmp_path / "src" / "ok.mid").stat().st_size
    run(tmp_path / "src", out2, filters=Filters(min_notes=4, min_beats=4, max_file_mb=size / 2**20 / 2))
    assert manifest_lines(out2)[1]["reason"] == f"file too large (0.0 MiB > {size / 2**20 / 2:g} MiB)"


def odd_tree(root: Path) -> Path:
    """A good song, one with a name that is not UTF-8, a FIFO, `/dev/zero` and a folder of one song."""
    write_song(root / "good.mid", 1)
    write_song(Path(os.fsdecode(bytes(root) + b"/caf\xe9.mid")), 2)  # Latin-1 "café": not UTF-8
    os.mkfifo(root / "pipe.mid")
    (root / "zero.mid").symlink_to("/dev/zero")
    write_song(root / "locked" / "inner.mid", 3)
    return root


def deny_listing(monkeypatch, folder: Path) -> None:
    """Make `folder` unlistable as a `chmod 000` folder is for a user other than root."""
    real = os.scandir

    def scandir(path="."):
        if Path(path) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.parametrize("dataset", ["folder", "lmd"])
def test_odd_names_fifos_devices_and_unlistable_folders_are_recorded_and_the_run_goes_on(
        tmp_path, monkeypatch, dataset):
    src, out = odd_tree(tmp_path / "src"), tmp_path / "out"
    deny_listing(monkeypatch, src / "locked")
    summary = run(src, out, dataset=dataset)
    assert summary.counts == {"ok": 2, "skipped": 0, "failed": 3}
    assert [(r["source"], r["status"], r["reason"]) for r in manifest_lines(out)] == [
        ("caf\udce9.mid", "ok", ""),
        ("good.mid", "ok", ""),
        ("locked", "failed", "cannot list this folder (Permission denied); its files are not prepared"),
        ("pipe.mid", "failed", "not a regular file (a FIFO)"),
        ("zero.mid", "failed", "not a regular file (a character device)"),
    ]
    monkeypatch.undo()  # the folder can be listed again: its file is prepared, the folder's line goes
    assert run(src, out, dataset=dataset).processed == 1
    assert [(r["source"], r["status"]) for r in manifest_lines(out)] == [
        ("caf\udce9.mid", "ok"), ("good.mid", "ok"), ("locked/inner.mid", "ok"), ("pipe.mid", "failed"),
        ("zero.mid", "failed")]


def test_an_unlistable_dataset_folder_is_an_error_naming_it(tmp_path, monkeypatch):
    src = odd_tree(tmp_path / "src")
    deny_listing(monkeypatch, src)
    with pytest.raises(PrepareError, match=f"^{src}: cannot list the dataset folder \\(Permission denied\\)$"):
        run(src, tmp_path / "out")


# ---------------------------------------------------------------------- resuming
def test_second_run_does_no_work_and_changes_no_file(tmp_path):
    src = mixed_tree(tmp_path / "src")
    out = tmp_path / "out"
    first = run(src, out)
    assert first.processed == 19 and first.counts == {"ok": 14, "skipped": 2, "failed": 3}
    before_stats, before_bytes = stats(out), output_files(out, exclude=())
    second = run(src, out)
    assert (second.processed, second.counts, second.notes, second.complete) == (0, first.counts, first.notes, True)
    lock = f"{os.getpid()} {socket.gethostname()}\n".encode()
    assert before_bytes.pop(".lock") == output_files(out, exclude=()).pop(".lock") == lock  # each run's holder
    assert {k: v for k, v in stats(out).items() if k != ".lock"} == {k: v for k, v in before_stats.items()
                                                                     if k != ".lock"}
    assert output_files(out) == before_bytes


def test_a_lost_notes_file_or_a_cut_journal_line_is_redone(tmp_path):
    src = mixed_tree(tmp_path / "src", n_songs=4)
    out = tmp_path / "out"
    run(src, out)
    expected = output_files(out)
    (out / "notes" / "set0__song0.mid.npy").unlink()
    with open(out / "records" / "all.jsonl", "a") as journal:
        journal.write('{"id": "set1__song1.mid", "source": "set1/so')  # a line cut by a kill
    (out / "notes" / ".set1__song1.mid.npy.abc.tmp.npy").write_bytes(b"half")  # an atomic write cut short
    assert run(src, out).processed == 1
    assert output_files(out) == expected


def test_a_folder_prepared_before_meters_were_kept_gets_them_on_the_next_run(tmp_path):
    src = mixed_tree(tmp_path / "src", n_songs=4)
    out = tmp_path / "out"
    first = run(src, out)
    expected = output_files(out)
    for path in (out / "meters").iterdir():
        path.unlink()
    assert run(src, out).processed == first.counts["ok"]  # the ok files are read again, the others not
    assert output_files(out) == expected


def test_a_locked_out_is_refused(tmp_path):
    write_song(tmp_path / "src" / "a.mid", 1)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PrepareError, match="another `mmt prepare` is writing this folder"):
            run(tmp_path / "src", out)


@pytest.mark.parametrize("change, message", [
    (dict(filters=Filters(min_notes=5, min_beats=4)), "min_notes: 4 there, 5 now"),
    (dict(dataset="lmd"), "dataset: 'folder' there, 'lmd' now"),
])
def test_settings_mismatch_names_the_setting(tmp_path, change, message):
    write_song(tmp_path / "src" / "0123456789abcdef0123456789abcdef.mid", 1)
    out = tmp_path / "out"
    run(tmp_path / "src", out)
    with pytest.raises(PrepareError, match=f"prepared with other settings \\({message}\\); use another OUT"):
        run(tmp_path / "src", out, **change)


def test_another_encoding_resolution_is_refused(tmp_path):
    write_song(tmp_path / "src" / "a.mid", 1)
    out = tmp_path / "out"
    run(tmp_path / "src", out)
    with pytest.raises(PrepareError, match="resolution: 12 there, 24 now"):
        run(tmp_path / "src", out, encoding=Encoding(resolution=24))


# ---------------------------------------------------------------------- -j, shards
def test_two_jobs_give_the_same_outputs_as_one(tmp_path):
    src = mixed_tree(tmp_path / "src")
    one, two = run(src, tmp_path / "j1", jobs=1), run(src, tmp_path / "j2", jobs=2)
    assert (two.processed, two.counts) == (one.processed, one.counts)
    assert output_files(tmp_path / "j2") == output_files(tmp_path / "j1")


def test_a_worker_killed_by_the_os_fails_its_file_and_the_run_goes_on(tmp_path, monkeypatch):
    import os
    import signal
    import threading

    from mmt.data_prep import pipeline

    read = pipeline.read_notes

    def read_or_die(path, resolution, piece=0):
        if "crash" in Path(path).name:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OS kills a worker out of memory
        return read(path, resolution, piece)

    monkeypatch.setattr(pipeline, "read_notes", read_or_die)  # forked workers inherit it
    monkeypatch.setattr(pipeline, "TASKS_PER_POOL", 2)  # renew pools often, too
    src = tmp_path / "src"
    for i in range(9):
        write_song(src / f"song{i}.mid", i)
    write_song(src / "crash.mid", 20)
    out = tmp_path / "out"
    summary = []
    worker = threading.Thread(target=lambda: summary.append(run(src, out, jobs=2)), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the run hung after a worker died"
    assert summary[0].counts == {"ok": 9, "skipped": 0, "failed": 1}
    records = {r["source"]: (r["status"], r["reason"]) for r in manifest_lines(out)}
    assert records["crash.mid"] == ("failed", pipeline.WORKER_DIED)
    assert {records[f"song{i}.mid"] for i in range(9)} == {("ok", "")}
    assert sorted(p.name for p in (out / "notes").iterdir()) == sorted(f"{r['id']}.npy" for r in manifest_lines(out)
                                                                       if r["status"] == "ok")


def test_shards_merge_into_the_outputs_of_one_run(tmp_path):
    src = mixed_tree(tmp_path / "src")
    whole = run(src, tmp_path / "whole")
    first = run(src, tmp_path / "s1", shard=(0, 2))
    second = run(src, tmp_path / "s2", shard=(1, 2))
    assert first.processed + second.processed == whole.processed == 19
    assert min(first.processed, second.processed) > 0
    assert (first.missing, second.missing) == (second.processed, first.processed)
    assert not first.complete and not second.complete
    merged = tmp_path / "merged"
    copy_tree_into(tmp_path / "s1", merged)
    copy_tree_into(tmp_path / "s2", merged)
    final = run(src, merged)
    assert (final.processed, final.counts, final.complete) == (0, whole.counts, True)
    # records/ holds each run's journal (shard-1-of-2.jsonl, ... here, all.jsonl there)
    assert output_files(merged, exclude=(".lock", "records")) == output_files(tmp_path / "whole",
                                                                               exclude=(".lock", "records"))
    assert sorted(p.name for p in (merged / "records").iterdir()) == ["shard-1-of-2.jsonl", "shard-2-of-2.jsonl"]


# ---------------------------------------------------------------------- --splits, --limit
def test_select_sources():
    listing = [Source(rel, Path(rel), rel, split) for rel, split in
               [("a", "train"), ("b", "test"), ("c", "valid"), ("d", "train"), ("e", "test")]]
    assert [s.rel for s in select_sources(listing, splits=["test", "valid"])] == ["b", "c", "e"]
    assert [s.rel for s in select_sources(listing, splits=["test"], limit=1)] == ["b"]
    assert [s.rel for s in select_sources(listing, limit=2)] == ["a", "b"]
    assert [s.rel for s in select_sources(listing, limit=0)] == []
    assert select_sources(listing) == listing
    with pytest.raises(PrepareError, match="unknown split\\(s\\) dev"):
        select_sources(listing, splits=["dev", "test"])
    with pytest.raises(PrepareError, match="--limit must be >= 0"):
        select_sources(listing, limit=-1)


def test_splits_then_limit_then_a_full_run_complete_the_same_out(tmp_path):
    src = tmp_path / "src"
    for i in range(30):  # song3, song7: test; song8, song19, song27: valid (see test_hash_split_literals)
        write_song(src / f"song{i}.mid", i)
    direct = run(src, tmp_path / "direct")
    out = tmp_path / "out"
    part = run(src, out, splits=["valid", "test"])
    listing = list_sources("folder", src)
    held_out = [s.rel for s in listing if s.split != "train"]
    assert part.processed == part.total == len(held_out)
    assert part.missing == 30 - len(held_out) and not part.complete
    assert [r["source"] for r in manifest_lines(out)] == held_out
    assert (out / "train.txt").read_text() == ""
    assert (out / "valid.txt").read_text() == (tmp_path / "direct" / "valid.txt").read_text()
    assert (out / "test.txt").read_text() == (tmp_path / "direct" / "test.txt").read_text()
    assert {"song3.mid", "song7.mid"} <= set((out / "test.txt").read_text().split())
    limited = run(src, out, limit=5)  # the first 5 of the listing in path order
    assert [s.rel for s in listing[:5]] == ["song0.mid", "song1.mid", "song10.mid", "song11.mid", "song12.mid"]
    assert limited.total == 5 and limited.processed == 5 - sum(s.split != "train" for s in listing[:5])
    rest = run(src, out)
    assert rest.processed == 30 - part.processed - limited.processed and rest.complete
    assert output_files(out) == output_files(tmp_path / "direct")


def test_an_out_of_an_older_program_table_is_updated_and_one_of_another_resolution_refused(tmp_path):
    import json

    from mmt.data_prep.filters import PrepareError
    from mmt import Encoding

    src = tmp_path / "src"
    for i in range(3):
        write_song(src / f"song{i}.mid", i)
    out = tmp_path / "out"
    run(src, out)
    older = json.loads((out / "encoding.json").read_text())
    older["program_instrument"][110] = None  # before GM 110 (fiddle) played the violin
    (out / "encoding.json").write_text(json.dumps(older))
    lines = []
    summary = prepare_dataset("folder", src, out, filters=FILTERS, progress=False, log=lines.append)
    assert summary.processed == 0 and summary.counts["ok"] == 3
    assert any("encoding.json: updated to this encoding" in line for line in lines)
    assert Encoding.load(out / "encoding.json") == Encoding()
    with pytest.raises(PrepareError, match=r"was prepared with other settings \(resolution: 12 there, 24 now\)"):
        run(src, out, encoding=Encoding(resolution=24))

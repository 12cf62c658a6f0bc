"""Fixture trees for the data preparation tests: small MIDI/MusicXML files written in code.

Every helper writes into a folder it is given (a pytest `tmp_path`); nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

from mmt.data_prep import Filters
from tests.factories import write_midi_file  # noqa: F401 (the trees are written with the tests' one writer)

# Small filters so that small fixture pieces pass: at least 4 notes and 4 beats.
FILTERS = Filters(min_notes=4, min_beats=4)

# (program, is_drum, [(beat, pitch, length in beats), ...]) per track.
# The second piano track repeats the first note shorter (a duplicate: the longer stays); the
# 0-beat note at beat 3 is a zero duration (becomes 1 tick).
PIECE = [
    (0, False, [(0, 60, 1), (1, 64, 0.5), (1.5, 67, 2), (3, 62, 0), (4, 72, 1)]),
    (0, False, [(0, 60, 0.5)]),
    (40, False, [(0, 76, 0.25), (2 + 1 / 3, 79, 1 / 3)]),
    (0, True, [(0, 36, 0.25), (1, 38, 0.25)]),
]
# PIECE as prepared at 12 ticks per beat: (beat, position, pitch, duration, program), sorted.
PIECE_NOTES = [
    [0, 0, 36, 3, 128],
    [0, 0, 60, 12, 0],
    [0, 0, 76, 3, 40],
    [1, 0, 38, 3, 128],
    [1, 0, 64, 6, 0],
    [1, 6, 67, 24, 0],
    [2, 4, 79, 4, 40],
    [3, 0, 62, 1, 0],
    [4, 0, 72, 12, 0],
]


def melody(seed: int, n_notes: int = 8, program: int = 0, step: float = 0.5) -> list:
    """One track of `n_notes` notes, `step` beats apart, pitches from `seed`."""
    rng = np.random.default_rng(seed)
    pitches = rng.integers(48, 84, size=n_notes)
    return [(program, False, [(i * step, int(p), step) for i, p in enumerate(pitches)])]


def write_song(path: Path, seed: int, n_notes: int = 8) -> Path:
    """A valid small song (`n_notes` half-beat notes: 4 beats for 8 notes)."""
    return write_midi_file(path, melody(seed, n_notes))


def write_bad_files(folder: Path) -> dict[str, str]:
    """A corrupt, an empty, a truncated, a drums-only, a too-short and a too-sparse file.

    Returns {file name: the manifest reason expected for it ("" for an ok file)}.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.mid").write_bytes(np.random.default_rng(0).bytes(300))
    (folder / "empty.mid").write_bytes(b"")
    whole = write_song(folder / "whole.tmp", 99).read_bytes()
    (folder / "whole.tmp").unlink()
    (folder / "truncated.mid").write_bytes(whole[: len(whole) // 2])
    write_midi_file(folder / "drums.mid", [(0, True, [(b / 2, 36 + b % 3, 0.25) for b in range(10)])])
    write_midi_file(folder / "short.mid", [(0, False, [(b / 2, 60 + b, 0.5) for b in range(5)])])
    write_midi_file(folder / "sparse.mid", [(0, False, [(0, 60, 4), (4, 62, 4)])])
    return {
        "corrupt.mid": "cannot read (not a MIDI file (no MThd header))",
        "empty.mid": "empty file",
        "truncated.mid": "cannot read (malformed MIDI data (Invalid chunk length 79 (remaining bytes after header: 19)))",
        "drums.mid": "",
        "short.mid": "too short (3 < 4 beats)",
        "sparse.mid": "too few notes (2 < 4)",
    }


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def output_files(out: Path, exclude: tuple[str, ...] = (".lock",)) -> dict[str, bytes]:
    """{relative path: bytes} of every file under `out` but `exclude` (names or top folders)."""
    files = {}
    for path in sorted(Path(out).rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel not in exclude and rel.split("/")[0] not in exclude:
            files[rel] = path.read_bytes()
    return files


def stats(out: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (mtime_ns, size)} of every file under `out`."""
    return {p.relative_to(out).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(Path(out).rglob("*")) if p.is_file()}


def copy_tree_into(src: Path, dst: Path) -> None:
    """Copy every file of `src` into `dst` (merging folders), as a user merges shards."""
    for path in Path(src).rglob("*"):
        if path.is_file():
            target = Path(dst) / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def copy_corpus_files(rels: list[str], dst: Path) -> None:
    """Copy music21 corpus files (paths relative to the corpus root) into `dst`, keeping their paths."""
    from mmt.data_prep.music21_corpus import corpus_root

    root = corpus_root()
    for rel in rels:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)


__all__ = [
    "FILTERS", "PIECE", "PIECE_NOTES", "copy_corpus_files", "copy_tree_into", "md5_of", "melody",
    "output_files", "stats", "write_bad_files", "write_midi_file", "write_song",
]

"""Notes that this tree's MIDI reader reads differently from another checkout's, and why.

Writes two sets of MIDI files in a temp folder: `--music21` pieces of music21's bundled
corpus exported to MIDI by music21 itself (`stream.write("midi")`, a real writer's files),
and the Lakh-shaped synthetic tree of `benchmarks/prepare.py` (`--lakh` files; 3% of its
notes are zero-length notes written note-off first, as pretty_midi writes them). Reads every
file with `mmt.midi.read_midi_notes` here and in `--old` (a checkout of the reader to compare
with, e.g. `git worktree add /tmp/old ddb7e5e`; read in a subprocess), and compares the
notes of each file as multisets of (onset, pitch, duration, program) in ticks. A note of one
reader that the other lacks is matched by (onset, pitch, program) where it can be:

- `duration_changed`: both read a note there, with other durations;
- `only_old`: the old reader's note, which this one dropped; `only_old_zero_length` those of
  them that lasted 0 ticks (written note-off then note-on at one tick), `only_old_at_track_end`
  those that ended at the last tick of the file (left sounding, closed at the end);
- `only_new`: a note only this reader reads.

Prints JSON. Usage: python benchmarks/reader_diff.py --old /tmp/old [--music21 300] [--lakh 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
_OLD_READER = """
import sys, numpy as np
from mmt.midi import read_midi_notes
arrays = {}
for i, path in enumerate(open(sys.argv[1]).read().splitlines()):
    try:
        arrays[str(i)] = read_midi_notes(path)[1]
    except Exception:
        pass
np.savez(sys.argv[2], **arrays)
"""


def export_music21(folder: Path, count: int) -> list[Path]:
    """The first `count` pieces of music21's corpus (sorted paths, first tune of a file) as MIDI files."""
    import music21
    from tqdm import tqdm

    folder.mkdir(parents=True)
    written = []
    for path in tqdm(sorted(music21.corpus.getPaths())[:count], desc="music21 -> MIDI", file=sys.stderr):
        target = folder / f"{len(written):04d}.mid"
        try:
            parsed = music21.converter.parse(str(path))
            if isinstance(parsed, music21.stream.Opus):
                parsed = parsed.scores[0]
            parsed.write("midi", fp=str(target))
            written.append(target)
        except Exception:  # a piece music21 cannot export is not a reader's difference
            target.unlink(missing_ok=True)
    return written


def lakh_tree(folder: Path, count: int, seed: int) -> list[Path]:
    sys.path.insert(0, str(HERE))
    from prepare import build_tree

    build_tree(folder, count, seed)
    return sorted(folder.rglob("*.mid"))


def read_new(paths: list[Path]) -> dict[int, np.ndarray]:
    from mmt.midi import read_midi_notes

    arrays = {}
    for i, path in enumerate(paths):
        try:
            arrays[i] = read_midi_notes(path)[1]
        except Exception:
            pass
    return arrays


def read_old(paths: list[Path], old: Path, tmp: Path) -> dict[int, np.ndarray]:
    listing, out = tmp / "paths.txt", tmp / "old.npz"
    listing.write_text("\n".join(map(str, paths)) + "\n")
    env = {**os.environ, "PYTHONPATH": str(old)}
    subprocess.run([sys.executable, "-c", _OLD_READER, str(listing), str(out)], cwd=old, env=env, check=True)
    with np.load(out) as data:
        return {int(key): data[key] for key in data.files}


def compare(old: dict[int, np.ndarray], new: dict[int, np.ndarray], n_files: int) -> dict:
    counts = collections.Counter()
    for i in range(n_files):
        if (i in old) != (i in new):
            counts["files_read_by_one_reader_only"] += 1
            continue
        if i not in old:
            continue
        a, b = (collections.Counter(map(tuple, x.tolist())) for x in (old[i], new[i]))
        counts["files"] += 1
        counts["notes_old"] += sum(a.values())
        counts["notes_new"] += sum(b.values())
        only_old, only_new = a - b, b - a
        if not only_old and not only_new:
            continue
        counts["files_with_a_difference"] += 1
        last_tick = max((n[0] + n[2] for n in a), default=0)
        unmatched_new = collections.Counter((n[0], n[1], n[3]) for n in only_new.elements())
        for note in only_old.elements():
            key = (note[0], note[1], note[3])
            if unmatched_new[key] > 0:
                unmatched_new[key] -= 1
                counts["duration_changed"] += 1
                continue
            counts["only_old"] += 1
            counts["only_old_zero_length"] += note[2] == 0
            counts["only_old_at_track_end"] += note[2] > 0 and note[0] + note[2] == last_tick
        counts["only_new"] += sum(unmatched_new.values())
    return dict(counts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="a checkout whose mmt/midi.py to compare with")
    parser.add_argument("--music21", type=int, default=300, help="corpus pieces to export to MIDI")
    parser.add_argument("--lakh", type=int, default=3000, help="synthetic Lakh-shaped files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = {"old": str(args.old)}
    with tempfile.TemporaryDirectory(prefix="mmt-reader-diff-") as tmp:
        for name, paths in (("music21", export_music21(Path(tmp) / "music21", args.music21)),
                            ("lakh", lakh_tree(Path(tmp) / "lakh", args.lakh, args.seed))):
            result[name] = {"written": len(paths),
                            **compare(read_old(paths, args.old, Path(tmp)), read_new(paths), len(paths))}
            print(f"{name}: {json.dumps(result[name])}", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

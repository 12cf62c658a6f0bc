"""Reading MIDI files with symusic: its parser and its note pairing, straight to arrays.

symusic (`symusic.Score`) parses a file in C++ and pairs note-ons with note-offs by its own
rules: a note-off ends the oldest sounding note of its key on its channel (first in, first
out); a note-off that finds no note sounding does nothing; a note still sounding when its
track ends is dropped. So a zero-length note written as note-off then note-on at one tick
(pretty_midi's way) is lost, and so are the notes of a drum track that sends no note-offs.
`docs/datasets.md` counts what these rules change on real files.

What this module adds on top: the header checks that name what is wrong with a file symusic
would read as empty (type 2, SMPTE time division), the key signatures as (root, mode), and
the arrays that `mmt.io` and preparation read.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmt.constants import DRUM_PROGRAM
from mmt.errors import MMTError
from mmt.meter import Meter


class MidiError(MMTError, ValueError):
    """The bytes are not a MIDI file this reader can read; the message says what is wrong."""


@dataclass
class MidiTrack:
    """The notes of one program on one channel of one MIDI track.

    `notes` is an int64 array (N x 4): onset tick, pitch, duration ticks, velocity, sorted by
    (onset, pitch, duration, velocity).
    """

    program: int
    is_drum: bool
    name: str | None
    notes: np.ndarray


@dataclass
class MidiPiece:
    """What `read_midi` returns: notes per track and the tempo, meter and key maps (ticks)."""

    resolution: int                                   # ticks per quarter note
    tracks: list[MidiTrack] = field(default_factory=list)
    tempos: list[tuple[int, float]] = field(default_factory=list)               # (tick, qpm)
    time_signatures: list[tuple[int, int, int]] = field(default_factory=list)   # (tick, num, den)
    key_signatures: list[tuple[int, int, str]] = field(default_factory=list)    # (tick, root 0-11, mode)


def read_midi(path: str | os.PathLike) -> MidiPiece:
    """Read a MIDI file's notes (ticks), tempos, time and key signatures.

    Raises `MidiError` (what is wrong, without the path) or OSError.
    """
    return parse_midi(Path(path).read_bytes())


def parse_midi(data: bytes) -> MidiPiece:
    """`read_midi` of a file's bytes: one track per symusic track that has notes."""
    score = _score(data)
    piece = MidiPiece(resolution=int(score.ticks_per_quarter))
    for track in score.tracks:
        notes = _columns(track, "velocity")
        if len(notes):
            piece.tracks.append(MidiTrack(int(track.program), bool(track.is_drum), track.name or None,
                                          notes[np.lexsort(notes.T[::-1])]))
    piece.tempos = _tempos(score)
    piece.time_signatures = _time_signatures(score)
    piece.key_signatures = [(int(k.time), _key_root(int(k.key), int(k.tonality)), "minor" if k.tonality else "major")
                            for k in score.key_signatures]
    return piece


def read_midi_notes(path: str | os.PathLike) -> tuple[int, np.ndarray, Meter]:
    """A MIDI file's ticks per beat, notes (N x 4 int64: onset, pitch, duration ticks, program or
    128 for drums; rows in no particular order) and meter (time signatures and tempos).

    The notes of `read_midi` without tracks, names, key map or sorting: what preparation needs.
    """
    score = _score(Path(path).read_bytes())
    rows = [_columns(track, DRUM_PROGRAM if track.is_drum else int(track.program)) for track in score.tracks]
    notes = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64)
    resolution = int(score.ticks_per_quarter)
    return resolution, notes, Meter.from_ticks(_time_signatures(score), _tempos(score), resolution)


def _score(data: bytes):
    """symusic's `Score` of a file's bytes, or `MidiError` saying what is wrong."""
    import symusic

    _check_header(data)
    try:
        return symusic.Score.from_midi(data)
    except Exception as error:  # symusic raises RuntimeError("MiniMidi: <reason>: iostream error")
        reason = str(error).removeprefix("MiniMidi: ").removesuffix(": iostream error")
        raise MidiError(f"malformed MIDI data ({reason})") from error


def _check_header(data: bytes) -> None:
    """`MidiError` for what symusic would misread or describe poorly: no header, type 2, SMPTE time."""
    if len(data) < 14 or data[:4] != b"MThd":
        raise MidiError("not a MIDI file (no MThd header)")
    fmt, _, division = struct.unpack(">HHH", data[8:14])
    if fmt == 2:
        raise MidiError("type 2 MIDI file (independent sequences) is not supported")
    if fmt > 2:
        raise MidiError(f"unknown MIDI file type {fmt}")
    if division & 0x8000 or division == 0:
        raise MidiError("SMPTE time division (frames per second, not ticks per beat) is not supported")


def _columns(track, last: str | int) -> np.ndarray:
    """A symusic track's notes as int64 rows (onset, pitch, duration, `last`): a note column's name or a constant."""
    notes = track.notes.numpy()
    rows = np.empty((len(notes["time"]), 4), dtype=np.int64)
    rows[:, 0], rows[:, 1], rows[:, 2] = notes["time"], notes["pitch"], notes["duration"]
    rows[:, 3] = notes[last] if isinstance(last, str) else last
    return rows


def _tempos(score) -> list[tuple[int, float]]:
    return [(int(t.time), float(t.qpm)) for t in score.tempos]


def _time_signatures(score) -> list[tuple[int, int, int]]:
    return [(int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures]


def _key_root(sharps: int, minor: int) -> int:
    """Pitch class of a key's tonic from its sharps (negative: flats): C major 0, A minor 9."""
    return (7 * sharps + (9 if minor else 0)) % 12

"""The symusic MIDI reader (`mmt.midi`) against the mido reader it replaced, note for note."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
from midi_reference import read_midi_reference

from conftest import write_pretty_midi
from mmt import MusicReadError, read_music
from mmt.io import read_notes
from mmt.midi import MidiError, parse_midi, read_midi
from tests.data_prep.prep_trees import PIECE, melody, write_bad_files, write_midi_file


def on(note: int, channel: int = 0, velocity: int = 80) -> mido.Message:
    return mido.Message("note_on", note=note, channel=channel, velocity=velocity)


def off(note: int, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=note, channel=channel)


def program(number: int, channel: int = 0) -> mido.Message:
    return mido.Message("program_change", program=number, channel=channel)


def write_events(path: Path, tracks: list[list[tuple[int, mido.Message]]], midi_type: int = 1,
                 ticks: int = 480) -> Path:
    """A MIDI file of (tick, message) lists, one per track, in the order given."""
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks)
    for events in tracks:
        track, now = mido.MidiTrack(), 0
        for tick, message in events:
            track.append(message.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(str(path))
    return path


def tempo(bpm: float) -> mido.MetaMessage:
    return mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))


def meter(numerator: int, denominator: int) -> mido.MetaMessage:
    return mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)


def key(name: str) -> mido.MetaMessage:
    return mido.MetaMessage("key_signature", key=name)


END = mido.MetaMessage("end_of_track")

# Hand-made awkward files: {name: tracks of (tick, message)}.
NASTY = {
    "zero_length_on_then_off": [[(0, program(5)), (0, on(60)), (0, off(60)), (100, on(62)), (200, off(62))]],
    "zero_length_off_then_on": [[(0, off(60)), (0, on(60)), (100, on(62)), (200, off(62)), (200, off(62)),
                                 (200, on(62))]],
    "overlapping_same_pitch": [[(0, on(60)), (10, on(60)), (20, off(60)), (30, off(60)), (30, on(60)),
                                (30, on(60)), (40, off(60))]],
    "stray_note_offs": [[(0, off(64)), (5, off(64)), (5, off(64)), (5, off(64)), (5, on(64)), (9, off(64)),
                         (9, off(64)), (9, off(64)), (12, on(64)), (12, off(64)), (12, off(64)), (12, on(64)),
                         (20, off(64))]],
    "left_sounding_at_the_end": [[(0, on(60)), (10, on(64)), (20, off(64)), (50, END)]],
    "drums_with_no_note_offs": [[(i * 10, on(36 + i % 2, channel=9)) for i in range(40)] + [(500, END)]],
    "velocity_zero_note_offs": [[(0, on(60)), (10, on(60, velocity=0)), (10, on(61)), (20, on(61, velocity=0))]],
    "type_0_channels_and_programs": [[(0, tempo(90)), (0, program(40, 3)), (0, program(33, 1)),
                                      (0, on(72, 3)), (0, on(40, 1)), (0, on(36, 9)), (5, off(36, 9)),
                                      (50, off(72, 3)), (60, off(40, 1)), (60, program(41, 3)),
                                      (60, on(74, 3)), (90, off(74, 3))]],
    "tempo_changes_and_three_four": [
        [(0, meter(3, 4)), (0, tempo(120)), (0, key("Bb")), (960, tempo(60)), (1440, meter(6, 8)),
         (1440, tempo(150.5)), (1440, key("F#m")), (1920, key("Ebm"))],
        [(0, program(0)), (0, on(60)), (480, off(60)), (1440, on(67)), (2400, off(67))]],
    "name_per_track": [[(0, mido.MetaMessage("track_name", name="Song"))],
                       [(0, mido.MetaMessage("track_name", name="Lead")), (0, on(70)), (5, off(70))]],
}


def random_tracks(seed: int) -> list[list[tuple[int, mido.Message]]]:
    """Two tracks of random note-ons and note-offs on few keys and ticks, so they collide often."""
    rng = np.random.default_rng(seed)
    tracks = []
    for _ in range(2):
        channel = int(rng.choice([0, 1, 9]))
        events = [(0, program(int(rng.integers(0, 128)), channel))]
        for tick in np.sort(rng.integers(0, 40, size=int(rng.integers(1, 60)))):
            key, velocity = int(rng.integers(60, 63)), int(rng.integers(0, 3)) * 40
            events.append((int(tick), on(key, channel, velocity) if velocity else off(key, channel)))
        if rng.random() < 0.5:
            events.append((int(events[-1][0] + rng.integers(0, 3)), END))
        tracks.append(events)
    return tracks


def fixture_files(folder: Path) -> list[Path]:
    """Every kind of MIDI file the test fixtures write (conftest, prep_trees)."""
    write_pretty_midi(folder / "grid.mid", [
        (0, False, [(0, 60, 1), (1, 64, 0.5), (1.5, 67, 2), (4, 72, 4)]),
        (40, False, [(0, 76, 0.25), (0.25, 77, 0.75), (2 + 1 / 3, 79, 1 / 3)]),
        (0, True, [(0, 36, 0.25), (1, 38, 0.25), (2, 42, 1 / 12)])])
    write_pretty_midi(folder / "zero.mid", [(0, False, [(1, 60, 0), (2, 62, 1), (2, 60, 0), (3, 60, 1), (4, 60, 0)])])
    write_midi_file(folder / "piece.mid", PIECE)
    write_midi_file(folder / "melody.mid", melody(3, n_notes=40))
    write_bad_files(folder / "bad")
    return sorted(folder.rglob("*.mid"))


def _notes(music) -> list[tuple]:
    return sorted((n.time, n.pitch, n.duration, n.velocity, t.program, t.is_drum) for t in music.tracks
                  for n in t.notes)


def _reading(read, path: Path):
    """What a reader makes of a file: its notes, tempos, meters and resolution, or "error"."""
    try:
        music = read(path)
    except Exception:  # ours raises MusicReadError; the reference whatever mido raises
        return "error"
    return (music.resolution, _notes(music), sorted((t.time, round(t.qpm, 6)) for t in music.tempos),
            sorted((t.time, t.numerator, t.denominator) for t in music.time_signatures),
            sorted((k.time, k.root, k.mode) for k in music.key_signatures),
            sorted(t.name or "" for t in music.tracks if t.notes))


def assert_same_reading(path: Path) -> None:
    assert _reading(read_music, path) == _reading(read_midi_reference, path), path.name


def test_fixture_files_read_as_before(tmp_path):
    paths = fixture_files(tmp_path)
    assert len(paths) == 10
    for path in paths:
        assert_same_reading(path)


@pytest.mark.parametrize("name", sorted(NASTY))
def test_awkward_files_read_as_before(tmp_path, name):
    assert_same_reading(write_events(tmp_path / f"{name}.mid", NASTY[name], midi_type=0 if name.startswith("type_0")
                                     else 1))


@pytest.mark.parametrize("seed", range(40))
def test_random_note_events_read_as_before(tmp_path, seed):
    assert_same_reading(write_events(tmp_path / f"random{seed}.mid", random_tracks(seed)))


def test_literal_notes_of_awkward_files(tmp_path):
    def notes(name):
        return [(t.program, t.is_drum, t.notes.tolist()) for t in read_midi(write_events(tmp_path / f"{name}.mid",
                                                                                          NASTY[name])).tracks]
    # (program, is_drum, [[onset, pitch, duration, velocity], ...]) per track
    assert notes("zero_length_off_then_on") == [(0, False, [[0, 60, 0, 80], [100, 62, 100, 80], [200, 62, 0, 80]])]
    assert notes("left_sounding_at_the_end") == [(0, False, [[0, 60, 50, 80], [10, 64, 10, 80]])]
    assert notes("stray_note_offs") == [(0, False, [[5, 64, 0, 80], [12, 64, 0, 80], [12, 64, 0, 80]])]
    drums = notes("drums_with_no_note_offs")
    assert [(p, d, len(n)) for p, d, n in drums] == [(0, True, 40)]
    assert drums[0][2][:2] == [[0, 36, 500, 80], [10, 37, 490, 80]]


@pytest.mark.parametrize("name, events", [
    ("no_end_of_track", b"\x00\x90\x3c\x40\x10\x80\x3c\x00\x00\x90\x3e\x40\x20\x3f\x40"),
    ("events_after_end_of_track", b"\x00\x90\x3c\x40\x10\x80\x3c\x00\x05\xff\x2f\x00\x00\x90\x3e\x40\x10\x80\x3e\x00"),
    ("running_status_first", b"\x00\x3c\x40\x10\x80\x3c\x00\x00\xff\x2f\x00"),
])
def test_odd_track_ends_read_as_before(tmp_path, name, events):
    path = tmp_path / f"{name}.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk" + len(events).to_bytes(4, "big") + events)
    assert_same_reading(path)


def test_a_program_change_during_a_note_keeps_the_program_of_its_note_on(tmp_path):
    """The one place where the reader differs from muspy's on purpose (muspy took the program at the note-off)."""
    path = write_events(tmp_path / "change.mid", [[(0, program(1)), (0, on(60)), (20, program(40)), (30, off(60))]])
    assert [(t.program, t.notes.tolist()) for t in read_midi(path).tracks] == [(1, [[0, 60, 30, 80]])]
    assert [t.program for t in read_midi_reference(path).tracks] == [40]


def test_tempo_meter_and_key_maps(tmp_path):
    music = read_music(write_events(tmp_path / "maps.mid", NASTY["tempo_changes_and_three_four"]))
    assert [(t.time, round(t.qpm, 3)) for t in music.tempos] == [(0, 120.0), (960, 60.0), (1440, 150.5)]
    assert [(t.time, t.numerator, t.denominator) for t in music.time_signatures] == [(0, 3, 4), (1440, 6, 8)]
    assert [(k.time, k.root, k.mode) for k in music.key_signatures] == [(0, 10, "major"), (1440, 6, "minor"),
                                                                         (1920, 3, "minor")]


def test_notes_of_a_midi_file_skip_muspy_and_agree_with_read_music(tmp_path):
    from mmt.encoding import notes_from_music

    from mmt.meter import Meter

    path = write_midi_file(tmp_path / "piece.mid", PIECE)
    notes, meter = read_notes(path, 12)
    music = read_music(path)
    assert sorted(notes.tolist()) == sorted(notes_from_music(music, 12).tolist())
    assert sorted(notes.tolist())[:3] == [[0, 0, 36, 3, 128], [0, 0, 60, 6, 0], [0, 0, 60, 12, 0]]
    assert meter == Meter.from_music(music) and meter.tempos == ((0.0, 120.0),)


@pytest.mark.parametrize("data, reason", [
    (b"RIFF\x00\x00\x00\x04WAVE", "not a MIDI file (no MThd header)"),
    (b"MThd\x00\x00\x00\x06\x00\x02\x00\x01\x01\xe0", "type 2 MIDI file (independent sequences) is not supported"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\xe7\x28", "SMPTE time division (frames per second, not ticks per beat) "
                                                       "is not supported"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00",
     "truncated MIDI file: track 2 of 2 is missing"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x08\x00\x90\x3c\x40",
     "truncated MIDI file: track 1 ends early (4 of its 8 bytes present)"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0XTrk\x00\x00\x00\x00", "malformed MIDI file: chunk 2 is b'XTrk', "
                                                                          "not a track (MTrk)"),
])
def test_malformed_files_say_what_is_wrong(tmp_path, data, reason):
    with pytest.raises(MidiError) as error:
        parse_midi(data)
    assert str(error.value) == reason
    path = tmp_path / "bad.mid"
    path.write_bytes(data)
    with pytest.raises(MusicReadError) as error:
        read_music(path)
    assert str(error.value) == f"{path}: cannot read ({reason})"

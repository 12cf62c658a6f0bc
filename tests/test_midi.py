"""The MIDI reader (`mmt.midi`): symusic's note pairing, the header checks and the maps, on files written in code."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from mmt import MusicReadError, read_music
from mmt.io import read_notes
from mmt.midi import MidiError, parse_midi, read_midi, read_midi_notes
from tests.data_prep.prep_trees import PIECE, write_midi_file
from tests.factories import write_midi_events


def on(note: int, channel: int = 0, velocity: int = 80) -> mido.Message:
    return mido.Message("note_on", note=note, channel=channel, velocity=velocity)


def off(note: int, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=note, channel=channel)


def program(number: int, channel: int = 0) -> mido.Message:
    return mido.Message("program_change", program=number, channel=channel)


def meta(kind: str, **fields) -> mido.MetaMessage:
    return mido.MetaMessage(kind, **fields)


END = meta("end_of_track")

# Hand-made awkward files: {name: tracks of (tick, message)} and the notes read from them,
# (program, is_drum, [[onset, pitch, duration, velocity], ...]) per track with notes.
AWKWARD = {
    # a note-off ends the oldest sounding note of its key (first in, first out)
    "overlapping_same_pitch": ([[(0, on(60)), (10, on(60)), (20, off(60)), (30, off(60)), (30, on(60)),
                                 (30, on(60)), (40, off(60))]],
                               [(0, False, [[0, 60, 20, 80], [10, 60, 20, 80], [30, 60, 10, 80]])]),
    # a note-off that finds no note sounding does nothing
    "stray_note_offs": ([[(0, off(64)), (5, off(64)), (5, on(64)), (9, off(64)), (9, off(64)), (12, on(64)),
                          (12, off(64)), (12, on(64)), (20, off(64))]],
                        [(0, False, [[5, 64, 4, 80], [12, 64, 0, 80], [12, 64, 8, 80]])]),
    # written on then off at one tick: a note of duration 0
    "zero_length_on_then_off": ([[(0, program(5)), (0, on(60)), (0, off(60)), (100, on(62)), (200, off(62))]],
                                [(5, False, [[0, 60, 0, 80], [100, 62, 100, 80]])]),
    # written off then on (pretty_midi's way): the note-on finds no later note-off and is dropped
    "zero_length_off_then_on": ([[(0, off(60)), (0, on(60)), (100, on(62)), (200, off(62)), (200, off(62)),
                                  (200, on(62))]],
                                [(0, False, [[100, 62, 100, 80]])]),
    # a note still sounding at the end of its track is dropped
    "left_sounding_at_the_end": ([[(0, on(60)), (10, on(64)), (20, off(64)), (50, END)]],
                                 [(0, False, [[10, 64, 10, 80]])]),
    # drums that send no note-offs: every note is left sounding, so none is read
    "drums_with_no_note_offs": ([[(i * 10, on(36 + i % 2, channel=9)) for i in range(40)] + [(500, END)]], []),
    "velocity_zero_note_offs": ([[(0, on(60)), (10, on(60, velocity=0)), (10, on(61)), (20, on(61, velocity=0))]],
                                [(0, False, [[0, 60, 10, 80], [10, 61, 10, 80]])]),
    # a program change during a note: the note keeps the program of its note-on
    "program_change_during_a_note": ([[(0, program(1)), (0, on(60)), (20, program(40)), (30, off(60))]],
                                     [(1, False, [[0, 60, 30, 80]])]),
}


def awkward_file(tmp_path, name: str):
    return write_midi_events(tmp_path / f"{name}.mid", AWKWARD[name][0])


@pytest.mark.parametrize("name", sorted(AWKWARD))
def test_notes_of_awkward_files(tmp_path, name):
    piece = read_midi(awkward_file(tmp_path, name))
    assert [(t.program, t.is_drum, t.notes.tolist()) for t in piece.tracks] == AWKWARD[name][1]


def test_a_type_0_file_has_one_track_per_channel_and_program(tmp_path):
    path = write_midi_events(tmp_path / "type0.mid", [[
        (0, meta("set_tempo", tempo=mido.bpm2tempo(90))), (0, program(40, 3)), (0, program(33, 1)), (0, on(72, 3)),
        (0, on(40, 1)), (0, on(36, 9)), (5, off(36, 9)), (50, off(72, 3)), (60, off(40, 1)), (60, program(41, 3)),
        (60, on(74, 3)), (90, off(74, 3))]], midi_type=0)
    piece = read_midi(path)
    assert sorted((t.program, t.is_drum, t.notes.tolist()) for t in piece.tracks) == [
        (0, True, [[0, 36, 5, 80]]), (33, False, [[0, 40, 60, 80]]), (40, False, [[0, 72, 50, 80]]),
        (41, False, [[60, 74, 30, 80]])]
    assert [(tick, round(qpm, 3)) for tick, qpm in piece.tempos] == [(0, 90.0)]


def test_a_track_name_names_its_notes(tmp_path):
    path = write_midi_events(tmp_path / "names.mid", [[(0, meta("track_name", name="Song"))],
                                                      [(0, meta("track_name", name="Lead")), (0, on(70)), (5, off(70))],
                                                      [(0, on(72, 1)), (5, off(72, 1))]])
    assert [t.name for t in read_midi(path).tracks] == ["Lead", None]
    assert [t.name for t in read_music(path).tracks] == ["Lead", None]


def test_an_end_of_track_inside_a_text_event_ends_nothing(tmp_path):
    # the text event's bytes are FF 2F 00, an end-of-track's; the 8 notes after it are read
    events = b"\x00\xff\x01\x03\xff\x2f\x00" + b"".join(bytes((0, 0x90, 60 + i, 64, 0x10, 0x80, 60 + i, 0))
                                                       for i in range(8)) + b"\x00\xff\x2f\x00"
    path = tmp_path / "text.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk" + len(events).to_bytes(4, "big") + events)
    assert [(n.time, n.pitch, n.duration) for n in read_music(path).tracks[0].notes] == [
        (16 * i, 60 + i, 16) for i in range(8)]
    resolution, notes, _ = read_midi_notes(path)
    assert (resolution, notes.tolist()) == (480, [[16 * i, 60 + i, 16, 0] for i in range(8)])
    notes, _ = read_notes(path, 480)   # preparation's reader: (beat, position, pitch, duration, program)
    assert notes.tolist() == [[0, 16 * i, 60 + i, 16, 0] for i in range(8)]


def test_tempo_meter_and_key_maps(tmp_path):
    path = write_midi_events(tmp_path / "maps.mid", [
        [(0, meta("time_signature", numerator=3, denominator=4)), (0, meta("set_tempo", tempo=mido.bpm2tempo(120))),
         (0, meta("key_signature", key="Bb")), (960, meta("set_tempo", tempo=mido.bpm2tempo(60))),
         (1440, meta("time_signature", numerator=6, denominator=8)),
         (1440, meta("set_tempo", tempo=mido.bpm2tempo(150.5))), (1440, meta("key_signature", key="F#m")),
         (1920, meta("key_signature", key="Ebm"))],
        [(0, program(0)), (0, on(60)), (480, off(60)), (1440, on(67)), (2400, off(67))]])
    music = read_music(path)
    assert [(t.time, round(t.qpm, 3)) for t in music.tempos] == [(0, 120.0), (960, 60.0), (1440, 150.5)]
    assert [(t.time, t.numerator, t.denominator) for t in music.time_signatures] == [(0, 3, 4), (1440, 6, 8)]
    assert [(k.time, k.root, k.mode) for k in music.key_signatures] == [(0, 10, "major"), (1440, 6, "minor"),
                                                                         (1920, 3, "minor")]
    _, _, meter = read_midi_notes(path)
    assert [(round(beat, 3), round(qpm, 3)) for beat, qpm in meter.tempos] == [(0.0, 120.0), (2.0, 60.0),
                                                                               (3.0, 150.5)]


def test_notes_of_a_midi_file_skip_muspy_and_agree_with_read_music(tmp_path):
    from mmt.encoding import notes_from_music
    from mmt.meter import Meter

    path = write_midi_file(tmp_path / "piece.mid", PIECE)
    notes, meter = read_notes(path, 12)
    music = read_music(path)
    assert sorted(notes.tolist()) == sorted(notes_from_music(music, 12).tolist())
    assert sorted(notes.tolist())[:3] == [[0, 0, 36, 3, 128], [0, 0, 60, 6, 0], [0, 0, 60, 12, 0]]
    assert meter == Meter.from_music(music) and meter.tempos == ((0.0, 120.0),)


def test_read_notes_give_the_notes_of_read_midi_with_programs(tmp_path):
    path = write_midi_events(tmp_path / "two.mid", [[(0, program(40)), (0, on(60)), (10, off(60))],
                                                    [(0, on(36, 9)), (4, off(36, 9))]])
    resolution, notes, _ = read_midi_notes(path)
    assert (resolution, sorted(notes.tolist())) == (480, [[0, 36, 4, 128], [0, 60, 10, 40]])
    assert notes.dtype == np.int64


@pytest.mark.parametrize("data, reason", [
    (b"RIFF\x00\x00\x00\x04WAVE", "not a MIDI file (no MThd header)"),
    (b"MThd\x00\x00\x00\x06\x00\x02\x00\x01\x01\xe0", "type 2 MIDI file (independent sequences) is not supported"),
    (b"MThd\x00\x00\x00\x06\x00\x03\x00\x01\x01\xe0", "unknown MIDI file type 3"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\xe7\x28", "SMPTE time division (frames per second, not ticks per beat) "
                                                       "is not supported"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x08\x00\x90\x3c\x40",
     "malformed MIDI data (Invalid chunk length 8 (remaining bytes after header: 4))"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0XTrk\x00\x00\x00\x00",
     "malformed MIDI data (Unexpected EOF while reading chunk header!)"),
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
    with pytest.raises(MusicReadError) as error:
        read_notes(path, 12)
    assert str(error.value) == f"{path}: cannot read ({reason})"

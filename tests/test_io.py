"""Reading and writing: MIDI round trip, MusicXML/kern/abc, CSV, piano roll, errors."""

from __future__ import annotations

import csv

import muspy
import numpy as np
import pytest

from mmt import MusicReadError, decode, encode, read_music, write_csv, write_midi, write_musicxml, write_pianoroll_png
from mmt.io import abc_tune_count, abc_tunes
from mmt.meter import Meter
from tests.factories import write_midi_file

GRID_TRACKS = [
    (0, False, [(0, 60, 1), (1, 64, 0.5), (1.5, 67, 2), (4, 72, 4)]),        # piano
    (40, False, [(0, 76, 0.25), (0.25, 77, 0.75), (2 + 1 / 3, 79, 1 / 3)]),   # violin, incl. a triplet
    (42, False, [(0, 48, 8)]),                                               # cello, 96 ticks
    (0, True, [(0, 36, 0.25), (1, 38, 0.25), (2, 42, 1 / 12)]),              # drums
]


def note_set(music: muspy.Music):
    return sorted((n.time, n.pitch, n.duration, t.program, t.is_drum) for t in music.tracks for n in t.notes)


def test_midi_round_trip_is_exact(tmp_path, encoding):
    path = tmp_path / "song.mid"
    write_midi_file(path, GRID_TRACKS)
    music = read_music(path)
    decoded = decode(encode(music, encoding), encoding)
    expected = sorted(
        (round(beat * 12), pitch, round(length * 12), program if not is_drum else 0, is_drum)
        for program, is_drum, notes in GRID_TRACKS for beat, pitch, length in notes
    )
    assert note_set(decoded) == expected
    assert [t.name for t in decoded.tracks] == ["piano", "violin", "cello", "drums"]


def test_off_grid_onsets_and_durations_snap(tmp_path, encoding):
    path = tmp_path / "offgrid.mid"
    # onset 13/48 beat = 3.25 ticks -> 3; onset 1 + 7/48 beat = 13.75 ticks -> 14;
    # length 13/12 beat = 13 ticks -> 12; length 17/12 beat = 17 ticks -> 16 (tie -> shorter)
    write_midi_file(path, [(0, False, [(13 / 48, 60, 13 / 12), (1 + 7 / 48, 62, 17 / 12)])])
    codes = encode(read_music(path), encoding)
    assert codes[3:5].tolist() == [[4, 1, 4, 61, 12, 1], [4, 2, 3, 63, 14, 1]]  # duration code 14 = 16 ticks
    assert note_set(decode(codes, encoding)) == [(3, 60, 12, 0, False), (14, 62, 16, 0, False)]


def test_zero_length_notes_written_on_then_off_stay_zero_length(tmp_path):
    # (written off then on, a zero-length note is lost: tests/test_midi.py)
    write_midi_file(tmp_path / "z.mid", [(0, False, [(1, 60, 0), (2, 62, 1), (2, 60, 0), (3, 60, 1), (4, 60, 0)])])
    notes = [(n.time, n.pitch, n.duration) for n in read_music(tmp_path / "z.mid").tracks[0].notes]
    assert sorted(notes) == [(480, 60, 0), (960, 60, 0), (960, 62, 480), (1440, 60, 480), (1920, 60, 0)]


def test_write_midi_then_read_back(tmp_path, encoding):
    codes = encode(muspy.Music(resolution=12, tracks=[muspy.Track(program=73, notes=[muspy.Note(6, 70, 18)])]), encoding)
    path = write_midi(tmp_path / "out.mid", decode(codes, encoding))
    assert note_set(decode(encode(read_music(path), encoding), encoding)) == [(6, 70, 18, 73, False)]


def test_musicxml_round_trip(tmp_path, encoding):
    music = muspy.Music(resolution=12, tracks=[muspy.Track(program=40, name="Violin", notes=[
        muspy.Note(0, 67, 12), muspy.Note(12, 69, 6), muspy.Note(18, 71, 6), muspy.Note(24, 72, 24)])])
    path = write_musicxml(tmp_path / "violin.musicxml", music)
    back = read_music(path)
    assert [(n.time * 12 // back.resolution, n.pitch, n.duration * 12 // back.resolution)
            for n in back.tracks[0].notes] == [(0, 67, 12), (12, 69, 6), (18, 71, 6), (24, 72, 24)]
    assert back.tracks[0].program == 40


def test_read_kern_and_abc(tmp_path):
    kern = tmp_path / "tune.krn"
    kern.write_text("**kern\n*M3/4\n4c\n4e\n4g\n=\n2.cc\n*-\n")
    music = read_music(kern)
    assert [(n.time, n.pitch, n.duration) for n in music.tracks[0].notes] == [
        (0, 60, 24), (24, 64, 24), (48, 67, 24), (72, 72, 72)]
    assert (music.time_signatures[0].numerator, music.time_signatures[0].denominator) == (3, 4)
    # a pickup beat, then 3/4, then 2/4 from beat 7: every time signature and the pickup are kept
    kern.write_text("**kern\n*M3/4\n4c\n=1\n4e\n4g\n4a\n=2\n2.cc\n=3\n*M2/4\n4d\n4e\n=4\n2f\n==\n*-\n")
    meter = Meter.from_music(read_music(kern))
    assert meter == Meter(time_signatures=((0, 3, 4), (7, 2, 4)), pickup=1.0)
    assert meter.bars(12)[0].tolist() == [0, 1, 4, 7, 9, 11]
    abc = tmp_path / "tune.abc"
    abc.write_text("X:1\nT:Test\nM:4/4\nL:1/4\nK:C\nC D E F|G4|]\n")
    assert [n.pitch for n in read_music(abc).tracks[0].notes] == [60, 62, 64, 65, 67]


THREE_TUNES = ("%abc-2.1\nA:a header line\n\n"
               "X:1\nT:One\nM:4/4\nL:1/4\nK:C\nC D E F|G4|]\n\n"
               "X:7\nT:Two\nM:3/4\nL:1/4\nK:G\nG A B|d3|]\n\n"
               "X:8\nT:Three\nM:2/4\nL:1/8\nK:C\nc2 e2|g4|]\n")


def test_abc_tunes_split_a_file_and_keep_its_header():
    tunes = abc_tunes(THREE_TUNES)
    assert [t.splitlines()[2:4] for t in tunes] == [["", "X:1"], ["", "X:7"], ["", "X:8"]]
    assert all(t.startswith("%abc-2.1\nA:a header line\n") for t in tunes)
    assert abc_tunes("T:No reference\nK:C\nCDE|]\n") == ["T:No reference\nK:C\nCDE|]\n"]


def test_read_music_reads_one_tune_of_a_many_tune_abc_file(tmp_path):
    path = tmp_path / "three.abc"
    path.write_text(THREE_TUNES)
    assert abc_tune_count(path) == 3
    pieces = [read_music(path, piece) for piece in range(3)]
    assert [[(n.time, n.pitch, n.duration) for n in m.tracks[0].notes] for m in pieces] == [
        [(0, 60, 24), (24, 62, 24), (48, 64, 24), (72, 65, 24), (96, 67, 96)],
        [(0, 67, 24), (24, 69, 24), (48, 71, 24), (72, 74, 72)],  # K:G: B and d as written, no sharps
        [(0, 72, 24), (24, 76, 24), (48, 79, 48)],
    ]
    assert read_music(path).tracks[0].notes == pieces[0].tracks[0].notes
    with pytest.raises(MusicReadError, match="three.abc: holds 3 tunes, so there is no piece 4"):
        read_music(path, 3)
    write_midi_file(tmp_path / "one.mid", [(0, False, [(0, 60, 1)])])
    with pytest.raises(MusicReadError, match="one.mid: holds one piece, so there is no piece 2"):
        read_music(tmp_path / "one.mid", 1)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mid: no such file"):
        read_music(tmp_path / "missing.mid")
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    with pytest.raises(MusicReadError, match="empty.mid: empty file"):
        read_music(empty)
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(MusicReadError, match="corrupt.mid: cannot read"):
        read_music(corrupt)
    bad_xml = tmp_path / "bad.xml"
    bad_xml.write_text("<score-partwise><part")
    with pytest.raises(MusicReadError, match="bad.xml: cannot read"):
        read_music(bad_xml)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(MusicReadError, match="notes.txt: unsupported file type '.txt'"):
        read_music(other)


def test_write_csv_has_codes_and_values(tmp_path, encoding):
    codes = np.array([[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 25], [3, 0, 0, 0, 0, 0], [4, 2, 7, 61, 12, 25],
                      [5, 0, 0, 0, 0, 0]])
    path = write_csv(tmp_path / "codes.csv", codes, encoding)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 5
    assert rows[1]["instrument"] == "violin"
    assert {k: rows[3][k] for k in ("type", "beat", "position", "pitch", "duration", "instrument", "pitch_code")} == {
        "type": "note", "beat": "1", "position": "6", "pitch": "60", "duration": "12", "instrument": "violin",
        "pitch_code": "61"}


def test_write_pianoroll_png(tmp_path, encoding):
    music = decode(encode(muspy.Music(resolution=12, tracks=[muspy.Track(notes=[muspy.Note(0, 60, 12)])]), encoding),
                   encoding)
    path = write_pianoroll_png(tmp_path / "roll.png", music, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("name, program", [("Violin I", 40), ("Soprano", 53), ("Violoncello", 42),
                                           ("Flauto traverso", 73), ("Continuo", 19), ("Quinto", 53),
                                           ("Quinto 2", 53), ("Cornet II", 56), ("Contra", 53), ("MusicXML Part", None),
                                           (None, None)])
def test_program_from_name(name, program):
    from mmt.io import program_from_name

    assert program_from_name(name) == program


def test_part_names_override_placeholder_programs():
    """A part named for a voice or a string instrument is not left as the piano or string
    ensemble a score writes for parts it knows nothing about; a real instrument stays."""
    import music21
    from music21 import instrument, note, stream

    from mmt.io import music_from_music21

    def part(name, inst):
        part = stream.Part([inst, note.Note("C4", quarterLength=1)])
        part.partName = name
        return part

    sung = instrument.Instrument()  # no program; its name says what plays the part "P1"
    sung.instrumentName = "Voice (2)"
    score = stream.Score([part("Quinto", instrument.Piano()), part("Violin I", instrument.StringInstrument()),
                          part("Viola", instrument.Piano()), part("Bass", instrument.ElectricBass()),
                          part("Continuo", instrument.Instrument()), part("MusicXML Part", instrument.Piano()),
                          part("Triplum", instrument.Instrument()), part("P1", sung)])
    assert [t.program for t in music_from_music21(score).tracks] == [53, 40, 41, 33, 19, 0, 53, 53]
    madrigal = music_from_music21(music21.corpus.parse("monteverdi/madrigal.3.1"))
    assert [(t.name, t.program) for t in madrigal.tracks] == [
        ("Canto", 53), ("Quinto", 53), ("Alto", 53), ("Tenor", 53), ("Basso", 53)]


def _strip_ties_notes(score, resolution: int = 24) -> list[list[tuple[int, int, int]]]:
    """Per part, sorted (onset, pitch, duration) ticks after music21's own `stripTies` (the reference)."""
    import music21

    stripped = score.stripTies()
    notes_per_part = []
    for part in list(stripped.parts) or [stripped]:
        notes = [(int(round(float(el.offset) * resolution)), int(p.midi), int(round(float(el.quarterLength) * resolution)))
                 for el in part.flatten().notes
                 if not el.duration.isGrace and not isinstance(el, music21.harmony.Harmony) for p in el.pitches]
        if notes:
            notes_per_part.append(sorted(notes))
    return notes_per_part


def _tied(element, kind: str):
    """`element` with a tie of `kind` (music21 ignores a `tie=` keyword)."""
    from music21 import tie

    element.tie = tie.Tie(kind)
    return element


def _tied_score():
    """Two parts: a tied chord, a three-note tie chain, and two voices, one with a tie."""
    import music21
    from music21 import chord, note, stream

    upper = stream.Part([music21.meter.TimeSignature("4/4")])
    upper.append([note.Note("G4", quarterLength=2),
                  _tied(chord.Chord(["C4", "E4"], quarterLength=2), "start"),
                  _tied(chord.Chord(["C4", "E4"], quarterLength=4), "stop"),
                  _tied(note.Note("A4", quarterLength=1), "start"),
                  _tied(note.Note("A4", quarterLength=1), "continue"),
                  _tied(note.Note("A4", quarterLength=2), "stop")])
    lower = stream.Part()
    measure = stream.Measure(number=1)
    soprano, alto = stream.Voice(), stream.Voice()
    soprano.append([_tied(note.Note("D5", quarterLength=2), "start"), _tied(note.Note("D5", quarterLength=2), "stop")])
    alto.append([note.Note("B3", quarterLength=3), note.Note("B3", quarterLength=1)])
    measure.insert(0, soprano)
    measure.insert(0, alto)
    lower.append(measure)
    return stream.Score([upper, lower])


@pytest.mark.parametrize("work", ["bach/bwv66.6", "bach/bwv1.6", "schoenberg/opus19/movement2",
                                  "corelli/opus3no1/1grave", "monteverdi/madrigal.3.1", "built"])
def test_tie_merging_gives_the_notes_of_music21_strip_ties(work):
    """`music_from_music21` merges tied notes without `stripTies`; the notes must be the same."""
    import music21

    from mmt.io import music_from_music21

    score = _tied_score() if work == "built" else music21.corpus.parse(work)
    if work != "built":
        assert any(n.tie is not None for n in score.recurse().notes), "the piece must hold ties"
    ours = [sorted((n.time, n.pitch, n.duration) for n in t.notes) for t in music_from_music21(score).tracks]
    assert ours == _strip_ties_notes(score)


def test_tie_merging_on_a_built_score_gives_literal_notes():
    from mmt.io import music_from_music21

    tracks = music_from_music21(_tied_score()).tracks
    assert [(n.time, n.pitch, n.duration) for n in tracks[0].notes] == [
        (0, 67, 48), (48, 60, 144), (48, 64, 144), (192, 69, 96)]
    assert sorted((n.time, n.pitch, n.duration) for n in tracks[1].notes) == [(0, 59, 72), (0, 74, 96), (72, 59, 24)]
